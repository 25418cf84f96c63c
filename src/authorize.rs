//! The hot path: from a raw `Authorization` value to a [`Grant`] or a [`Denial`].

use std::sync::Arc;

use crate::bearer::parse_bearer;
use crate::decision::{Authenticated, Decision, Denial, DenialReason, Grant};
use crate::key::ApiKey;
use crate::limiter::RateLimiter;
use crate::quota::Quota;
use crate::rate_limit::LimitDecision;
use crate::request::AuthRequest;
use crate::response::Realm;
use crate::scope::Scopes;
use crate::store::{KeyStore, Lookup};
use crate::time::UnixTime;

/// Authorizes requests against a [`KeyStore`] and a [`RateLimiter`].
///
/// # Order of checks
///
/// 1. No `Authorization` header: 401.
/// 2. Not `Bearer <well-formed key>`: 401, before any hashing or limiter work.
/// 3. SHA-256 of the key, then lookup: unknown, revoked or expired keys get a 401 without
///    touching the limiter.
/// 4. The key's request is counted in its window. If the window is already full: 429, and the
///    refused request is not counted.
/// 5. The key lacks a required scope: 403. The request was counted in step 4, so a key cannot
///    probe scopes without spending quota.
/// 6. Otherwise a [`Grant`].
///
/// Every 401 has the same body and headers, whatever the cause, and no rate-limit headers, so a
/// client cannot tell an unknown key from a revoked or expired one; the cause is in
/// [`Denial::reason`] for the host's logs and metrics.
#[derive(Debug)]
pub struct Authorizer {
    store: Arc<KeyStore>,
    limiter: RateLimiter,
    quota: Quota,
    realm: Realm,
}

impl Authorizer {
    /// Authorizes against `store` with the spec's default quota, 60 requests per minute.
    #[must_use]
    pub fn new(store: Arc<KeyStore>) -> Self {
        Self {
            store,
            limiter: RateLimiter::new(),
            quota: Quota::SPEC,
            realm: Realm::default(),
        }
    }

    /// Names `realm` in the `WWW-Authenticate` challenges (default `sitequest`).
    #[must_use]
    pub fn with_realm(mut self, realm: Realm) -> Self {
        self.realm = realm;
        self
    }

    /// The realm of the `WWW-Authenticate` challenges, for rendering a decision's headers
    /// ([`Decision::headers`]).
    #[must_use]
    pub fn realm(&self) -> &Realm {
        &self.realm
    }

    /// Sets the quota of keys that have none of their own.
    #[must_use]
    pub fn with_quota(mut self, quota: Quota) -> Self {
        self.quota = quota;
        self
    }

    /// Uses the given limiter (for example one with more stripes).
    #[must_use]
    pub fn with_limiter(mut self, limiter: RateLimiter) -> Self {
        self.limiter = limiter;
        self
    }

    /// The key store.
    #[must_use]
    pub fn store(&self) -> &Arc<KeyStore> {
        &self.store
    }

    /// The limiter.
    #[must_use]
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// The default quota.
    #[must_use]
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// Decides one request: see [the order of checks](Authorizer#order-of-checks).
    // Always inlined, so that the caller reads the decision where it was written: returned
    // through memory from a call, a refusal was read back wider than it was written and
    // stalled on a store-forwarding miss (a third of a forged header's cost).
    #[inline(always)]
    pub fn authorize(&self, request: &AuthRequest<'_>) -> Decision {
        match self.authenticate_inline(request) {
            Ok(key) => {
                let limit = self.limiter.check(key.key_id, key.quota, request.now);
                self.decide(key, limit, request.required, request.now)
            }
            Err(denial) => Decision::Denied(denial),
        }
    }

    /// Steps 1 to 3 of [the order of checks](Authorizer#order-of-checks): parse the header, hash
    /// the key and look it up. An active key comes back with its quota, for hosts that count
    /// requests in a limiter of their own (such as one shared by several servers) and then call
    /// [`Authorizer::decide`].
    ///
    /// # Errors
    ///
    /// The 401 [`Denial`] for a missing, malformed, unknown, revoked or expired key.
    #[inline]
    pub fn authenticate(&self, request: &AuthRequest<'_>) -> Result<Authenticated, Denial> {
        self.authenticate_inline(request)
    }

    /// [`Authorizer::authenticate`], always inlined into [`Authorizer::authorize`]: returned
    /// through memory from a call, its result was read back wider than it was written, which
    /// stalled every refusal on a store-forwarding miss.
    #[inline(always)]
    fn authenticate_inline(&self, request: &AuthRequest<'_>) -> Result<Authenticated, Denial> {
        let key = credential(request.authorization)?;
        match self.store.lookup(&key.digest(), request.now) {
            Lookup::Active {
                id,
                name,
                scopes,
                rate_limit,
            } => Ok(Authenticated {
                key_id: id,
                name,
                scopes,
                quota: rate_limit.unwrap_or(self.quota),
            }),
            Lookup::Unknown => Err(Denial::unauthorized(DenialReason::UnknownKey)),
            Lookup::Revoked(id) => Err(Denial::unauthorized(DenialReason::Revoked(id))),
            Lookup::Expired(id) => Err(Denial::unauthorized(DenialReason::Expired(id))),
        }
    }

    /// Steps 4 to 6 of [the order of checks](Authorizer#order-of-checks), given the limiter's
    /// answer for this request: a 429 if it was limited, then a 403 if the key lacks a required
    /// scope, else a grant, which takes the key's name from `key` (no reference count is
    /// touched).
    #[inline]
    pub fn decide(
        &self,
        key: Authenticated,
        limit: LimitDecision,
        required: Scopes,
        now: UnixTime,
    ) -> Decision {
        let rate = match limit {
            LimitDecision::Allowed(r) => r,
            LimitDecision::Limited(r) => {
                return Decision::Denied(Denial {
                    reason: DenialReason::RateLimited(key.key_id),
                    rate_limit: Some(r),
                    // Never earlier than the reset, and at least one second.
                    retry_after: Some(r.seconds_to_reset(now).max(1)),
                });
            }
        };
        if !key.scopes.contains(required) {
            return Decision::Denied(Denial {
                reason: DenialReason::InsufficientScope {
                    key_id: key.key_id,
                    missing: required.difference(key.scopes),
                },
                rate_limit: Some(rate),
                retry_after: None,
            });
        }
        Decision::Granted(Grant {
            key_id: key.key_id,
            name: key.name,
            scopes: key.scopes,
            rate_limit: rate,
        })
    }
}

/// The one parser of the `Authorization` value on the hot path: the key, or the 401 for a
/// missing or malformed credential, before any hashing.
#[inline]
fn credential(authorization: Option<&[u8]>) -> Result<ApiKey, Denial> {
    match authorization {
        None => Err(Denial::unauthorized(DenialReason::MissingHeader)),
        Some(value) => {
            parse_bearer(value).map_err(|e| Denial::unauthorized(DenialReason::Malformed(e)))
        }
    }
}
