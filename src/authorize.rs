//! The hot path: from a raw `Authorization` value to a [`Grant`] or a [`Denial`].

use std::sync::Arc;

use crate::address_limiter::AddressLimiter;
use crate::bearer::bearer_digest;
use crate::decision::{Authenticated, Decision, Denial, DenialReason, Grant};
use crate::digest::KeyDigest;
use crate::limiter::RateLimiter;
use crate::quota::Quota;
use crate::rate_limit::{LimitDecision, RateLimit};
use crate::request::AuthRequest;
use crate::response::Realm;
use crate::scope::Scopes;
use crate::store::{Counted, KeyStore, Lookup};
use crate::time::UnixTime;

/// Authorizes requests against a [`KeyStore`], counting each key's window in the store (in the
/// key's entry, or for a default quota of another period than the minute in a limiter the store
/// keeps for that period: see [`Authorizer::with_quota`]) or in a [`RateLimiter`] of its own
/// ([`Authorizer::with_limiter`]).
///
/// # Order of checks
///
/// 1. No `Authorization` header: 401.
/// 2. Not `Bearer <well-formed key>`: 401, before any hashing or limiter work.
/// 3. SHA-256 of the key, then lookup: unknown, revoked or expired keys get a 401 without
///    touching the key limiter.
/// 4. The key has an allowlist ([`KeyRecord::allowed_ips`](crate::KeyRecord::allowed_ips)) that
///    does not hold the client's address, or the host did not name one: 403 `IP_NOT_ALLOWED`,
///    not counted against the key's window (a stolen key used from elsewhere does not use up
///    its owner's quota).
///
///    A refusal in steps 1 to 4 from a client address ([`AuthRequest::with_client_ip`]) that
///    has used up its quota of requests without a valid key (see below) is a 429 instead. A
///    live key is always looked up, whatever its address's quota: someone else sharing the
///    address (a NAT, an office) cannot deny the key's owner service, and nothing is gained by
///    refusing it, since a 256-bit key cannot be guessed.
/// 5. The key's request is counted in its window. If the window is already full: 429, and the
///    refused request is not counted.
/// 6. The key lacks a required scope: 403. The request was counted in step 5, so a key cannot
///    probe scopes without spending quota.
/// 7. Otherwise a [`Grant`].
///
/// Every 401 has the same body and headers, whatever the cause, so a client cannot tell an
/// unknown key from a revoked or expired one; the cause is in [`Denial::reason`] for the host's
/// logs and metrics.
///
/// # Requests without a valid key
///
/// The spec says every response carries rate-limit headers. Refusals in steps 1 to 4 are
/// counted per client address in an [`AddressLimiter`] (by default 60 a minute for up to
/// 65,536 addresses; see [`Authorizer::with_address_limiter`]), and carry that address's
/// window, policy `"unauthenticated"`; past it, those refusals are 429s (a missing or malformed
/// credential still costs no hashing). Without a client address nothing is counted and a 401
/// carries no rate-limit fields.
#[derive(Debug)]
pub struct Authorizer {
    store: Arc<KeyStore>,
    limiter: RateLimiter,
    /// Whether keys' windows are counted in the store (the default) rather than in `limiter`.
    windows_in_store: bool,
    /// Where the store counts keys without a quota of their own under `quota`: in their
    /// entries (`None`), or in the store's limiter for `quota`'s period.
    default_windows: Option<Arc<RateLimiter>>,
    quota: Quota,
    realm: Realm,
    addresses: Option<AddressLimiter>,
}

impl Authorizer {
    /// Authorizes against `store` with the spec's default quota, 60 requests per minute.
    #[must_use]
    pub fn new(store: Arc<KeyStore>) -> Self {
        Self {
            windows_in_store: true,
            default_windows: store.windows_of_period(Quota::SPEC.period_secs()),
            store,
            limiter: RateLimiter::new(),
            quota: Quota::SPEC,
            realm: Realm::default(),
            addresses: Some(AddressLimiter::new(Quota::SPEC)),
        }
    }

    /// Counts requests without a valid key per client address in `limiter`, or not at all with
    /// `None` (see [requests without a valid key](Authorizer#requests-without-a-valid-key)).
    #[must_use]
    pub fn with_address_limiter(mut self, limiter: Option<AddressLimiter>) -> Self {
        self.addresses = limiter;
        self
    }

    /// The limiter of requests without a valid key, if requests are counted per address.
    #[must_use]
    pub fn address_limiter(&self) -> Option<&AddressLimiter> {
        self.addresses.as_ref()
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
    ///
    /// With windows in the store (the default), a key's window belongs to the store, whatever
    /// the order authorizers are built in: a key with a quota of its own counts in one window
    /// under every authorizer over the store, and a key without one counts in one window per
    /// period of the authorizers' default quotas (each authorizer applies its own limit to the
    /// count of its period's window). Windows of the spec's one-minute period are kept in the
    /// keys' entries; those of another period in a limiter the store keeps for that period
    /// (one window cannot hold two periods: they would reset each other's and neither would
    /// limit).
    ///
    /// So each authorizer limits the count of its period's window: two with one period and
    /// different limits count a key's requests together (after 10 requests through one allowing
    /// 1,000 a minute, one allowing 10 a minute refuses the key for the rest of the minute), and
    /// two with different periods do not see each other's requests. A key removed and stored
    /// again with another quota of its own (or none) counts in another window from then on.
    #[must_use]
    pub fn with_quota(mut self, quota: Quota) -> Self {
        self.quota = quota;
        self.default_windows = self.store.windows_of_period(quota.period_secs());
        self
    }

    /// Counts keys' windows in the given lock-striped limiter instead of in the store's entries.
    ///
    /// By default [`Authorizer::authorize`] counts each key's window in the store: for a key
    /// with a quota of its own or under a one-minute default quota, in the key's own entry,
    /// beside the fields it reads anyway, under the store's shard lock, so no other memory is
    /// touched (a removed key's window is kept by the store while it lasts, for its replacement
    /// or its return). A separate limiter can be given more stripes, and its windows are this
    /// authorizer's own rather than the store's (see [`Authorizer::with_quota`]): next to
    /// authorizers counting in the store, each key gets a quota in each. For one authorizer over
    /// a store the decisions are the same.
    #[must_use]
    pub fn with_limiter(mut self, limiter: RateLimiter) -> Self {
        self.limiter = limiter;
        self.windows_in_store = false;
        self
    }

    /// Whether requests are counted in the store's windows (the default) rather than in
    /// [`Authorizer::limiter`] (after [`Authorizer::with_limiter`]).
    #[must_use]
    pub fn counts_in_store(&self) -> bool {
        self.windows_in_store
    }

    /// The key store.
    #[must_use]
    pub fn store(&self) -> &Arc<KeyStore> {
        &self.store
    }

    /// The lock-striped limiter: where [`Authorizer::authorize`] counts after
    /// [`Authorizer::with_limiter`], and a limiter hosts may count in themselves (see
    /// [`Authorizer::authenticate`]).
    #[must_use]
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// The state of the window `record`'s requests count in at `now` (its own, or the one it
    /// shares with the key it replaced), as [`Authorizer::authorize`] counts it, without counting.
    #[must_use]
    pub fn window(&self, record: &crate::KeyRecord, now: UnixTime) -> RateLimit {
        // The quota the store holds for the key, which `authorize` reads (a record of the host's
        // may differ: merging keeps the stored one).
        let own = self
            .store
            .stored_rate_limit(record.id())
            .unwrap_or(record.rate_limit);
        let quota = own.unwrap_or(self.quota);
        match (self.windows_in_store, &self.default_windows, own) {
            (true, Some(limiter), None) => limiter.peek(record.limit_id(), quota, now),
            (true, _, _) => self.store.peek_window(record.limit_id(), quota, now),
            (false, _, _) => self.limiter.peek(record.limit_id(), quota, now),
        }
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
        if self.windows_in_store {
            return self.authorize_counting_in_store(request);
        }
        match self.authenticate_inline(request) {
            Ok(key) => {
                let limit = self.limiter.check(key.limit_id, key.quota, request.now);
                self.decide(key, limit, request.required, request.now)
            }
            Err(denial) => Decision::Denied(denial),
        }
    }

    /// Steps 0 to 4 of [the order of checks](Authorizer#order-of-checks): parse the header, hash
    /// the key, look it up and check its allowlist. An active key comes back with its quota and
    /// the id of its window, for hosts that count requests in a limiter of their own (such as
    /// one shared by several servers) and then call [`Authorizer::decide`].
    ///
    /// # Errors
    ///
    /// The 401 [`Denial`] for a missing, malformed, unknown, revoked or expired key, the 403 of
    /// a key used from outside its allowlist, and the 429 of an address past its quota of
    /// requests without a valid key.
    #[inline]
    pub fn authenticate(&self, request: &AuthRequest<'_>) -> Result<Authenticated, Denial> {
        self.authenticate_inline(request)
    }

    /// [`Authorizer::authorize`] with windows in the store: one lookup finds the key and counts
    /// the request in its entry.
    #[inline(always)]
    fn authorize_counting_in_store(&self, request: &AuthRequest<'_>) -> Decision {
        // Every refusal goes through one site that builds it with the address's window, as in
        // `authenticate_inline`: built at each site of refusal, the code that refuses a
        // malformed header grew and cost the address's count twice over.
        match self.count_in_store(request) {
            Ok((key, limit)) => self.decide(key, limit, request.required, request.now),
            Err(reason) => Decision::Denied(self.refuse(reason, request)),
        }
    }

    /// Parses, hashes, looks the key up and counts the request in its entry: the key with the
    /// limiter's answer, or why it is refused.
    #[inline(always)]
    fn count_in_store(
        &self,
        request: &AuthRequest<'_>,
    ) -> Result<(Authenticated, LimitDecision), DenialReason> {
        let digest = request_digest(request)?;
        match self.store.lookup_counting(
            &digest,
            request.now,
            request.client_ip,
            self.quota,
            self.default_windows.as_deref(),
        ) {
            Counted::Active {
                id,
                limit_id,
                scopes,
                quota,
                limit,
            } => Ok((
                Authenticated {
                    key_id: id,
                    scopes,
                    quota,
                    limit_id,
                },
                limit,
            )),
            Counted::Refused(lookup) => Err(refusal_reason(lookup)),
        }
    }

    /// The refusal of a request without a valid key, with its address's window (counted), or
    /// the address's 429 past its quota.
    #[inline(always)]
    fn refuse(&self, reason: DenialReason, request: &AuthRequest<'_>) -> Denial {
        // One hash of the address: counted, or refused uncounted past the quota. Both answers
        // are built here, in registers: a 429 built apart and merged through memory with the
        // counted refusal was read back in wider words than it was written (a store-forwarding
        // stall on every refusal, counted or not).
        let (reason, rate_limit, retry_after) = match (&self.addresses, request.client_ip) {
            (Some(limiter), Some(ip)) => match limiter.check(ip, request.now) {
                LimitDecision::Allowed(window) => (reason, Some(window), None),
                LimitDecision::Limited(window) => (
                    DenialReason::AddressRateLimited,
                    Some(window),
                    Some(window.seconds_to_reset(request.now).max(1)),
                ),
            },
            _ => (reason, None, None),
        };
        Denial {
            reason,
            rate_limit,
            retry_after,
        }
    }

    /// [`Authorizer::authenticate`], always inlined into [`Authorizer::authorize`]: returned
    /// through memory from a call, its result was read back wider than it was written, which
    /// stalled every refusal on a store-forwarding miss.
    #[inline(always)]
    fn authenticate_inline(&self, request: &AuthRequest<'_>) -> Result<Authenticated, Denial> {
        // The refusal is built once, here, with its window: moved out of a lookup that built it
        // and then widened, it was read back wider than it was written (a store-forwarding
        // stall that cost more than the address's count).
        match self.lookup(request) {
            Ok(key) => Ok(key),
            Err(reason) => Err(self.refuse(reason, request)),
        }
    }

    /// Parses, hashes and looks the key up: the key, or why it is refused.
    #[inline(always)]
    fn lookup(&self, request: &AuthRequest<'_>) -> Result<Authenticated, DenialReason> {
        let digest = request_digest(request)?;
        match self.store.lookup(&digest, request.now, request.client_ip) {
            Lookup::Active {
                id,
                limit_id,
                scopes,
                rate_limit,
            } => Ok(Authenticated {
                key_id: id,
                scopes,
                quota: rate_limit.unwrap_or(self.quota),
                limit_id,
            }),
            refused => Err(refusal_reason(refused)),
        }
    }

    /// Steps 4 to 6 of [the order of checks](Authorizer#order-of-checks), given the limiter's
    /// answer for this request: a 429 if it was limited, then a 403 if the key lacks a required
    /// scope, else a grant.
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
            scopes: key.scopes,
            rate_limit: rate,
        })
    }
}

/// Steps 1 and 2 of [the order of checks](Authorizer#order-of-checks), then step 3's hash: the
/// digest of the request's key, or why there is none.
#[inline(always)]
fn request_digest(request: &AuthRequest<'_>) -> Result<KeyDigest, DenialReason> {
    match request.authorization {
        None => Err(DenialReason::MissingHeader),
        Some(value) => bearer_digest(value).map_err(DenialReason::Malformed),
    }
}

/// Why a key that is not active is refused.
#[inline(always)]
fn refusal_reason(lookup: Lookup) -> DenialReason {
    match lookup {
        Lookup::Revoked(id) => DenialReason::Revoked(id),
        Lookup::Expired(id) => DenialReason::Expired(id),
        Lookup::AddressNotAllowed(id) => DenialReason::AddressNotAllowed(id),
        Lookup::Unknown | Lookup::Active { .. } => DenialReason::UnknownKey,
    }
}
