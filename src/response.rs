//! The wire answer: every header of every response this crate decides, rendered in one place.
//! Adapters copy these onto their framework's response and add nothing of their own.
//!
//! | answer | headers |
//! |---|---|
//! | grant, 403, 429 | `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`, `RateLimit-Policy`, `RateLimit` |
//! | 429 | and `Retry-After` (seconds to the reset, at least 1) |
//! | 401, no credentials | `WWW-Authenticate: Bearer realm="sitequest"` |
//! | 401, any other cause | `WWW-Authenticate: Bearer realm="sitequest", error="invalid_token"` |
//! | 403 | and `WWW-Authenticate: Bearer realm="sitequest", error="insufficient_scope", scope="<missing scopes>"` |
//! | 503 | `Retry-After: 1` |
//!
//! The challenges follow RFC 6750 §3. Every 401 with credentials is identical whatever its
//! cause (malformed, unknown, revoked or expired), so it tells an attacker nothing. The
//! `RateLimit-Policy` and `RateLimit` fields are those of draft-ietf-httpapi-ratelimit-headers:
//! `"default";q=<limit>;w=<period>` and `"default";r=<remaining>;t=<seconds to reset>`.

use core::fmt;
use std::sync::Arc;

use crate::decision::{Decision, Denial, DenialReason, Grant};
use crate::rate_limit::RateLimit;
use crate::time::UnixTime;

/// Header names used in responses.
pub mod header {
    /// Maximum requests allowed per window.
    pub const X_RATELIMIT_LIMIT: &str = "X-RateLimit-Limit";
    /// Requests remaining in the current window.
    pub const X_RATELIMIT_REMAINING: &str = "X-RateLimit-Remaining";
    /// Unix time, in seconds, when the window resets.
    pub const X_RATELIMIT_RESET: &str = "X-RateLimit-Reset";
    /// The quota policy (IETF draft): `"default";q=<limit>;w=<period>`.
    pub const RATELIMIT_POLICY: &str = "RateLimit-Policy";
    /// The window's state (IETF draft): `"default";r=<remaining>;t=<seconds to reset>`.
    pub const RATELIMIT: &str = "RateLimit";
    /// Seconds to wait before retrying, on a 429 or a 503.
    pub const RETRY_AFTER: &str = "Retry-After";
    /// The challenge sent with every 401 and 403.
    pub const WWW_AUTHENTICATE: &str = "WWW-Authenticate";
}

/// One response header: its name and value. Values are ASCII digits, quoted realms and scope
/// names only, so they are valid in any HTTP library.
pub type Header = (&'static str, String);

/// The realm named in `WWW-Authenticate` challenges: `sitequest` unless the host sets another
/// with [`Authorizer::with_realm`](crate::Authorizer::with_realm).
#[derive(Clone, PartialEq, Eq)]
pub struct Realm(Arc<str>);

/// A realm that cannot be put in a quoted string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a realm must be 1 to 64 printable ASCII characters, without '\"' or '\\'")]
pub struct InvalidRealm;

impl Realm {
    /// The default realm.
    pub const DEFAULT: &'static str = "sitequest";

    /// A realm from its text.
    ///
    /// # Errors
    ///
    /// [`InvalidRealm`] for an empty text, one over 64 bytes, or one with a character that is
    /// not printable ASCII or is `"` or `\`.
    pub fn new(text: &str) -> Result<Self, InvalidRealm> {
        let ok = (1..=64).contains(&text.len())
            && text
                .bytes()
                .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\');
        if ok {
            Ok(Self(Arc::from(text)))
        } else {
            Err(InvalidRealm)
        }
    }

    /// The realm's text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Realm {
    fn default() -> Self {
        Self(Arc::from(Self::DEFAULT))
    }
}

impl fmt::Debug for Realm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Realm({:?})", self.as_str())
    }
}

impl RateLimit {
    /// The five rate-limit fields of a response to a known key, at `now`.
    #[must_use]
    pub fn headers(&self, now: UnixTime) -> Vec<Header> {
        let mut h = Vec::with_capacity(6);
        self.push_headers(&mut h, now);
        h
    }

    fn push_headers(&self, h: &mut Vec<Header>, now: UnixTime) {
        h.push((header::X_RATELIMIT_LIMIT, self.limit.to_string()));
        h.push((header::X_RATELIMIT_REMAINING, self.remaining.to_string()));
        h.push((header::X_RATELIMIT_RESET, self.reset_at.to_string()));
        h.push((
            header::RATELIMIT_POLICY,
            format!("\"default\";q={};w={}", self.limit, self.period_secs),
        ));
        h.push((
            header::RATELIMIT,
            format!(
                "\"default\";r={};t={}",
                self.remaining,
                self.seconds_to_reset(now)
            ),
        ));
    }
}

impl Grant {
    /// The headers of the response: the rate-limit fields at `now`.
    #[must_use]
    pub fn headers(&self, now: UnixTime) -> Vec<Header> {
        self.rate_limit.headers(now)
    }
}

impl Denial {
    /// The headers of the response, challenges in `realm`, at `now`: the rate-limit fields for
    /// a 403 or 429, `Retry-After` for a 429 or 503, and the `WWW-Authenticate` challenge of a
    /// 401 (`realm` alone without credentials, `error="invalid_token"` otherwise) or a 403
    /// (`error="insufficient_scope"` with the missing scopes).
    #[must_use]
    pub fn headers(&self, realm: &Realm, now: UnixTime) -> Vec<Header> {
        let mut h = Vec::with_capacity(7);
        if let Some(r) = self.rate_limit() {
            r.push_headers(&mut h, now);
        }
        if let Some(secs) = self.retry_after() {
            h.push((header::RETRY_AFTER, secs.to_string()));
        }
        let realm = realm.as_str();
        let challenge = match self.reason() {
            DenialReason::MissingHeader => Some(format!("Bearer realm=\"{realm}\"")),
            DenialReason::Malformed(_)
            | DenialReason::UnknownKey
            | DenialReason::Revoked(_)
            | DenialReason::Expired(_) => {
                Some(format!("Bearer realm=\"{realm}\", error=\"invalid_token\""))
            }
            DenialReason::InsufficientScope { missing, .. } => Some(format!(
                "Bearer realm=\"{realm}\", error=\"insufficient_scope\", scope=\"{missing}\""
            )),
            DenialReason::RateLimited(_) | DenialReason::LimiterUnavailable(_) => None,
        };
        if let Some(c) = challenge {
            h.push((header::WWW_AUTHENTICATE, c));
        }
        h
    }
}

impl Decision {
    /// The headers the response must carry (see [`Grant::headers`] and [`Denial::headers`]).
    #[must_use]
    pub fn headers(&self, realm: &Realm, now: UnixTime) -> Vec<Header> {
        match self {
            Self::Granted(g) => g.headers(now),
            Self::Denied(d) => d.headers(realm, now),
        }
    }
}

#[cfg(feature = "http")]
mod http_impls {
    use super::{Decision, Realm, UnixTime};

    impl Decision {
        /// The response headers as an [`http::HeaderMap`].
        #[must_use]
        pub fn header_map(&self, realm: &Realm, now: UnixTime) -> http::HeaderMap {
            let mut map = http::HeaderMap::with_capacity(7);
            for (name, value) in self.headers(realm, now) {
                // Names are static ASCII and values printable ASCII (see `Header`).
                if let (Ok(n), Ok(v)) = (
                    http::HeaderName::from_bytes(name.as_bytes()),
                    http::HeaderValue::try_from(value),
                ) {
                    map.insert(n, v);
                }
            }
            map
        }
    }
}
