//! One request's way through an adapter, framework-neutral: [`Authorizer::begin`] and
//! [`Pending::finish`], which both framework adapters drive with their own request and response
//! types (as rustls's shared connection core sits under its client and server).
//!
//! The steps, in order: decide at once, counting where the authorizer counts (the store's
//! windows by default, see [`Authorizer::authorize`]), or authenticate and
//! hand the adapter the key to count in its outside limiter; then decide with the limiter's
//! answer. The observer is told of every decision exactly once, where it is made. What is left to
//! an adapter is what only it can do: read the request, wait for the limiter under its own
//! timer, call the wrapped service, write the response, and log.

use crate::async_limiter::LimiterUnavailable;
use crate::authorize::Authorizer;
use crate::decision::{Authenticated, Decision, Denial};
use crate::digest::KeyId;
use crate::observe::{observe, Observer, Outcome};
use crate::quota::Quota;
use crate::rate_limit::LimitDecision;
use crate::request::AuthRequest;
use crate::scope::Scopes;
use crate::time::UnixTime;

/// What [`Authorizer::begin`] leaves the adapter to do.
#[derive(Debug)]
#[must_use = "a request must be refused unless it was granted"]
pub enum Step {
    /// Decided: serve the request with the grant, or answer the denial.
    Decided(Decision),
    /// The key is active: count the request in the outside limiter (under
    /// [`Pending::limit_id`] and [`Pending::quota`]), then call [`Pending::finish`].
    Count(Pending),
}

/// An authenticated request waiting for its outside limiter's answer.
#[derive(Debug)]
#[must_use = "a pending request must be finished"]
pub struct Pending {
    key: Authenticated,
    required: Scopes,
    now: UnixTime,
}

/// What [`Pending::finish`] decided.
#[derive(Debug)]
#[must_use = "a request must be refused unless it was granted"]
pub enum Finish {
    /// Decided with the limiter's answer.
    Decided(Decision),
    /// The limiter could not decide: answer the denial (core's 503); the error is for the
    /// adapter's log.
    Unavailable(Denial, LimiterUnavailable),
}

impl Authorizer {
    /// Begins one request in an adapter: with `outside_limiter` false the decision, counted
    /// where [`Authorizer::authorize`] counts (the store's windows by default); with it true, a
    /// refusal at once
    /// or the key to count outside ([`Authorizer::authenticate`]). `observer`, if any, is told
    /// of a decision made here.
    #[inline]
    pub fn begin(
        &self,
        request: &AuthRequest<'_>,
        outside_limiter: bool,
        observer: Option<&Observer>,
    ) -> Step {
        if !outside_limiter {
            let decision = self.authorize(request);
            tell(observer, &decision);
            return Step::Decided(decision);
        }
        match self.authenticate(request) {
            Ok(key) => Step::Count(Pending {
                key,
                required: request.required,
                now: request.now,
            }),
            Err(denial) => {
                observe(observer, Outcome::Denied(&denial));
                Step::Decided(Decision::Denied(denial))
            }
        }
    }
}

impl Pending {
    /// The id to count the request under (a rotated key's replacement shares its window).
    #[must_use]
    pub fn limit_id(&self) -> KeyId {
        self.key.limit_id
    }

    /// The key's quota.
    #[must_use]
    pub fn quota(&self) -> Quota {
        self.key.quota
    }

    /// The key's id, for logs.
    #[must_use]
    pub fn key_id(&self) -> KeyId {
        self.key.key_id
    }

    /// The request's time.
    #[must_use]
    pub fn now(&self) -> UnixTime {
        self.now
    }

    /// Decides with the outside limiter's `answer`; `observer`, if any, is told.
    pub fn finish(
        self,
        auth: &Authorizer,
        answer: Result<LimitDecision, LimiterUnavailable>,
        observer: Option<&Observer>,
    ) -> Finish {
        match answer {
            Ok(limit) => {
                let decision = auth.decide(self.key, limit, self.required, self.now);
                tell(observer, &decision);
                Finish::Decided(decision)
            }
            Err(e) => {
                observe(observer, Outcome::Unavailable(&e));
                Finish::Unavailable(Denial::limiter_unavailable(&self.key), e)
            }
        }
    }
}

/// Tells `observer` of `decision`.
#[inline]
fn tell(observer: Option<&Observer>, decision: &Decision) {
    match decision {
        Decision::Granted(grant) => observe(observer, Outcome::Granted(grant)),
        Decision::Denied(denial) => observe(observer, Outcome::Denied(denial)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::{KeyStore, NewKey, Preset};

    const NOW: UnixTime = UnixTime::from_secs(1_800_000_000);

    #[test]
    fn each_decision_is_observed_once_where_it_is_made() {
        let store = Arc::new(KeyStore::new());
        let issued = store.issue(&NewKey::new("k", Preset::Full), NOW).unwrap();
        let auth = Authorizer::new(store);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let observer: Observer = Arc::new(move |o| record.lock().unwrap().push(o.label()));
        let header = format!("Bearer {}", &*issued.key.expose_secret());
        let request = AuthRequest::new(Some(header.as_bytes()), Scopes::VPS_READ, NOW);
        assert!(matches!(
            auth.begin(&request, false, Some(&observer)),
            Step::Decided(Decision::Granted(_))
        ));
        let Step::Count(pending) = auth.begin(&request, true, Some(&observer)) else {
            panic!("an active key is counted outside");
        };
        assert_eq!(pending.key_id(), issued.record.id());
        let limit = auth
            .limiter()
            .check(pending.limit_id(), pending.quota(), pending.now());
        assert!(matches!(
            pending.finish(&auth, Ok(limit), Some(&observer)),
            Finish::Decided(Decision::Granted(_))
        ));
        let Step::Count(pending) = auth.begin(&request, true, Some(&observer)) else {
            panic!("an active key is counted outside");
        };
        let Finish::Unavailable(denial, _) = pending.finish(
            &auth,
            Err(LimiterUnavailable {
                reason: "down".into(),
            }),
            Some(&observer),
        ) else {
            panic!("an unavailable limiter is a 503");
        };
        assert_eq!(denial.status(), 503);
        let bad = AuthRequest::new(Some(b"Basic x"), Scopes::VPS_READ, NOW);
        assert!(matches!(
            auth.begin(&bad, true, Some(&observer)),
            Step::Decided(Decision::Denied(_))
        ));
        assert_eq!(
            *seen.lock().unwrap(),
            ["granted", "granted", "unavailable", "denied"]
        );
    }
}
