//! The OAuth 2.1 authorization server for MCP clients, beside the key service: registered
//! clients, the codes of approved authorizations, and PKCE. Its answers are keys: an approved
//! authorization's code is exchanged for a new `sq_live_` key made by the
//! [`KeyService`](crate::service::KeyService), with the scopes and expiry the person chose, so a client
//! authorized with OAuth and a static key share scopes, the window, revocation and the activity
//! list.
//!
//! Clients are not stored: a client id is the client's registration (name and redirect URIs)
//! signed with HMAC-SHA-256 under a secret kept in the data file, so registration, which anyone
//! may do, costs no memory and survives restarts. Codes are kept in memory, at most
//! [`MAX_PENDING`], for [`CODE_LIFETIME_SECS`], each usable once (by its SHA-256 digest: the
//! code itself is not kept).

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sitequest_auth::{NewKey, UnixTime};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// How long a code may wait for its exchange.
pub const CODE_LIFETIME_SECS: u64 = 60;
/// Codes that may wait for their exchange at once; past it, approvals are refused until some
/// are exchanged or expire.
pub const MAX_PENDING: usize = 1024;
/// Redirect URIs a client may register.
pub const MAX_REDIRECT_URIS: usize = 4;
/// Longest redirect URI, in bytes.
pub const MAX_REDIRECT_URI_LEN: usize = 512;
/// Longest client name, in characters (code points), as a key's name.
pub const MAX_CLIENT_NAME: usize = 128;
/// Longest client id accepted (a registration at its largest fits).
pub const MAX_CLIENT_ID_LEN: usize = 4096;
/// The name of the signing secret in the data file.
pub const SECRET_NAME: &str = "oauth_client_ids";

const CLIENT_PREFIX: &str = "sqc_";

type HmacSha256 = Hmac<Sha256>;

/// A registered client, as its id carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    /// Its name, shown on the consent page and given to its keys.
    #[serde(rename = "n")]
    pub name: String,
    /// Where codes may be sent.
    #[serde(rename = "r")]
    pub redirect_uris: Vec<String>,
    /// When it registered (unix seconds).
    #[serde(rename = "t")]
    pub issued_at: u64,
}

/// Why a registration was refused: the RFC 7591 error code and a description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{description}")]
pub struct RegistrationError {
    /// `invalid_redirect_uri` or `invalid_client_metadata`.
    pub code: &'static str,
    /// What was wrong, without echoing more than a few characters of the input.
    pub description: String,
}

impl RegistrationError {
    fn uri(description: impl Into<String>) -> Self {
        Self {
            code: "invalid_redirect_uri",
            description: description.into(),
        }
    }

    fn metadata(description: impl Into<String>) -> Self {
        Self {
            code: "invalid_client_metadata",
            description: description.into(),
        }
    }
}

/// Checks a redirect URI: absolute, no fragment, at most [`MAX_REDIRECT_URI_LEN`] bytes, and
/// `https`, `http` on a loopback host (native apps, RFC 8252 §7.3), or a private-use scheme
/// with a dot in it (RFC 8252 §7.1, as `com.example.app:/callback`).
///
/// # Errors
///
/// The reason, for the client.
pub fn check_redirect_uri(uri: &str) -> Result<(), RegistrationError> {
    if uri.len() > MAX_REDIRECT_URI_LEN {
        return Err(RegistrationError::uri(format!(
            "a redirect URI has at most {MAX_REDIRECT_URI_LEN} bytes"
        )));
    }
    let url =
        url::Url::parse(uri).map_err(|_| RegistrationError::uri("a redirect URI is not a URL"))?;
    if url.fragment().is_some() {
        return Err(RegistrationError::uri(
            "a redirect URI must not have a fragment",
        ));
    }
    let loopback = matches!(
        url.host(),
        Some(url::Host::Domain("localhost"))
            | Some(url::Host::Ipv4(std::net::Ipv4Addr::LOCALHOST))
            | Some(url::Host::Ipv6(std::net::Ipv6Addr::LOCALHOST))
    );
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(RegistrationError::uri(
            "an http redirect URI must name a loopback host (127.0.0.1, [::1] or localhost); \
             use https",
        )),
        scheme if scheme.contains('.') && !matches!(scheme, "javascript" | "data" | "file") => {
            Ok(())
        }
        _ => Err(RegistrationError::uri(
            "a redirect URI must be https, http on a loopback host, or a private-use scheme \
             such as com.example.app:/callback",
        )),
    }
}

/// Characters a person cannot see or that change the direction of the text around them: a name
/// could hide its end behind them, or pass for another on the consent page. Format characters
/// (zero-width spaces and joiners, the soft hyphen, word joiners, the byte-order mark, tags),
/// line and paragraph separators, variation selectors and the direction controls.
fn is_hidden_or_directional(c: char) -> bool {
    matches!(c,
        '\u{00ad}' | '\u{034f}' | '\u{061c}' | '\u{115f}' | '\u{1160}' | '\u{17b4}' | '\u{17b5}'
        | '\u{180b}'..='\u{180f}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{206f}' | '\u{3164}' | '\u{fe00}'..='\u{fe0f}' | '\u{feff}'
        | '\u{ffa0}' | '\u{fff9}'..='\u{fffb}' | '\u{e0000}'..='\u{e007f}'
        | '\u{e0100}'..='\u{e01ef}')
}

/// Whether the redirect URI of an authorization request is one the client registered: the same
/// text, or, for a loopback IP address over `http`, the same but for the port (RFC 8252 §7.3:
/// native apps listen on a port the system gives them).
#[must_use]
pub fn redirect_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Ok(a), Ok(b)) = (url::Url::parse(registered), url::Url::parse(requested)) else {
        return false;
    };
    let loopback_ip = |u: &url::Url| {
        u.scheme() == "http"
            && matches!(
                u.host(),
                Some(url::Host::Ipv4(std::net::Ipv4Addr::LOCALHOST))
                    | Some(url::Host::Ipv6(std::net::Ipv6Addr::LOCALHOST))
            )
    };
    loopback_ip(&a)
        && loopback_ip(&b)
        && a.host() == b.host()
        && a.path() == b.path()
        && a.query() == b.query()
        && b.fragment().is_none()
        && b.username().is_empty()
        && b.password().is_none()
}

/// An approved authorization, waiting for its code's exchange.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The client it was approved for.
    pub client_id: String,
    /// The redirect URI the code was sent to; the exchange must name it again when the
    /// authorization request named it.
    pub redirect_uri: String,
    /// Whether the authorization request named the redirect URI (else the client's only
    /// registered one was used, and the exchange may leave it out).
    pub redirect_uri_given: bool,
    /// The PKCE challenge (S256).
    pub challenge: String,
    /// The key to make: name, scopes and expiry as the person chose them.
    pub key: NewKey,
}

struct Pending {
    grant: Grant,
    until: UnixTime,
}

/// Why a code could not be exchanged (`invalid_grant`, with this description).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// No such code waits: never issued, already exchanged, or expired.
    #[error("the code is unknown, used or expired")]
    UnknownCode,
    /// The code was issued to another client or redirect URI.
    #[error("the code was issued to another client or redirect URI")]
    OtherClient,
    /// The verifier does not match the challenge (the code is spent anyway).
    #[error("the code_verifier does not match the code_challenge")]
    Verifier,
}

/// Too many approvals wait for their exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many authorizations wait for their exchange; try again in a minute")]
pub struct TooManyPending;

/// The authorization server's state.
pub struct OAuthServer {
    signing: Zeroizing<[u8; 32]>,
    pending: Mutex<HashMap<[u8; 32], Pending>>,
}

impl std::fmt::Debug for OAuthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthServer")
            .field("pending", &self.pending.lock().len())
            .finish_non_exhaustive()
    }
}

impl OAuthServer {
    /// A server signing client ids with `signing`.
    #[must_use]
    pub fn new(signing: Zeroizing<[u8; 32]>) -> Self {
        Self {
            signing,
            pending: Mutex::new(HashMap::new()),
        }
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(self.signing.as_slice()).expect("HMAC takes keys of any length")
    }

    /// Registers a client: checks its metadata and answers its id.
    ///
    /// # Errors
    ///
    /// When a redirect URI or the name is not acceptable.
    pub fn register(
        &self,
        name: Option<&str>,
        redirect_uris: &[String],
        now: UnixTime,
    ) -> Result<(String, Client), RegistrationError> {
        if redirect_uris.is_empty() {
            return Err(RegistrationError::uri(
                "redirect_uris must name at least one URI",
            ));
        }
        if redirect_uris.len() > MAX_REDIRECT_URIS {
            return Err(RegistrationError::uri(format!(
                "at most {MAX_REDIRECT_URIS} redirect URIs"
            )));
        }
        for uri in redirect_uris {
            check_redirect_uri(uri)?;
        }
        let name = name
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .unwrap_or("MCP client");
        if name.chars().count() > MAX_CLIENT_NAME {
            return Err(RegistrationError::metadata(format!(
                "client_name has at most {MAX_CLIENT_NAME} characters"
            )));
        }
        if name
            .chars()
            .any(|c| c.is_control() || is_hidden_or_directional(c))
        {
            return Err(RegistrationError::metadata(
                "client_name must not contain control, invisible or text-direction characters",
            ));
        }
        let client = Client {
            name: name.to_owned(),
            redirect_uris: redirect_uris.to_vec(),
            issued_at: now.as_secs(),
        };
        let payload = serde_json::to_vec(&client)
            .map_err(|_| RegistrationError::metadata("the registration could not be encoded"))?;
        let mut mac = self.mac();
        mac.update(&payload);
        let tag = mac.finalize().into_bytes();
        let id = format!(
            "{CLIENT_PREFIX}{}.{}",
            B64.encode(&payload),
            B64.encode(tag)
        );
        if id.len() > MAX_CLIENT_ID_LEN {
            return Err(RegistrationError::metadata(format!(
                "the registration is too large: its client_id would exceed {MAX_CLIENT_ID_LEN} \
                 characters; register fewer or shorter redirect URIs"
            )));
        }
        Ok((id, client))
    }

    /// The client an id names, when this server signed it.
    #[must_use]
    pub fn client(&self, id: &str) -> Option<Client> {
        if id.len() > MAX_CLIENT_ID_LEN {
            return None;
        }
        let (payload, tag) = id.strip_prefix(CLIENT_PREFIX)?.split_once('.')?;
        let payload = B64.decode(payload).ok()?;
        let tag = B64.decode(tag).ok()?;
        let mut mac = self.mac();
        mac.update(&payload);
        mac.verify_slice(&tag).ok()?;
        serde_json::from_slice(&payload).ok()
    }

    /// Keeps an approved authorization and answers the code to send to the client.
    ///
    /// # Errors
    ///
    /// [`TooManyPending`] when [`MAX_PENDING`] codes already wait.
    pub fn approve(
        &self,
        grant: Grant,
        now: UnixTime,
    ) -> Result<Zeroizing<String>, TooManyPending> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, bytes.as_mut());
        let code = Zeroizing::new(B64.encode(bytes.as_slice()));
        let mut pending = self.pending.lock();
        if pending.len() >= MAX_PENDING {
            pending.retain(|_, p| p.until > now);
            if pending.len() >= MAX_PENDING {
                return Err(TooManyPending);
            }
        }
        pending.insert(
            digest(code.as_bytes()),
            Pending {
                grant,
                until: now.plus_secs(CODE_LIFETIME_SECS),
            },
        );
        Ok(code)
    }

    /// Exchanges a code: the grant it was issued for, when the client, the redirect URI and the
    /// PKCE verifier match. A code is spent by its first exchange, whatever the outcome.
    ///
    /// # Errors
    ///
    /// See [`ExchangeError`].
    pub fn exchange(
        &self,
        code: &str,
        client_id: &str,
        redirect_uri: Option<&str>,
        verifier: &str,
        now: UnixTime,
    ) -> Result<Grant, ExchangeError> {
        let pending = self
            .pending
            .lock()
            .remove(&digest(code.as_bytes()))
            .filter(|p| p.until > now)
            .ok_or(ExchangeError::UnknownCode)?;
        let grant = pending.grant;
        let redirect_ok = match redirect_uri {
            Some(uri) => uri == grant.redirect_uri,
            None => !grant.redirect_uri_given,
        };
        if grant.client_id != client_id || !redirect_ok {
            return Err(ExchangeError::OtherClient);
        }
        if !verifier_matches(verifier, &grant.challenge) {
            return Err(ExchangeError::Verifier);
        }
        Ok(grant)
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Whether a PKCE challenge (S256) is well formed: 43 characters of base64url, a SHA-256
/// digest.
#[must_use]
pub fn challenge_is_valid(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `verifier` (RFC 7636: 43 to 128 characters of `A-Z a-z 0-9 - . _ ~`) hashes to
/// `challenge` under S256, compared in constant time.
#[must_use]
pub fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !well_formed {
        return false;
    }
    let computed = B64.encode(Sha256::digest(verifier.as_bytes()));
    bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sitequest_auth::Scopes;

    fn server() -> OAuthServer {
        OAuthServer::new(Zeroizing::new([7; 32]))
    }

    #[test]
    fn pkce_matches_rfc_7636s_example() {
        // RFC 7636, appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(challenge_is_valid(challenge));
        assert!(verifier_matches(verifier, challenge));
        assert!(!verifier_matches(&verifier.replace('d', "e"), challenge));
        assert!(!verifier_matches("short", challenge));
    }

    #[test]
    fn client_ids_are_signed() {
        let s = server();
        let now = UnixTime::from_secs(1_800_000_000);
        let uris = vec!["http://127.0.0.1:33418/callback".to_owned()];
        let (id, client) = s.register(Some("Agent"), &uris, now).unwrap();
        assert_eq!(s.client(&id), Some(client));
        // Another server's secret, or a changed byte, names no client.
        assert_eq!(OAuthServer::new(Zeroizing::new([8; 32])).client(&id), None);
        let (payload, tag) = id.split_once('.').unwrap();
        let forged = format!(
            "{}.{}",
            payload,
            tag.replacen(&tag[..1], if &tag[..1] == "A" { "B" } else { "A" }, 1)
        );
        assert_eq!(s.client(&forged), None);
        assert_eq!(s.client("sqc_"), None);
        assert_eq!(s.client(&"x".repeat(10_000)), None);
    }

    #[test]
    fn loopback_redirects_match_on_any_port() {
        assert!(redirect_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:5555/cb"
        ));
        assert!(redirect_matches(
            "http://[::1]:80/cb",
            "http://[::1]:6000/cb"
        ));
        assert!(!redirect_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:5555/other"
        ));
        assert!(!redirect_matches(
            "http://localhost/cb",
            "http://localhost:5555/cb"
        ));
        assert!(!redirect_matches(
            "https://a.example/cb",
            "https://a.example:444/cb"
        ));
        assert!(!redirect_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:1/cb#x"
        ));
    }

    #[test]
    fn oversized_and_misleading_registrations_are_refused() {
        let s = server();
        let now = UnixTime::from_secs(1_800_000_000);
        let long: Vec<String> = (0..4)
            .map(|i| format!("https://a.example/{i}{}", "\"".repeat(480)))
            .collect();
        assert_eq!(
            s.register(None, &long, now).unwrap_err().code,
            "invalid_client_metadata"
        );
        let uris = vec!["http://127.0.0.1/cb".to_owned()];
        assert!(s
            .register(Some("Agent\u{202e}gpj.exe"), &uris, now)
            .is_err());
    }

    #[test]
    fn redirect_uris_are_checked() {
        for ok in [
            "https://app.example.com/cb",
            "http://127.0.0.1:8000/callback",
            "http://[::1]/cb",
            "http://localhost:1/cb",
            "com.example.app:/callback",
        ] {
            assert_eq!(check_redirect_uri(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://example.com/cb",
            "https://app.example.com/cb#frag",
            "javascript:alert(1)",
            "relative/path",
            "data:text/html,x",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
        assert!(check_redirect_uri(&format!("https://a.example/{}", "x".repeat(600))).is_err());
    }

    #[test]
    fn a_code_is_exchanged_once_by_its_client_with_its_verifier() {
        let s = server();
        let now = UnixTime::from_secs(1_800_000_000);
        let grant = Grant {
            client_id: "sqc_a".into(),
            redirect_uri: "http://127.0.0.1/cb".into(),
            redirect_uri_given: true,
            challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
            key: NewKey::new("agent", Scopes::VPS_READ),
        };
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let code = s.approve(grant.clone(), now).unwrap();
        assert_eq!(
            s.exchange(&code, "sqc_b", Some("http://127.0.0.1/cb"), verifier, now)
                .unwrap_err(),
            ExchangeError::OtherClient
        );
        // Spent by the failed attempt.
        assert_eq!(
            s.exchange(&code, "sqc_a", Some("http://127.0.0.1/cb"), verifier, now)
                .unwrap_err(),
            ExchangeError::UnknownCode
        );
        let code = s.approve(grant.clone(), now).unwrap();
        assert!(s
            .exchange(&code, "sqc_a", Some("http://127.0.0.1/cb"), verifier, now)
            .is_ok());
        let code = s.approve(grant, now).unwrap();
        let late = now.plus_secs(CODE_LIFETIME_SECS);
        assert_eq!(
            s.exchange(&code, "sqc_a", Some("http://127.0.0.1/cb"), verifier, late)
                .unwrap_err(),
            ExchangeError::UnknownCode
        );
    }
}
