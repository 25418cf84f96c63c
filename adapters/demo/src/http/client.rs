//! Who is asking: the client's address behind the trusted proxies, and the count of refusals
//! outside the guarded API routes in that address's quota.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use sitequest_auth::{AddressLimiter, RateLimit, UnixTime};

use crate::http::state::Core;

/// The client's address: the connection's `peer`, or, behind a trusted proxy, the address the
/// proxies name in `X-Forwarded-For`. `None` without a peer.
pub fn client_address(
    state: &Core,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Option<IpAddr> {
    let forwarded = headers.get_all("x-forwarded-for").iter();
    Some(
        state
            .trusted_proxies
            .client_address(peer?.ip(), forwarded.map(HeaderValue::as_bytes)),
    )
}

/// The client's address of a request (see [`client_address`]).
pub fn client_ip(state: &Core, req: &Request) -> Option<IpAddr> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    client_address(state, req.headers(), peer)
}

/// Refusals outside the guarded API routes (a wrong admin token, a bad signature), counted in
/// the client address's quota of requests without a valid key as the API's 401s are: nothing is
/// counted when the authorizer counts no addresses or the address is unknown.
#[derive(Debug)]
pub struct Refusals<'a> {
    quota: Option<(&'a AddressLimiter, IpAddr)>,
    now: UnixTime,
}

impl<'a> Refusals<'a> {
    /// The refusals of requests from `ip` at `now`.
    pub fn of(state: &'a Core, ip: Option<IpAddr>, now: UnixTime) -> Self {
        Self {
            quota: state.auth.address_limiter().zip(ip),
            now,
        }
    }

    /// The address's window when it has no room left: the request is then refused with a 429
    /// before anything else about it is looked at.
    pub fn exhausted(&self) -> Option<RateLimit> {
        self.quota
            .and_then(|(limiter, ip)| limiter.exhausted(ip, self.now))
    }

    /// Counts one refusal and puts the address's window on its answer.
    pub fn count(&self, mut res: Response) -> Response {
        if let Some((limiter, ip)) = self.quota {
            let window = limiter.check(ip, self.now).rate_limit();
            window.insert_headers(self.now, res.headers_mut());
        }
        res
    }
}
