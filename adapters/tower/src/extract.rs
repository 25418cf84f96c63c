//! The authenticated key, as seen by handlers.

use sitequest_auth::{KeyId, KeyName, RateLimit, Scopes};

/// The key that made a granted request: in the request's extensions, and an axum extractor.
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

#[cfg(feature = "axum")]
mod axum_impl {
    use super::AuthenticatedKey;
    use axum_core::extract::FromRequestParts;
    use axum_core::response::{IntoResponse, Response};
    use http::request::Parts;

    /// Extracts the [`AuthenticatedKey`] set by [`AuthLayer`](crate::AuthLayer). On a route
    /// without the layer this is a server bug, answered with a 500.
    impl<S: Send + Sync> FromRequestParts<S> for AuthenticatedKey {
        type Rejection = Response;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Self, Self::Rejection> {
            parts.extensions.get::<Self>().cloned().ok_or_else(|| {
                // A server bug that any client can trigger as often as it likes: logged at
                // most once a second.
                if let Some(suppressed) =
                    crate::layer::MISSING_LAYER_LOG.allow(std::time::Instant::now())
                {
                    tracing::error!(
                        suppressed,
                        "AuthenticatedKey extracted on a route without AuthLayer"
                    );
                }
                crate::headers::missing_layer::<axum_core::body::Body>().into_response()
            })
        }
    }
}
