//! The authenticated key, as seen by handlers.

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::error::InternalError;
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest};
use sitequest_auth::{KeyId, KeyName, RateLimit, Scopes};

use crate::response::missing_middleware;

/// The key that made a granted request: in the request's extensions, and an extractor.
///
/// Holds no secret, so it can be logged.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthenticatedKey {
    /// The key's public id.
    pub id: KeyId,
    /// The key's name (inline up to 23 bytes, longer names shared with the key store).
    pub name: KeyName,
    /// All the scopes the key holds.
    pub scopes: Scopes,
    /// The key's window after counting this request.
    pub rate_limit: RateLimit,
}

/// Extracts the [`AuthenticatedKey`] set by [`AuthMiddleware`](crate::AuthMiddleware). On a
/// route without the middleware this is a server bug, answered with a 500.
impl FromRequest for AuthenticatedKey {
    type Error = Error;
    type Future = Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let key = req.extensions().get::<Self>().cloned();
        ready(key.ok_or_else(|| {
            // A server bug that any client can trigger as often as it likes: logged at most
            // once a second.
            if let Some(suppressed) =
                crate::middleware::MISSING_MIDDLEWARE_LOG.allow(std::time::Instant::now())
            {
                tracing::error!(
                    suppressed,
                    "AuthenticatedKey extracted on a route without AuthMiddleware"
                );
            }
            InternalError::from_response(
                "AuthenticatedKey extracted on a route without AuthMiddleware",
                missing_middleware().map_into_boxed_body(),
            )
            .into()
        }))
    }
}
