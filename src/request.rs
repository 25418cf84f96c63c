//! What the host knows about one request: [`AuthRequest`].

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthRequest<'a> {
    /// The raw `Authorization` field value, which may not be UTF-8; `None` if the request had
    /// none. A request with more than one `Authorization` field has no single credential: pass
    /// a value that is not a bearer key (an empty one), so that it is refused as malformed.
    pub authorization: Option<&'a [u8]>,
    /// The scopes the route requires (all of them).
    pub required: Scopes,
    /// The current time.
    pub now: UnixTime,
    /// The client's address, when the host knows it.
    pub client_ip: Option<IpAddr>,
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

    /// Names the client's address.
    #[must_use]
    #[inline]
    pub const fn with_client_ip(mut self, ip: IpAddr) -> Self {
        self.client_ip = Some(ip);
        self
    }
}
