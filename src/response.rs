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
//! `"default";q=<limit>;w=<period>` and `"default";r=<remaining>;t=<seconds to reset>`, with the
//! policy named `"unauthenticated"` for a client address's window (a refusal without a valid key).

use core::fmt;
use std::sync::Arc;

use crate::decision::{Decision, Denial, DenialReason, Grant};
use crate::rate_limit::{LimitPolicy, RateLimit};
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

/// A header value being rendered, on the stack: the longest field (`RateLimit` of the
/// `"unauthenticated"` policy with both numbers at their maximum) is 53 bytes.
struct Text {
    bytes: [u8; 64],
    len: usize,
}

impl Text {
    const fn new() -> Self {
        Self {
            bytes: [0; 64],
            len: 0,
        }
    }

    fn push(&mut self, s: &str) -> &mut Self {
        self.bytes[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
        self.len += s.len();
        self
    }

    fn number(&mut self, mut n: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let d = &digits[i..];
        self.bytes[self.len..self.len + d.len()].copy_from_slice(d);
        self.len += d.len();
        self
    }

    fn as_str(&self) -> &str {
        // Only ASCII is ever pushed.
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

/// Zero-padded decimal triplets of 0 to 999, for values rendered without a copy.
static SMALL: [u8; 3000] = {
    let mut t = [0u8; 3000];
    let mut n = 0;
    while n < 1000 {
        t[n * 3] = b'0' + (n / 100) as u8;
        t[n * 3 + 1] = b'0' + (n / 10 % 10) as u8;
        t[n * 3 + 2] = b'0' + (n % 10) as u8;
        n += 1;
    }
    t
};

/// The text of `n` as a `'static` string when it is below 1,000.
fn small_number(n: u32) -> Option<&'static str> {
    let n = n as usize;
    if n >= 1000 {
        return None;
    }
    let skip = if n >= 100 {
        0
    } else if n >= 10 {
        1
    } else {
        2
    };
    core::str::from_utf8(&SMALL[n * 3 + skip..n * 3 + 3]).ok()
}

/// The `RateLimit-Policy` value of the spec's quota, 60 requests a minute.
const SPEC_POLICY: &str = "\"default\";q=60;w=60";

/// One of the five rate-limit fields, in the order [`RateLimit::for_each_field`] renders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RateLimitField {
    /// `X-RateLimit-Limit`.
    Limit,
    /// `X-RateLimit-Remaining`.
    Remaining,
    /// `X-RateLimit-Reset`.
    Reset,
    /// `RateLimit-Policy`.
    Policy,
    /// `RateLimit`.
    RateLimit,
}

impl RateLimitField {
    /// The header's name, as in [`header`].
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Limit => header::X_RATELIMIT_LIMIT,
            Self::Remaining => header::X_RATELIMIT_REMAINING,
            Self::Reset => header::X_RATELIMIT_RESET,
            Self::Policy => header::RATELIMIT_POLICY,
            Self::RateLimit => header::RATELIMIT,
        }
    }
}

/// A rendered header value: a `'static` string (the common small numbers and the spec's policy),
/// or text in a stack buffer. [`RateLimit::for_each_field`] lends these to its caller.
pub struct FieldValue<'a>(FieldRepr<'a>);

enum FieldRepr<'a> {
    Static(&'static str),
    Rendered(&'a str),
}

impl<'a> FieldValue<'a> {
    /// The value's text: printable ASCII.
    #[must_use]
    pub fn as_str(&self) -> &'a str {
        match self.0 {
            FieldRepr::Static(s) => s,
            FieldRepr::Rendered(s) => s,
        }
    }

    /// The value's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &'a [u8] {
        self.as_str().as_bytes()
    }

    /// The value as a `'static` string when it is one, so that an adapter can use it without a
    /// copy (as `http::HeaderValue::from_static`).
    #[must_use]
    pub fn as_static(&self) -> Option<&'static str> {
        match self.0 {
            FieldRepr::Static(s) => Some(s),
            FieldRepr::Rendered(_) => None,
        }
    }
}

impl fmt::Debug for FieldValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
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

    /// Renders the five rate-limit fields at `now` and hands each to `sink`, in the order of
    /// [`RateLimit::headers`], without allocating: the renderer behind every other form, for
    /// adapters that copy values straight into their framework's header map.
    ///
    /// ```
    /// use sitequest_auth::{Quota, RateLimiter, KeyId, UnixTime};
    /// let now = UnixTime::from_secs(1_800_000_000);
    /// let r = RateLimiter::new().check(KeyId::from_u64(1), Quota::SPEC, now).rate_limit();
    /// let mut seen = Vec::new();
    /// r.for_each_field(now, |field, value| {
    ///     seen.push(format!("{}: {}", field.name(), value.as_str()))
    /// });
    /// assert_eq!(seen[3], r#"RateLimit-Policy: "default";q=60;w=60"#);
    /// ```
    pub fn for_each_field(
        &self,
        now: UnixTime,
        mut sink: impl FnMut(RateLimitField, FieldValue<'_>),
    ) {
        let mut emit_number =
            |name: RateLimitField, n: u64| match u32::try_from(n).ok().and_then(small_number) {
                Some(s) => sink(name, FieldValue(FieldRepr::Static(s))),
                None => {
                    let mut t = Text::new();
                    t.number(n);
                    sink(name, FieldValue(FieldRepr::Rendered(t.as_str())));
                }
            };
        emit_number(RateLimitField::Limit, u64::from(self.limit));
        emit_number(RateLimitField::Remaining, u64::from(self.remaining));
        emit_number(RateLimitField::Reset, self.reset_at.as_secs());
        let name = self.policy.name();
        if (self.limit, self.period_secs, self.policy) == (60, 60, LimitPolicy::Key) {
            sink(
                RateLimitField::Policy,
                FieldValue(FieldRepr::Static(SPEC_POLICY)),
            );
        } else {
            let mut t = Text::new();
            t.push("\"")
                .push(name)
                .push("\";q=")
                .number(u64::from(self.limit))
                .push(";w=")
                .number(u64::from(self.period_secs));
            sink(
                RateLimitField::Policy,
                FieldValue(FieldRepr::Rendered(t.as_str())),
            );
        }
        let mut t = Text::new();
        t.push("\"")
            .push(name)
            .push("\";r=")
            .number(u64::from(self.remaining))
            .push(";t=")
            .number(self.seconds_to_reset(now));
        sink(
            RateLimitField::RateLimit,
            FieldValue(FieldRepr::Rendered(t.as_str())),
        );
    }

    fn push_headers(&self, h: &mut Vec<Header>, now: UnixTime) {
        self.for_each_field(now, |field, value| {
            h.push((field.name(), value.as_str().to_owned()));
        });
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
            DenialReason::RateLimited(_)
            | DenialReason::LimiterUnavailable(_)
            | DenialReason::AddressNotAllowed(_)
            | DenialReason::AddressRateLimited => None,
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
    use http::{HeaderMap, HeaderName, HeaderValue};

    use super::{
        header, Decision, Denial, FieldValue, Grant, RateLimit, RateLimitField, Realm, UnixTime,
    };

    const LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
    const REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
    const RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
    const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
    const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

    fn field_name(f: RateLimitField) -> HeaderName {
        match f {
            RateLimitField::Limit => LIMIT,
            RateLimitField::Remaining => REMAINING,
            RateLimitField::Reset => RESET,
            RateLimitField::Policy => POLICY,
            RateLimitField::RateLimit => RATELIMIT,
        }
    }

    /// The `http` name of a header this crate renders, without parsing the common ones.
    fn name(n: &'static str) -> Option<HeaderName> {
        Some(match n {
            header::X_RATELIMIT_LIMIT => LIMIT,
            header::X_RATELIMIT_REMAINING => REMAINING,
            header::X_RATELIMIT_RESET => RESET,
            header::RATELIMIT_POLICY => POLICY,
            header::RATELIMIT => RATELIMIT,
            header::RETRY_AFTER => http::header::RETRY_AFTER,
            header::WWW_AUTHENTICATE => http::header::WWW_AUTHENTICATE,
            other => return HeaderName::from_bytes(other.as_bytes()).ok(),
        })
    }

    /// The `http` value, without a copy when it is a `'static` string.
    fn value(v: &FieldValue<'_>) -> Option<HeaderValue> {
        match v.as_static() {
            Some(s) => Some(HeaderValue::from_static(s)),
            None => HeaderValue::from_bytes(v.as_bytes()).ok(),
        }
    }

    /// Inserts headers rendered as strings; names are static ASCII and values printable ASCII
    /// (see [`Header`](super::Header)), so every conversion succeeds.
    fn insert_all(map: &mut HeaderMap, headers: Vec<super::Header>) {
        for (n, v) in headers {
            if let (Some(n), Ok(v)) = (name(n), HeaderValue::try_from(v)) {
                map.insert(n, v);
            }
        }
    }

    impl RateLimit {
        /// Inserts the five rate-limit fields at `now` into `map`, with no allocation beyond
        /// the values' own (none for the spec's quota except the reset time and `RateLimit`).
        pub fn insert_headers(&self, now: UnixTime, map: &mut HeaderMap) {
            // Room for one more, as servers add `content-length` after the layers have run:
            // growing the map once, now, is cheaper than rehashing it then.
            map.reserve(6);
            self.for_each_field(now, |field, v| {
                if let Some(v) = value(&v) {
                    map.insert(field_name(field), v);
                }
            });
        }
    }

    impl Grant {
        /// Inserts the grant's headers ([`Grant::headers`]) into `map`.
        pub fn insert_headers(&self, now: UnixTime, map: &mut HeaderMap) {
            self.rate_limit.insert_headers(now, map);
        }
    }

    impl Denial {
        /// Inserts the denial's headers ([`Denial::headers`]) into `map`.
        pub fn insert_headers(&self, realm: &Realm, now: UnixTime, map: &mut HeaderMap) {
            insert_all(map, self.headers(realm, now));
        }
    }

    impl Decision {
        /// The response headers as an [`http::HeaderMap`].
        #[must_use]
        pub fn header_map(&self, realm: &Realm, now: UnixTime) -> HeaderMap {
            let mut map = HeaderMap::with_capacity(7);
            match self {
                Self::Granted(g) => g.insert_headers(now, &mut map),
                Self::Denied(d) => d.insert_headers(realm, now, &mut map),
            }
            map
        }
    }
}
