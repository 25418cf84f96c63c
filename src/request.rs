//! What the host knows about one request: [`AuthRequest`].

use core::fmt;
use core::net::IpAddr;

use crate::scope::Scopes;
use crate::time::UnixTime;

/// One request to authorize: what [`Authorizer::authorize`](crate::Authorizer::authorize) and
/// [`Authorizer::authenticate`](crate::Authorizer::authenticate) read.
///
/// A value rather than positional arguments, so that a rule which needs more of the request
/// (such as a per-key allowlist of client addresses) can be added without changing every
/// caller. Build one with [`AuthRequest::new`]; the fields are public to read.
///
/// ```
/// use std::net::{IpAddr, Ipv4Addr};
/// use sitequest_auth::{AuthRequest, Scopes, UnixTime};
/// let header: Option<&[u8]> = Some(b"Bearer sq_live_...");
/// let request = AuthRequest::new(header, Scopes::VPS_READ, UnixTime::from_secs(1_800_000_000))
///     .with_client_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
/// assert_eq!(request.required, Scopes::VPS_READ);
/// ```
///
/// Its `Debug` form gives the `Authorization` value's length, never its bytes (they are the
/// key).
#[derive(Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthRequest<'a> {
    /// The raw `Authorization` field value, which may not be UTF-8; `None` if the request had
    /// none. A request with more than one `Authorization` field has no single credential:
    /// [`AuthRequest::from_fields`] makes it an empty value, refused as malformed.
    pub authorization: Option<&'a [u8]>,
    /// The scopes the route requires (all of them).
    pub required: Scopes,
    /// The current time.
    pub now: UnixTime,
    /// The client's address, when the host knows it.
    pub client_ip: Option<IpAddr>,
}

impl fmt::Debug for AuthRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// The credential, redacted: how long it is.
        struct Redacted(usize);
        impl fmt::Debug for Redacted {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "<redacted, {} bytes>", self.0)
            }
        }
        f.debug_struct("AuthRequest")
            .field(
                "authorization",
                &self.authorization.map(|v| Redacted(v.len())),
            )
            .field("required", &self.required)
            .field("now", &self.now)
            .field("client_ip", &self.client_ip)
            .finish()
    }
}

impl<'a> AuthRequest<'a> {
    /// A request carrying `authorization` (the raw field value, `None` without one) to a route
    /// that requires `required`, at `now`.
    #[must_use]
    #[inline]
    pub const fn new(authorization: Option<&'a [u8]>, required: Scopes, now: UnixTime) -> Self {
        Self {
            authorization,
            required,
            now,
            client_ip: None,
        }
    }

    /// A request from its `Authorization` field values as received, in any number: none is a
    /// request without credentials, and more than one has no single credential, so it is
    /// refused as malformed, like any value that is not a bearer key. Every adapter applies this
    /// one rule through here.
    ///
    /// ```
    /// use sitequest_auth::{AuthRequest, Scopes, UnixTime};
    /// let now = UnixTime::from_secs(1_800_000_000);
    /// let two: [&[u8]; 2] = [b"Bearer a", b"Bearer b"];
    /// let request = AuthRequest::from_fields(two, Scopes::VPS_READ, now);
    /// assert_eq!(request.authorization, Some(&b""[..]));
    /// assert_eq!(AuthRequest::from_fields([], Scopes::VPS_READ, now).authorization, None);
    /// ```
    #[must_use]
    #[inline]
    pub fn from_fields(
        fields: impl IntoIterator<Item = &'a [u8]>,
        required: Scopes,
        now: UnixTime,
    ) -> Self {
        let mut fields = fields.into_iter();
        let authorization = match (fields.next(), fields.next()) {
            (None, _) => None,
            (Some(value), None) => Some(value),
            (Some(_), Some(_)) => Some(&b""[..]),
        };
        Self::new(authorization, required, now)
    }

    /// Names the client's address.
    #[must_use]
    #[inline]
    pub const fn with_client_ip(mut self, ip: IpAddr) -> Self {
        self.client_ip = Some(ip);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_credential_s_length_not_its_bytes() {
        let key = "sq_live_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let header = format!("Bearer {key}");
        let request = AuthRequest::new(
            Some(header.as_bytes()),
            Scopes::VPS_READ,
            UnixTime::from_secs(1_800_000_000),
        );
        let debug = format!("{request:?}");
        assert!(!debug.contains("0123456789abcdef"), "{debug}");
        // The bytes as a list of numbers: "B", "e", "a", "r" are 66, 101, 97, 114.
        assert!(!debug.contains("66, 101, 97, 114"), "{debug}");
        assert!(
            debug.contains("authorization: Some(<redacted, 79 bytes>)"),
            "{debug}"
        );
        let none = AuthRequest::new(None, Scopes::VPS_READ, UnixTime::from_secs(0));
        assert!(format!("{none:?}").contains("authorization: None"));
    }
}
