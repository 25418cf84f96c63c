//! The server's metrics, served at `GET /metrics` in the Prometheus text format (version 0.0.4).
//!
//! What changes on every request (decisions, in-process limiter checks, open connections,
//! request latency) is counted as it happens; what the Redis adapter already counts
//! ([`LimiterStats`](sitequest_auth_redis::LimiterStats),
//! [`SyncStats`](sitequest_auth_redis::SyncStats), the sync's age) is read when scraped. Labels
//! are fixed words: never a key, a key id, a token or a URL.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use sitequest_auth_redis::{KeySync, RedisLimiter};
use sitequest_auth_tower::{Observer, Outcome};

/// The `Content-Type` of `GET /metrics`.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds of the request latency buckets, in seconds (the request timeout is 10 s).
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The key sync confirms about every second while both of its Redis connections answer a ping
/// (and it has resynchronized since subscribing): a confirmation older than this means the
/// last pings went unanswered. The Redis adapter has no direct view of its connections, so
/// this is the link state `sitequest_redis_link_up` shows.
pub const LINK_DOWN_AFTER: Duration = Duration::from_secs(3);

/// Outcome and reason labels of the decisions counted from the start, so every series exists
/// (at zero) before its first request. Others the layer reports later are added when first seen.
const DECISIONS: [(&str, &str); 11] = [
    ("granted", "none"),
    ("denied", "missing"),
    ("denied", "malformed"),
    ("denied", "unknown"),
    ("denied", "revoked"),
    ("denied", "expired"),
    ("denied", "insufficient_scope"),
    ("denied", "rate_limited"),
    ("denied", "ip_not_allowed"),
    ("denied", "address_rate_limited"),
    ("unavailable", "limiter_unavailable"),
];

type DecisionLabels = [(&'static str, &'static str); 2];

/// What a server shares through Redis, for the metrics read at scrape time.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The shared limiter.
    pub limiter: Arc<RedisLimiter>,
    /// The key-change channel.
    pub sync: Arc<KeySync>,
    /// The staleness bound (`--max-sync-age`).
    pub max_sync_age: Duration,
}

/// Every metric of one server, in a registry of its own (no global state).
pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    local_checks: Counter,
    open_connections: Gauge,
    request_duration: Histogram,
    count_local: bool,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("open_connections", &self.open_connections.get())
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// The metrics of a server that counts requests in process (`shared` is `None`) or shares
    /// its limits and key changes through Redis.
    #[must_use]
    pub fn new(shared: Option<Shared>) -> Self {
        let mut registry = Registry::default();
        let decisions = Family::<DecisionLabels, Counter>::default();
        for (outcome, reason) in DECISIONS {
            let _ = decisions.get_or_create(&[("outcome", outcome), ("reason", reason)]);
        }
        registry.register(
            "sitequest_decisions",
            "API requests decided by the key check, by outcome (granted, denied, unavailable) \
             and reason",
            decisions.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "sitequest_open_connections",
            "Connections open now, on every listener",
            open_connections.clone(),
        );
        let request_duration = Histogram::new(LATENCY_BUCKETS);
        registry.register(
            "sitequest_request_duration_seconds",
            "Time from receiving a request (API, admin or unknown route; not the metrics and \
             health routes) to its response",
            request_duration.clone(),
        );
        let local_checks = Counter::default();
        let count_local = shared.is_none();
        registry.register_collector(Box::new(Scraped {
            local_checks: local_checks.clone(),
            shared,
        }));
        Self {
            registry,
            decisions,
            local_checks,
            open_connections,
            request_duration,
            count_local,
        }
    }

    /// The observer to give every [`AuthLayer`](sitequest_auth_tower::AuthLayer): counts each
    /// decision, and each check of the in-process limiter when there is no shared one.
    #[must_use]
    pub fn observer(&self) -> Observer {
        let decisions = self.decisions.clone();
        let local_checks = self.local_checks.clone();
        let count_local = self.count_local;
        Arc::new(move |outcome: &Outcome<'_>| {
            decisions
                .get_or_create(&[("outcome", outcome.label()), ("reason", outcome.reason())])
                .inc();
            if count_local && outcome.limiter_checked() {
                local_checks.inc();
            }
        })
    }

    /// The gauge of open connections, for the accept loops.
    #[must_use]
    pub fn open_connections(&self) -> Gauge {
        self.open_connections.clone()
    }

    /// Every metric in the Prometheus text format (version 0.0.4).
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail, and neither can the collectors here.
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::error!(error = %e, "could not encode the metrics");
        }
        out
    }
}

/// Times every request through the router it wraps into `sitequest_request_duration_seconds`.
pub async fn time_requests(
    State(metrics): State<Arc<Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let res = next.run(req).await;
    metrics
        .request_duration
        .observe(started.elapsed().as_secs_f64());
    res
}

/// The metrics read when scraped: the limiter checks of every backend, and with Redis the state
/// of the link and the key sync.
#[derive(Debug)]
struct Scraped {
    local_checks: Counter,
    shared: Option<Shared>,
}

impl Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let stats = self
            .shared
            .as_ref()
            .map(|s| s.limiter.stats())
            .unwrap_or_default();
        let checks = [
            ("local", self.local_checks.get()),
            ("redis", stats.redis_checks),
            ("local_refusal", stats.local_refusals),
            ("fail_open", stats.fail_open),
            ("fail_closed", stats.fail_closed),
        ];
        let mut family = encoder.encode_descriptor(
            "sitequest_limiter_checks",
            "Rate-limit checks by backend: local (in process, without Redis), redis, \
             local_refusal (a key known to be exhausted, refused without a round trip), fail_open \
             (Redis unavailable, counted in process), fail_closed (Redis unavailable or key \
             changes out of sync, answered 503).",
            None,
            MetricType::Counter,
        )?;
        for (backend, n) in checks {
            let labels = [("backend", backend)];
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }

        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let sync = shared.sync.stats();
        let age = shared.sync.sync_age();
        let gauges = [
            (
                "sitequest_redis_link_up",
                "1 while the key sync's Redis connections answer their pings (the sync was \
                 confirmed within the last 3 s), else 0.",
                flag(age.is_some_and(|a| a <= LINK_DOWN_AFTER)),
            ),
            (
                "sitequest_key_sync_in_sync",
                "1 while key changes are confirmed in sync within the staleness bound \
                 (--max-sync-age), else 0; at 0 revocations made on other instances may be missed.",
                flag(shared.sync.is_in_sync(shared.max_sync_age)),
            ),
            (
                "sitequest_key_sync_age_seconds",
                "Seconds since key changes were last confirmed in sync with Redis (+Inf if never).",
                age.map_or(f64::INFINITY, |a| a.as_secs_f64()),
            ),
            (
                "sitequest_key_sync_max_age_seconds",
                "The staleness bound (--max-sync-age), in seconds.",
                shared.max_sync_age.as_secs_f64(),
            ),
            (
                "sitequest_key_changes_unshared",
                "Key changes saved on this instance and not yet confirmed written to Redis (retried \
                 every half second); above 0 other instances may still grant a key revoked here.",
                shared.sync.pending() as f64,
            ),
            (
                "sitequest_resync_duration_seconds",
                "Duration of the last complete resynchronization of the shared key hash.",
                Duration::from_millis(sync.last_resync_ms).as_secs_f64(),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }

        let applied = ConstCounter::new(sync.applied);
        applied.encode(encoder.encode_descriptor(
            "sitequest_key_changes_applied",
            "Key changes from other instances (messages or resynchronized entries) that changed \
             this instance's keys.",
            None,
            applied.metric_type(),
        )?)?;
        let mut rejected = encoder.encode_descriptor(
            "sitequest_key_changes_rejected",
            "Key changes from Redis ignored, by reason: signature (missing or not made with the \
             sync secret), conflict (validly signed but would change a key's fixed part, restore \
             a removed key, or was filed under another id).",
            None,
            MetricType::Counter,
        )?;
        for (reason, n) in [
            ("signature", sync.rejected_signature),
            ("conflict", sync.rejected_conflict),
        ] {
            let labels = [("reason", reason)];
            ConstCounter::new(n).encode(rejected.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

fn flag(on: bool) -> f64 {
    if on {
        1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_decision_series_exists_from_the_start_and_counts_once() {
        let metrics = Metrics::new(None);
        let text = metrics.render();
        for (outcome, reason) in DECISIONS {
            let line = format!(
                "sitequest_decisions_total{{outcome=\"{outcome}\",reason=\"{reason}\"}} 0\n"
            );
            assert!(text.contains(&line), "{line} missing from\n{text}");
        }
        assert!(text.contains("sitequest_limiter_checks_total{backend=\"local\"} 0\n"));
        assert!(text.contains("# TYPE sitequest_request_duration_seconds histogram\n"));
        // Without Redis there is no link or sync to report.
        assert!(!text.contains("sitequest_redis_link_up"), "{text}");
        assert!(!text.contains("sitequest_key_sync"), "{text}");
    }
}
