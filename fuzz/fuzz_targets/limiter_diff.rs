//! Differential: the striped limiter and a plain `HashMap` of counters, driven by the same
//! arbitrary (key, time) events, must agree on every decision, remaining count and reset time.
#![no_main]

use std::collections::HashMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sitequest_auth::{KeyId, LimitDecision, Quota, RateLimiter, UnixTime};

#[derive(Arbitrary, Debug)]
enum Event {
    Check { key: u8, dt: i16 },
    Sweep { dt: i16 },
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// 0 means a single stripe, where the clock may go backwards; otherwise time only moves
    /// forwards (each stripe keeps its own latest time, which the model does not track).
    stripes: u8,
    limits: [u8; 3],
    periods: [u8; 3],
    events: Vec<Event>,
}

/// The reference: one counter per key, in windows aligned to the epoch, on a clock that holds
/// at the latest time for small steps back and takes a step back by more than a window as a
/// correction.
struct Model {
    latest: u64,
    slots: HashMap<u8, (u64, u32)>,
    /// The limiter reclaims ended windows as it goes, at most once a second; after a clock
    /// correction that is visible (a window reclaimed while the clock ran ahead starts afresh),
    /// so the model reclaims at the same moments.
    sweep_due: u64,
}

impl Model {
    fn sweep(&mut self, now: u64) {
        self.slots.retain(|_, (end, _)| *end > now);
        let due = self
            .slots
            .values()
            .map(|(end, _)| *end)
            .min()
            .unwrap_or(u64::MAX);
        self.sweep_due = due.max(now + 1);
    }
}

fuzz_target!(|input: Input| {
    let stripes = if input.stripes == 0 {
        1
    } else {
        usize::from(input.stripes)
    };
    let backwards = stripes == 1;
    let limiter = RateLimiter::with_stripes(stripes);
    let quotas: Vec<Quota> = (0..3)
        .map(|i| {
            Quota::new(
                u32::from(input.limits[i] % 8) + 1,
                u32::from(input.periods[i] % 90) + 1,
            )
            .unwrap()
        })
        .collect();
    let mut model = Model {
        latest: 0,
        slots: HashMap::new(),
        sweep_due: u64::MAX,
    };
    let mut now: u64 = 1_700_000_000;
    for event in input.events.iter().take(2000) {
        let dt = match event {
            Event::Check { dt, .. } | Event::Sweep { dt } => *dt,
        };
        let dt = if backwards {
            i64::from(dt)
        } else {
            i64::from(dt).abs()
        };
        now = now.saturating_add_signed(dt);
        match event {
            Event::Sweep { .. } => {
                let _ = limiter.sweep(UnixTime::from_secs(now));
                model.latest = model.latest.max(now);
                model.sweep(now);
            }
            Event::Check { key, .. } => {
                let key = *key % 16;
                let quota = quotas[usize::from(key) % 3];
                // Spread the ids over all stripes.
                let id = KeyId::from_u64(u64::from(key).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let got = limiter.check(id, quota, UnixTime::from_secs(now));

                let period = u64::from(quota.period_secs());
                if now >= model.latest || model.latest - now > period {
                    model.latest = now;
                }
                let end = quota
                    .window_end(UnixTime::from_secs(model.latest))
                    .as_secs();
                if model.latest >= model.sweep_due {
                    model.sweep(model.latest);
                }
                let slot = model.slots.entry(key).or_insert((end, 0));
                if slot.0 < end || slot.0 - end > period {
                    *slot = (end, 0);
                }
                model.sweep_due = model.sweep_due.min(slot.0);
                let allowed = slot.1 < quota.limit();
                if allowed {
                    slot.1 += 1;
                }
                let r = got.rate_limit();
                assert_eq!(got.is_allowed(), allowed, "{event:?} at {now}");
                assert!(matches!(
                    got,
                    LimitDecision::Allowed(_) | LimitDecision::Limited(_)
                ));
                assert_eq!(r.remaining, quota.limit() - slot.1);
                assert_eq!(r.reset_at.as_secs(), slot.0);
                assert_eq!(r.limit, quota.limit());
            }
        }
    }
});
