//! `GET /metrics`, `/healthz` and `/readyz` over real sockets: exact counts after known
//! requests, readiness that follows the Redis link, and `--metrics-listen` moving the routes.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::process::{Running, BIN, SYNC_SECRET};
use common::{Server, ADMIN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sitequest_auth::{NewKey, Preset, Quota};
use sitequest_auth_redis::testing::RedisServer;
use sitequest_auth_redis::{FailurePolicy, KeySync, KeySyncConfig, SyncSecret};
use sitequest_demo::{Config, Demo, REDIS_SYNC_PREFIX};

const NOT_FOUND: &str = r#"{"error":"No such route","code":"NOT_FOUND","status":404}"#;
/// Every decision series, all present from the start.
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
const BACKENDS: [&str; 5] = [
    "local",
    "redis",
    "local_refusal",
    "fail_open",
    "fail_closed",
];

/// The value of the one sample named exactly `series` (name and labels as printed).
fn sample(text: &str, series: &str) -> f64 {
    let values: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .collect();
    assert_eq!(values.len(), 1, "{series} in\n{text}");
    values[0].parse().unwrap()
}

fn decision(text: &str, outcome: &str, reason: &str) -> f64 {
    sample(
        text,
        &format!("sitequest_decisions_total{{outcome=\"{outcome}\",reason=\"{reason}\"}}"),
    )
}

fn checks(text: &str, backend: &str) -> f64 {
    sample(
        text,
        &format!("sitequest_limiter_checks_total{{backend=\"{backend}\"}}"),
    )
}

/// Every decision series: `expected` ones at their value, the others at zero.
fn assert_decisions(text: &str, expected: &[(&str, &str, f64)]) {
    for (outcome, reason) in DECISIONS {
        let want = expected
            .iter()
            .find(|(o, r, _)| (*o, *r) == (outcome, reason))
            .map_or(0.0, |e| e.2);
        assert_eq!(decision(text, outcome, reason), want, "{outcome}/{reason}");
    }
}

/// Every limiter backend: `expected` ones at their value, the others at zero.
fn assert_checks(text: &str, expected: &[(&str, f64)]) {
    for backend in BACKENDS {
        let want = expected
            .iter()
            .find(|(b, _)| *b == backend)
            .map_or(0.0, |e| e.1);
        assert_eq!(checks(text, backend), want, "{backend}");
    }
}

async fn get(client: &reqwest::Client, url: String) -> (StatusCode, String, String) {
    let res = client.get(url).send().await.unwrap();
    let status = res.status();
    let kind = common::header(&res, "content-type")
        .unwrap_or_default()
        .to_owned();
    (status, kind, res.text().await.unwrap())
}

async fn scrape(server: &Server) -> String {
    let (status, kind, text) = get(&server.client, format!("{}/metrics", server.base)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(kind, "text/plain; version=0.0.4; charset=utf-8");
    text
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[tokio::test]
async fn decisions_checks_latency_and_connections_are_counted_exactly() {
    let server = Server::start(Quota::per_minute(60)).await;
    let (_, key) = server
        .create(r#"{"name":"reader","preset":"read_only"}"#)
        .await;
    let fresh = scrape(&server).await;
    assert_decisions(&fresh, &[]);
    assert_checks(&fresh, &[]);
    assert_eq!(
        sample(&fresh, "sitequest_request_duration_seconds_count"),
        1.0
    );

    let granted = server
        .call(Method::GET, "/v1/servers", Some(&key), None)
        .await;
    assert_eq!(granted.status(), StatusCode::OK);
    let missing = server.call(Method::GET, "/v1/servers", None, None).await;
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    let scope = server
        .call(Method::POST, "/v1/servers", Some(&key), None)
        .await;
    assert_eq!(scope.status(), StatusCode::FORBIDDEN);
    let nowhere = server.call(Method::GET, "/v2/nothing", None, None).await;
    assert_eq!(nowhere.status(), StatusCode::NOT_FOUND);

    let text = scrape(&server).await;
    assert_decisions(
        &text,
        &[
            ("granted", "none", 1.0),
            ("denied", "missing", 1.0),
            ("denied", "insufficient_scope", 1.0),
        ],
    );
    // The grant and the 403 were counted in the key's window; the 401 never reached it.
    assert_checks(&text, &[("local", 2.0)]);
    // The admin request, three API requests and the 404; the scrapes are not timed.
    assert_eq!(
        sample(&text, "sitequest_request_duration_seconds_count"),
        5.0
    );
    assert_eq!(
        sample(
            &text,
            "sitequest_request_duration_seconds_bucket{le=\"+Inf\"}"
        ),
        5.0
    );
    assert!(sample(&text, "sitequest_request_duration_seconds_sum") > 0.0);
    // No Redis: nothing about a link or a sync.
    assert!(!text.contains("sitequest_redis_link_up"), "{text}");
    assert!(!text.contains("sitequest_key_sync_in_sync"), "{text}");
    // No secret anywhere.
    assert!(!text.contains(&key) && !text.contains(ADMIN), "{text}");

    // Open connections: three more while three silent clients are connected, and back after.
    let before = sample(&text, "sitequest_open_connections");
    assert!(before >= 1.0 && before.fract() == 0.0, "{before}");
    let addr: SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    let silent: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while sample(&scrape(&server).await, "sitequest_open_connections") != before + 3.0 {
        assert!(
            Instant::now() < deadline,
            "the silent connections were not counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(silent);
    let deadline = Instant::now() + Duration::from_secs(5);
    while sample(&scrape(&server).await, "sitequest_open_connections") != before {
        assert!(
            Instant::now() < deadline,
            "closed connections still counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn health_routes_need_no_key_and_cost_none() {
    let server = Server::start(Quota::per_minute(5)).await;
    let (_, key) = server.create(r#"{"name":"k","preset":"full"}"#).await;
    let first = server
        .call(Method::GET, "/v1/servers", Some(&key), None)
        .await;
    assert_eq!(common::header(&first, "x-ratelimit-remaining"), Some("4"));

    for (path, body) in [
        ("/healthz", r#"{"status":"ok"}"#),
        ("/readyz", r#"{"status":"ready"}"#),
    ] {
        // Without any credential, and with the key: the same answer, and nothing counted.
        for auth in [None, Some(key.as_str())] {
            let res = server.call(Method::GET, path, auth, None).await;
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            assert_eq!(
                common::header(&res, "content-type"),
                Some("application/json")
            );
            assert!(common::header(&res, "x-ratelimit-remaining").is_none());
            assert_eq!(res.text().await.unwrap(), body, "{path}");
        }
    }
    let res = server.call(Method::GET, "/metrics", Some(&key), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();

    let second = server
        .call(Method::GET, "/v1/servers", Some(&key), None)
        .await;
    assert_eq!(common::header(&second, "x-ratelimit-remaining"), Some("3"));
    // Only the two API requests were decided, and only they were checked.
    assert_decisions(&text, &[("granted", "none", 1.0)]);
    assert_checks(&text, &[("local", 1.0)]);
    server.stop().await;
}

/// A server bound in process with `configure` applied, and its metrics address.
struct Bound {
    main: String,
    metrics: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn bind_with_metrics_listener() -> Bound {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().join("demo.db"),
        Quota::per_minute(60),
    );
    config.admin_token = Some(ADMIN.to_owned());
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let demo = Demo::bind(config).await.unwrap();
    let main = format!("http://{}", demo.local_addr().unwrap());
    let metrics = format!("http://{}", demo.metrics_addr().unwrap().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(demo.serve(async {
        let _ = stopped.await;
    }));
    Bound {
        main,
        metrics,
        stop,
        task,
        _dir: dir,
    }
}

#[tokio::test]
async fn metrics_listen_moves_metrics_and_health_to_their_own_listener() {
    let bound = bind_with_metrics_listener().await;
    assert_ne!(bound.main, bound.metrics);
    let client = reqwest::Client::new();
    for path in ["/metrics", "/healthz", "/readyz"] {
        let (status, kind, body) = get(&client, format!("{}{path}", bound.main)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path} on the main listener");
        assert_eq!(kind, "application/json");
        assert_eq!(body, NOT_FOUND);
        let (status, _, _) = get(&client, format!("{}{path}", bound.metrics)).await;
        assert_eq!(status, StatusCode::OK, "{path} on the metrics listener");
    }
    // The API is not on the metrics listener.
    let (status, _, body) = get(&client, format!("{}/v1/servers", bound.metrics)).await;
    assert_eq!((status, body.as_str()), (StatusCode::NOT_FOUND, NOT_FOUND));
    let (status, _, body) = get(&client, format!("{}/healthz", bound.metrics)).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, r#"{"status":"ok"}"#)
    );

    // What the main listener decides shows on the metrics listener.
    let (status, _, _) = get(&client, format!("{}/v1/servers", bound.main)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, _, text) = get(&client, format!("{}/metrics", bound.metrics)).await;
    assert_decisions(&text, &[("denied", "missing", 1.0)]);
    // The three 404s and the 401 of the main listener; nothing from the metrics listener.
    assert_eq!(
        sample(&text, "sitequest_request_duration_seconds_count"),
        4.0
    );

    // One shutdown stops both listeners.
    let _ = bound.stop.send(());
    tokio::time::timeout(Duration::from_secs(5), bound.task)
        .await
        .expect("the server did not stop")
        .unwrap()
        .unwrap();
    assert!(client
        .get(format!("{}/healthz", bound.metrics))
        .send()
        .await
        .is_err());
}

/// One raw HTTP/1.1 request on its own connection: (status, body).
fn raw_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

#[test]
fn the_binary_serves_metrics_on_metrics_listen() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .arg("--data")
        .arg(dir.path().join("demo.db"))
        .env("SITEQUEST_ADMIN_TOKEN", ADMIN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // From here on, Drop kills and reaps the child whatever happens.
    let mut running = Running {
        child,
        addr: String::new(),
        token_line: None,
    };
    let mut metrics = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(addr) = line.strip_prefix("metrics and health on http://") {
            metrics = Some(addr.to_owned());
        }
        if let Some(addr) = line.strip_prefix("listening on http://") {
            running.addr = addr.to_owned();
            break;
        }
    }
    let metrics = metrics.expect("the metrics address was not printed");
    assert_eq!(
        raw_get(&running.addr, "/metrics"),
        (404, NOT_FOUND.to_owned())
    );
    assert_eq!(raw_get(&running.addr, "/readyz").0, 404);
    let (status, text) = raw_get(&metrics, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(
        sample(&text, "sitequest_request_duration_seconds_count"),
        2.0
    );
    assert_eq!(
        raw_get(&metrics, "/readyz"),
        (200, r#"{"status":"ready"}"#.to_owned())
    );
    running.terminate();
}

/// Sends one command to Redis over RESP and returns the first line of the reply.
fn redis_command(port: u16, args: &[&str]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut command = format!("*{}\r\n", args.len());
    for a in args {
        command.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(command.as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    line
}

fn sync_secret() -> SyncSecret {
    SyncSecret::new(SYNC_SECRET.as_bytes()).unwrap()
}

async fn with_redis(redis: &RedisServer, policy: FailurePolicy) -> Server {
    let url = redis.url();
    Server::start_configured(
        tempfile::tempdir().unwrap(),
        Quota::per_minute(60),
        move |c: &mut Config| {
            c.redis = Some(url);
            c.sync_secret = Some(sync_secret());
            c.redis_policy = policy;
            c.max_sync_age = Duration::from_secs(2);
        },
    )
    .await
}

/// Polls the metrics until `series` has the value `want`, for at most `limit`.
async fn until_sample(server: &Server, series: &str, want: f64, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let text = scrape(server).await;
        if sample(&text, series) == want {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{series} did not reach {want} within {limit:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_checks_and_key_changes_are_counted_exactly() {
    let redis = RedisServer::start();
    let server = with_redis(&redis, FailurePolicy::FailClosed).await;
    let (_, key) = server.create(r#"{"name":"k","preset":"full"}"#).await;
    for _ in 0..7 {
        let res = server
            .call(Method::GET, "/v1/servers", Some(&key), None)
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let text = scrape(&server).await;
    assert_decisions(&text, &[("granted", "none", 7.0)]);
    assert_checks(&text, &[("redis", 7.0)]);
    assert_eq!(sample(&text, "sitequest_redis_link_up"), 1.0);
    assert_eq!(sample(&text, "sitequest_key_sync_in_sync"), 1.0);
    assert_eq!(sample(&text, "sitequest_key_sync_max_age_seconds"), 2.0);
    let age = sample(&text, "sitequest_key_sync_age_seconds");
    assert!((0.0..=2.0).contains(&age), "{age}");
    let resync = sample(&text, "sitequest_resync_duration_seconds");
    assert!((0.0..5.0).contains(&resync), "{resync}");
    // Its own change came back on the channel and changed nothing.
    assert_eq!(sample(&text, "sitequest_key_changes_applied_total"), 0.0);

    // Another instance (this test) shares a new key: applied once.
    let other = KeySync::connect(&redis.url(), {
        let mut c = KeySyncConfig::new(sync_secret());
        c.prefix = REDIS_SYNC_PREFIX.to_owned();
        c
    })
    .await
    .unwrap();
    let issued = NewKey::new("elsewhere", Preset::Full)
        .generate(sitequest_auth::UnixTime::from_secs(common::T0))
        .unwrap();
    other.publish(&issued.record).await.unwrap();
    until_sample(
        &server,
        "sitequest_key_changes_applied_total",
        1.0,
        Duration::from_secs(5),
    )
    .await;
    // An unsigned message on the channel: rejected for its signature.
    let channel = other.channel_name().to_owned();
    assert_eq!(
        redis_command(redis.port, &["PUBLISH", &channel, r#"{"kind":"forged"}"#]),
        ":1\r\n"
    );
    until_sample(
        &server,
        "sitequest_key_changes_rejected_total{reason=\"signature\"}",
        1.0,
        Duration::from_secs(5),
    )
    .await;
    // A signed one that would rename the key: rejected as a conflict.
    let mut renamed = issued.record.clone();
    renamed.name = "renamed".to_owned();
    let entry = other.signed_entry(&renamed).unwrap();
    assert_eq!(
        redis_command(redis.port, &["PUBLISH", &channel, &entry]),
        ":1\r\n"
    );
    let text = until_sample(
        &server,
        "sitequest_key_changes_rejected_total{reason=\"conflict\"}",
        1.0,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(sample(&text, "sitequest_key_changes_applied_total"), 1.0);
    assert_eq!(
        sample(
            &text,
            "sitequest_key_changes_rejected_total{reason=\"signature\"}"
        ),
        1.0
    );
    assert_checks(&text, &[("redis", 7.0)]);
    assert!(!text.contains(SYNC_SECRET) && !text.contains(&redis.url()));
    server.stop().await;
}

async fn readyz(server: &Server) -> (StatusCode, Value) {
    let (status, kind, body) = get(&server.client, format!("{}/readyz", server.base)).await;
    assert_eq!(kind, "application/json");
    (status, json(&body))
}

/// Under `--redis-failure open` an instance cut off from Redis goes on serving, and says so:
/// `/readyz` turns 503 past the staleness bound, the metrics show the sync lost and each
/// fail-open check, and both recover when Redis comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_redis_link_within_the_bound() {
    let mut redis = RedisServer::start();
    let server = with_redis(&redis, FailurePolicy::FailOpen).await;
    let (_, key) = server.create(r#"{"name":"k","preset":"full"}"#).await;
    assert_eq!(
        readyz(&server).await,
        (StatusCode::OK, json!({"status": "ready"}))
    );

    redis.stop();
    let stopped = Instant::now();
    let (status, body) = loop {
        let answer = readyz(&server).await;
        if answer.0 != StatusCode::OK {
            break answer;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(6),
            "still ready long past the bound"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Not at once: the sync was confirmed at most a ping interval (1 s) before Redis stopped,
    // and the bound is 2 s.
    assert!(
        stopped.elapsed() >= Duration::from_millis(500),
        "{:?}",
        stopped.elapsed()
    );
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "not_ready");
    let reason = body["reason"].as_str().unwrap();
    let secs = reason
        .strip_prefix("key changes not confirmed in sync for ")
        .and_then(|r| r.strip_suffix("s (bound 2s)"))
        .unwrap_or_else(|| panic!("{reason}"));
    assert!(secs.parse::<u64>().unwrap() >= 2, "{reason}");

    // Still serving, with the per-process limit.
    let res = server
        .call(Method::GET, "/v1/servers", Some(&key), None)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = scrape(&server).await;
    assert_eq!(sample(&text, "sitequest_key_sync_in_sync"), 0.0);
    assert!(sample(&text, "sitequest_key_sync_age_seconds") > 2.0);
    // The link is down once three pings in a row went unanswered.
    let text = until_sample(
        &server,
        "sitequest_redis_link_up",
        0.0,
        Duration::from_secs(5),
    )
    .await;
    assert!(sample(&text, "sitequest_key_sync_age_seconds") > 3.0);
    assert_eq!(sample(&text, "sitequest_key_sync_in_sync"), 0.0);
    assert_checks(&text, &[("fail_open", 1.0)]);
    assert_decisions(&text, &[("granted", "none", 1.0)]);
    assert_eq!(
        server
            .call(Method::GET, "/healthz", None, None)
            .await
            .status(),
        StatusCode::OK
    );

    redis.restart();
    let restarted = Instant::now();
    while readyz(&server).await != (StatusCode::OK, json!({"status": "ready"})) {
        assert!(
            restarted.elapsed() < Duration::from_secs(15),
            "not ready again after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = scrape(&server).await;
    assert_eq!(sample(&text, "sitequest_key_sync_in_sync"), 1.0);
    assert_eq!(sample(&text, "sitequest_redis_link_up"), 1.0);
    // The limiter's own connection heals on its next ping: until then a check still fails
    // open. Every check is accounted for either way.
    let mut requests = 0.0;
    let text = loop {
        let res = server
            .call(Method::GET, "/v1/servers", Some(&key), None)
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        requests += 1.0;
        let text = scrape(&server).await;
        if checks(&text, "redis") > 0.0 {
            break text;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(15),
            "the limiter did not reach Redis again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_checks(&text, &[("fail_open", requests), ("redis", 1.0)]);
    assert_decisions(&text, &[("granted", "none", requests + 1.0)]);
    server.stop().await;
}
