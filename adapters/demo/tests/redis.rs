//! Two demo server processes sharing one real `redis-server`: one rate limit across both, and
//! key changes on one honoured by the other within a second.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::process::{field, start, wait_until, Running, BIN};
use sitequest_auth_redis::testing::{FreezingProxy, RedisServer};

const TOKEN: &str = "shared-admin-token-0123456789";

/// Waits until the current minute has at least 15 seconds left, so a burst stays in one window.
fn away_from_a_window_end() {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if secs % 60 > 45 {
        std::thread::sleep(Duration::from_secs(61 - secs % 60));
    }
}

fn burst(servers: [&Arc<Running>; 2], key: &str, total: usize) -> (u32, u32) {
    let ok = Arc::new(AtomicU32::new(0));
    let limited = Arc::new(AtomicU32::new(0));
    let threads: Vec<_> = (0..10)
        .map(|t| {
            let servers = [servers[0].clone(), servers[1].clone()];
            let (key, ok, limited) = (key.to_owned(), ok.clone(), limited.clone());
            std::thread::spawn(move || {
                for i in 0..total / 10 {
                    let server = &servers[(t + i) % 2];
                    match server.request("GET", "/v1/servers", &key, "").0 {
                        200 => ok.fetch_add(1, Ordering::Relaxed),
                        429 => limited.fetch_add(1, Ordering::Relaxed),
                        other => panic!("unexpected status {other}"),
                    };
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    (ok.load(Ordering::Relaxed), limited.load(Ordering::Relaxed))
}

#[test]
fn two_servers_share_the_limit_and_revocations() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = redis.url();
    let flags = ["--redis", url.as_str()];
    let a = Arc::new(start(&dir.path().join("a.db"), &flags, Some(TOKEN)));
    let b = Arc::new(start(&dir.path().join("b.db"), &flags, Some(TOKEN)));

    let (status, created) = a.request(
        "POST",
        "/admin/v1/keys",
        TOKEN,
        r#"{"name":"shared","preset":"read_only"}"#,
    );
    assert_eq!(status, 201, "{created}");
    let key = field(&created, "key").to_owned();
    let id = field(&created, "id").to_owned();
    let learned = wait_until("the new key on b", Duration::from_secs(1), || {
        b.request("GET", "/admin/v1/keys", TOKEN, "")
            .1
            .contains(&id)
    });
    println!("new key known to the other server after {learned:?}");

    // 100 requests split across both servers: exactly 60 succeed.
    away_from_a_window_end();
    assert_eq!(burst([&a, &b], &key, 100), (60, 40));

    // Revoked through a, refused by b within a second.
    let start_revoke = Instant::now();
    assert_eq!(
        a.request("DELETE", &format!("/admin/v1/keys/{id}"), TOKEN, "")
            .0,
        204
    );
    wait_until("the revocation on b", Duration::from_secs(1), || {
        b.request("GET", "/v1/domains", &key, "").0 == 401
    });
    let propagation = start_revoke.elapsed();
    println!("revocation honoured by the other server after {propagation:?}");
    assert!(propagation < Duration::from_secs(1));
    assert_eq!(a.request("GET", "/v1/domains", &key, "").0, 401);

    // b saved the shared change in its own data file: it survives b's restart without Redis.
    let b = Arc::try_unwrap(b).ok().unwrap();
    b.terminate();
    let b = start(&dir.path().join("b.db"), &[], Some(TOKEN));
    let (_, list) = b.request("GET", "/admin/v1/keys", TOKEN, "");
    assert!(
        list.contains(&id) && list.contains("\"revoked\":true"),
        "{list}"
    );
    b.terminate();
    Arc::try_unwrap(a).ok().unwrap().terminate();
}

/// A revocation made with the `keys` subcommand in one instance's data file is noticed by that
/// instance and shared through Redis: the other instance refuses the key within a second.
#[test]
fn a_cli_revocation_in_one_data_file_reaches_the_other_instance() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = redis.url();
    let flags = ["--redis", url.as_str()];
    let a_data = dir.path().join("a.db");
    let a = start(&a_data, &flags, Some(TOKEN));
    let b = start(&dir.path().join("b.db"), &flags, Some(TOKEN));
    let (_, created) = a.request(
        "POST",
        "/admin/v1/keys",
        TOKEN,
        r#"{"name":"shared","preset":"read_only"}"#,
    );
    let (id, key) = (
        field(&created, "id").to_owned(),
        field(&created, "key").to_owned(),
    );
    wait_until("the new key on b", Duration::from_secs(1), || {
        b.request("GET", "/v1/domains", &key, "").0 == 200
    });

    let out = std::process::Command::new(common::process::BIN)
        .arg("--data")
        .arg(&a_data)
        .args(["keys", "revoke", &id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let took = wait_until("the CLI revocation on b", Duration::from_secs(1), || {
        b.request("GET", "/v1/domains", &key, "").0 == 401
    });
    println!("CLI revocation in a's data file honoured by b after {took:?}");
    assert_eq!(a.request("GET", "/v1/domains", &key, "").0, 401);
    b.terminate();
    a.terminate();
}

/// A server using `redis` with `flags` added, and a full-access key made on it.
fn server_with_key(redis: &RedisServer, dir: &Path, flags: &[&str]) -> (Running, String) {
    let url = redis.url();
    let mut args = vec!["--redis", url.as_str()];
    args.extend_from_slice(flags);
    let server = start(&dir.join("a.db"), &args, Some(TOKEN));
    let (_, created) = server.request(
        "POST",
        "/admin/v1/keys",
        TOKEN,
        r#"{"name":"k","preset":"full"}"#,
    );
    let key = field(&created, "key").to_owned();
    (server, key)
}

#[test]
fn redis_outage_fails_closed_with_503_and_recovers() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (server, key) = server_with_key(&redis, dir.path(), &[]);
    assert_eq!(server.request("GET", "/v1/servers", &key, "").0, 200);

    redis.stop();
    let t = Instant::now();
    let (status, body) = server.request("GET", "/v1/servers", &key, "");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(status, 503);
    assert_eq!(
        body,
        r#"{"error":"Rate limiter unavailable","code":"SERVICE_UNAVAILABLE","status":503}"#
    );
    // Unknown keys are still refused without Redis.
    assert_eq!(
        server.request("GET", "/v1/servers", "sq_live_00", "").0,
        401
    );

    redis.restart();
    wait_until(
        "recovery after Redis came back",
        Duration::from_secs(10),
        || server.request("GET", "/v1/servers", &key, "").0 == 200,
    );
    server.terminate();
}

#[test]
fn redis_outage_fails_open_when_asked() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (server, key) = server_with_key(&redis, dir.path(), &["--redis-failure", "open"]);
    redis.stop();
    let t = Instant::now();
    assert_eq!(server.request("GET", "/v1/servers", &key, "").0, 200);
    assert!(t.elapsed() < Duration::from_secs(2));
    server.terminate();
}

#[test]
fn redis_without_a_sync_secret_is_refused_at_start() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--redis", &redis.url(), "--data"])
        .arg(dir.path().join("a.db"))
        .env("SITEQUEST_ADMIN_TOKEN", TOKEN)
        .env_remove("SITEQUEST_SYNC_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "--redis needs a sync secret: --sync-secret-file PATH or SITEQUEST_SYNC_SECRET"
        ),
        "{err}"
    );
    // A short secret is refused too, with its length and never its value.
    let out = std::process::Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--redis", &redis.url(), "--data"])
        .arg(dir.path().join("a.db"))
        .env("SITEQUEST_ADMIN_TOKEN", TOKEN)
        .env("SITEQUEST_SYNC_SECRET", "tooshort")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("the sync secret must be at least 32 bytes long (found 8)")
            && !err.contains("tooshort"),
        "{err}"
    );
}

/// An instance whose Redis connections freeze (open, silent) while a key is revoked elsewhere
/// does not keep serving that key: within the staleness bound it answers 401 (healed and
/// resynced) or 503 (cannot vouch for revocations), never 200.
#[test]
fn a_revocation_elsewhere_is_honoured_within_the_bound_through_a_frozen_link() {
    let redis = RedisServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let proxy = rt.block_on(FreezingProxy::start(redis.port));
    let dir = tempfile::tempdir().unwrap();
    let (direct, via_proxy) = (redis.url(), proxy.url());
    let b = start(&dir.path().join("b.db"), &["--redis", &direct], Some(TOKEN));
    // The test polls a refused key hundreds of times from one address: its quota of requests
    // without a valid key is lifted, so that every answer is the revocation's.
    let a = start(
        &dir.path().join("a.db"),
        &[
            "--redis",
            &via_proxy,
            "--max-sync-age",
            "3",
            "--unauthenticated-limit",
            "100000/60",
        ],
        Some(TOKEN),
    );
    let (status, created) = b.request(
        "POST",
        "/admin/v1/keys",
        TOKEN,
        r#"{"name":"k","preset":"full"}"#,
    );
    assert_eq!(status, 201, "{created}");
    let (key, id) = (
        field(&created, "key").to_owned(),
        field(&created, "id").to_owned(),
    );
    wait_until("the key on a", Duration::from_secs(2), || {
        a.request("GET", "/v1/servers", &key, "").0 == 200
    });

    rt.block_on(async { proxy.freeze() });
    let revoked_at = Instant::now();
    assert_eq!(
        b.request("DELETE", &format!("/admin/v1/keys/{id}"), TOKEN, "")
            .0,
        204
    );
    // Within the bound (3 s, plus a ping interval to notice) it stops serving the key, and from
    // then on never serves it again: 503 while it cannot vouch, 401 once healed and resynced.
    let bound = Duration::from_secs(3) + Duration::from_millis(1500);
    std::thread::sleep(bound.saturating_sub(revoked_at.elapsed()));
    let mut statuses = Vec::new();
    while revoked_at.elapsed() < bound + Duration::from_secs(3) {
        let status = a.request("GET", "/v1/servers", &key, "").0;
        assert!(
            matches!(status, 401 | 503),
            "served {status} after the bound"
        );
        statuses.push(status);
        std::thread::sleep(Duration::from_millis(50));
    }
    let healed = wait_until("the revocation on a", Duration::from_secs(10), || {
        a.request("GET", "/v1/servers", &key, "").0 == 401
    });
    println!(
        "after the bound: {} x 503, {} x 401; 401 for good {:?} later",
        statuses.iter().filter(|&&s| s == 503).count(),
        statuses.iter().filter(|&&s| s == 401).count(),
        healed
    );
    // It heals: a new key made on b works on a.
    let (_, created) = b.request(
        "POST",
        "/admin/v1/keys",
        TOKEN,
        r#"{"name":"k2","preset":"full"}"#,
    );
    let key2 = field(&created, "key").to_owned();
    wait_until("a healed", Duration::from_secs(10), || {
        a.request("GET", "/v1/servers", &key2, "").0 == 200
    });
    a.terminate();
    b.terminate();
}

/// Two instances sharing `redis`, with their data files in `dir`.
fn two_instances(redis: &RedisServer, dir: &Path) -> (Running, Running) {
    let url = redis.url();
    let flags = ["--redis", url.as_str()];
    let a = start(&dir.join("a.db"), &flags, Some(TOKEN));
    let b = start(&dir.join("b.db"), &flags, Some(TOKEN));
    (a, b)
}

/// A key created on `a` with the admin body `body`, once `b` knows it: (plaintext, id).
fn shared_key(a: &Running, b: &Running, body: &str) -> (String, String) {
    let (status, created) = a.request("POST", "/admin/v1/keys", TOKEN, body);
    assert_eq!(status, 201, "{created}");
    let (key, id) = (
        field(&created, "key").to_owned(),
        field(&created, "id").to_owned(),
    );
    wait_until("the key on b", Duration::from_secs(2), || {
        b.request("GET", "/admin/v1/keys", TOKEN, "")
            .1
            .contains(&id)
    });
    (key, id)
}

/// A rotation on one instance: the old key (used on one) and the new key (used on the other)
/// draw from one window of 60 across both, so rotating never doubles the allowance.
#[test]
fn a_rotation_shares_one_window_across_instances() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_instances(&redis, dir.path());
    let (old, id) = shared_key(&a, &b, r#"{"name":"ci","preset":"full"}"#);
    away_from_a_window_end();
    for i in 0..40 {
        assert_eq!(a.request("GET", "/v1/servers", &old, "").0, 200, "old {i}");
    }
    let (status, rotated) = a.request(
        "POST",
        &format!("/admin/v1/keys/{id}/rotate"),
        TOKEN,
        r#"{"grace_seconds":3600}"#,
    );
    assert_eq!(status, 201, "{rotated}");
    let (new, new_id) = (
        field(&rotated, "key").to_owned(),
        field(&rotated, "id").to_owned(),
    );
    wait_until("the new key on b", Duration::from_secs(2), || {
        b.request("GET", "/admin/v1/keys", TOKEN, "")
            .1
            .contains(&new_id)
    });
    for i in 0..20 {
        assert_eq!(b.request("GET", "/v1/servers", &new, "").0, 200, "new {i}");
    }
    for (server, key) in [(&a, &old), (&b, &old), (&a, &new), (&b, &new)] {
        assert_eq!(server.request("GET", "/v1/servers", key, "").0, 429);
    }
    a.terminate();
    b.terminate();
}

/// An allowlist set on one instance is enforced by the other within a second, and a later one
/// that widens it replaces it there too.
#[test]
fn an_allowlist_set_on_one_instance_holds_on_the_other() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_instances(&redis, dir.path());
    let (key, id) = shared_key(&a, &b, r#"{"name":"office","preset":"full"}"#);
    assert_eq!(b.request("GET", "/v1/servers", &key, "").0, 200);
    let path = format!("/admin/v1/keys/{id}");
    let (status, body) = a.request("PATCH", &path, TOKEN, r#"{"allowed_ips":["192.0.2.0/24"]}"#);
    assert_eq!(status, 200, "{body}");
    wait_until("the allowlist on b", Duration::from_secs(1), || {
        b.request("GET", "/admin/v1/keys", TOKEN, "")
            .1
            .contains("192.0.2.0/24")
    });
    let (status, body) = b.request("GET", "/v1/servers", &key, "");
    assert_eq!(
        (status, body.as_str()),
        (
            403,
            r#"{"error":"API key not allowed from this address","code":"IP_NOT_ALLOWED","status":403}"#
        )
    );
    let (status, _) = a.request(
        "PATCH",
        &path,
        TOKEN,
        r#"{"allowed_ips":["192.0.2.0/24","127.0.0.1"]}"#,
    );
    assert_eq!(status, 200);
    wait_until("the wider allowlist on b", Duration::from_secs(1), || {
        b.request("GET", "/admin/v1/keys", TOKEN, "")
            .1
            .contains("127.0.0.1/32")
    });
    assert_eq!(b.request("GET", "/v1/servers", &key, "").0, 200);
    a.terminate();
    b.terminate();
}

/// The status, the headers (lower-cased names) and the body of a raw HTTP/1.1 response.
fn parts(raw: &str) -> (u16, Vec<(String, String)>, String) {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let mut lines = head.lines();
    let status = lines.next().unwrap_or("")[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A request on its own connection, answered as [`parts`].
fn send(
    server: &Running,
    method: &str,
    path: &str,
    auth: &str,
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    parts(&server.raw(req.as_bytes()))
}

const NOT_SHARED: &str = r#"{"error":"The change is saved on this instance but the other instances could not be told yet; it is retried until they are: send it again","code":"SERVICE_UNAVAILABLE","status":503}"#;

/// Issue 18's partition: instance a's link to Redis is cut by a proxy the test controls while b
/// keeps its own. A revocation on a (admin API or presentation) is never answered with a 2xx
/// while b still grants the key: it is a 503 `SERVICE_UNAVAILABLE` with `Retry-After` within
/// the 2 s deadline, `/readyz` and the metrics show the unshared change, and once the link heals
/// a's background retry shares it and b refuses the key; asked again, a answers success, and b
/// refuses the key within a second of that answer.
#[test]
fn a_revocation_is_acknowledged_only_when_every_instance_enforces_it() {
    let redis = RedisServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, b, proxy, dir) = partitioned_pair(&redis, &rt);
    let [(key1, id1), (key2, _), (key3, id3)] =
        ["by-admin", "by-presentation", "by-cli"].map(|name| key_on_both(&a, &b, name));
    let delete = format!("/admin/v1/keys/{id1}");
    let presented = format!(r#"{{"keys":["{key2}"]}}"#);
    // `keys revoke --server`: the CLI through the running server a.
    let cli = || {
        std::process::Command::new(BIN)
            .args(["--data"])
            .arg(dir.path().join("a.db"))
            .args([
                "keys",
                "revoke",
                &id3,
                "--server",
                &format!("http://{}", a.addr),
            ])
            .env("SITEQUEST_ADMIN_TOKEN", TOKEN)
            .output()
            .unwrap()
    };

    proxy.cut();
    let started = Instant::now();
    let (status, headers, body) = send(&a, "DELETE", &delete, TOKEN, "");
    let waited = started.elapsed();
    assert_eq!((status, body.as_str()), (503, NOT_SHARED));
    assert_eq!(header(&headers, "retry-after"), Some("2"));
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(4),
        "answered after {waited:?}"
    );
    let (status, headers, body) = send(&a, "POST", "/v1/keys/revoke", "", &presented);
    assert_eq!((status, body.as_str()), (503, NOT_SHARED));
    assert_eq!(header(&headers, "retry-after"), Some("2"));
    let out = cli();
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("not yet: The change is saved on this instance"),
        "{out:?}"
    );
    // Right to refuse success: b, which a cannot reach, still grants the keys.
    for key in [&key1, &key2, &key3] {
        assert_eq!(b.request("GET", "/v1/servers", key, "").0, 200);
    }
    // a says so.
    let (status, body) = a.request("GET", "/readyz", "", "");
    assert_eq!(status, 503, "{body}");
    let (_, metrics) = a.request("GET", "/metrics", "", "");
    let unshared: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sitequest_key_changes_unshared "))
        .expect("the unshared gauge")
        .parse()
        .unwrap();
    assert!(unshared >= 3.0, "{unshared}");
    // Asked again while cut off: never a 2xx.
    while started.elapsed() < Duration::from_secs(8) {
        assert_eq!(send(&a, "DELETE", &delete, TOKEN, "").0, 503);
        assert_eq!(send(&a, "POST", "/v1/keys/revoke", "", &presented).0, 503);
    }
    assert_eq!(b.request("GET", "/v1/servers", &key1, "").0, 200);

    proxy.heal();
    let healed = Instant::now();
    // Nobody asks again: a's own retries share the revocations.
    for key in [&key1, &key2, &key3] {
        wait_until("the revocation on b", Duration::from_secs(5), || {
            b.request("GET", "/v1/servers", key, "").0 == 401
        });
    }
    println!(
        "b refuses both keys {:?} after the link healed",
        healed.elapsed()
    );
    // Asked again, a now answers success, and b refuses the keys.
    let acknowledged = wait_until("a 204 from a", Duration::from_secs(10), || {
        let (status, _, body) = send(&a, "DELETE", &delete, TOKEN, "");
        assert!(matches!(status, 204 | 503), "{status} {body}");
        status == 204
    });
    println!("a acknowledged {acknowledged:?} after asked again");
    assert_eq!(b.request("GET", "/v1/servers", &key1, "").0, 401);
    let (status, _, _) = send(&a, "POST", "/v1/keys/revoke", "", &presented);
    assert_eq!(status, 202);
    assert_eq!(b.request("GET", "/v1/servers", &key2, "").0, 401);
    let out = cli();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("revoked {id3}: every instance enforces it\n")
    );
    wait_until("a ready again", Duration::from_secs(5), || {
        a.request("GET", "/readyz", "", "").0 == 200
    });
    a.terminate();
    b.terminate();
}

/// Two instances, a through a proxy the test controls: (a, b, proxy, data directory).
fn partitioned_pair(
    redis: &RedisServer,
    rt: &tokio::runtime::Runtime,
) -> (Running, Running, FreezingProxy, tempfile::TempDir) {
    let proxy = rt.block_on(FreezingProxy::start(redis.port));
    let dir = tempfile::tempdir().unwrap();
    let (direct, via_proxy) = (redis.url(), proxy.url());
    let quota = [
        "--unauthenticated-limit",
        "100000/60",
        "--revoke-limit",
        "1000/60",
    ];
    let mut b_flags = vec!["--redis", direct.as_str()];
    b_flags.extend(quota);
    let mut a_flags = vec!["--redis", via_proxy.as_str(), "--max-sync-age", "3"];
    a_flags.extend(quota);
    let b = start(&dir.path().join("b.db"), &b_flags, Some(TOKEN));
    let a = start(&dir.path().join("a.db"), &a_flags, Some(TOKEN));
    (a, b, proxy, dir)
}

/// A key made on b and known to a: (key, id).
fn key_on_both(a: &Running, b: &Running, name: &str) -> (String, String) {
    let (status, created) = b.request(
        "POST",
        "/admin/v1/keys",
        TOKEN,
        &format!(r#"{{"name":"{name}","preset":"full"}}"#),
    );
    assert_eq!(status, 201, "{created}");
    let (key, id) = (
        field(&created, "key").to_owned(),
        field(&created, "id").to_owned(),
    );
    wait_until("the key on a", Duration::from_secs(2), || {
        a.request("GET", "/v1/servers", &key, "").0 == 200
    });
    (key, id)
}

/// The review's cases of issue 18, each an acknowledgement that came while b still granted the
/// key: presenting a key whose revocation another request has under way, or that the CLI or a
/// rotation without grace stopped on a; a rotation without grace; several keys presented at
/// once; and the dashboard's refusal without `Retry-After`. None is a success while a is cut
/// off, and each is once the link heals.
#[test]
fn indirect_and_concurrent_revocations_are_not_acknowledged_while_unshared() {
    let redis = RedisServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, b, proxy, dir) = partitioned_pair(&redis, &rt);
    let a = Arc::new(a);
    let keys: Vec<(String, String)> = [
        "in-flight",
        "by-cli",
        "rotated",
        "batch-1",
        "batch-2",
        "dashboard",
    ]
    .iter()
    .map(|n| key_on_both(&a, &b, n))
    .collect();
    let present = |key_list: &[&str]| {
        let body = format!(
            r#"{{"keys":[{}]}}"#,
            key_list
                .iter()
                .map(|k| format!("\"{k}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        send(&a, "POST", "/v1/keys/revoke", "", &body)
    };
    // The dashboard: a session and the page's CSRF token.
    let login = a.raw(
        format!(
            "POST /dashboard/login HTTP/1.1\r\nHost: {h}\r\nOrigin: http://{h}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\ntoken={TOKEN}",
            6 + TOKEN.len(),
            h = a.addr
        )
        .as_bytes(),
    );
    let cookie = login
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let page = a.raw(
        format!(
            "GET /dashboard/settings/api HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n",
            a.addr
        )
        .as_bytes(),
    );
    let at = page.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = page[at..at + 64].to_owned();

    proxy.cut();
    // 1. Presented while a DELETE of the same key is under way on a.
    let (in_flight_key, in_flight_id) = keys[0].clone();
    let deleting = {
        let a = a.clone();
        std::thread::spawn(move || {
            send(
                &a,
                "DELETE",
                &format!("/admin/v1/keys/{in_flight_id}"),
                TOKEN,
                "",
            )
            .0
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let (status, headers, body) = present(&[&in_flight_key]);
    assert_eq!((status, body.as_str()), (503, NOT_SHARED));
    assert_eq!(header(&headers, "retry-after"), Some("2"));
    assert_eq!(deleting.join().unwrap(), 503);
    // 2. Revoked by the CLI in a's data file, then presented.
    let out = std::process::Command::new(BIN)
        .arg("--data")
        .arg(dir.path().join("a.db"))
        .args(["keys", "revoke", &keys[1].1])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--server URL"));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(present(&[&keys[1].0]).0, 503);
    // 3. A rotation without grace is a revocation: refused before anything changes.
    let rotate = format!("/admin/v1/keys/{}/rotate", keys[2].1);
    let (status, headers, body) = send(&a, "POST", &rotate, TOKEN, r#"{"grace_seconds":0}"#);
    assert_eq!((status, body.as_str()), (503, NOT_SHARED));
    assert_eq!(header(&headers, "retry-after"), Some("2"));
    // 4. Several keys at once: none acknowledged, every one refused on a at once.
    assert_eq!(present(&[&keys[3].0, &keys[4].0]).0, 503);
    let (_, list) = a.request("GET", "/admin/v1/keys", TOKEN, "");
    let listed: serde_json::Value = serde_json::from_str(&list).unwrap();
    for (_, id) in &keys[3..5] {
        let k = listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id.as_str())
            .unwrap();
        assert_eq!(k["revoked"], true, "{k}");
    }
    // 5. The dashboard's refusal says when to try again.
    let form = format!("csrf={csrf}");
    let res = a.raw(
        format!(
            "POST /dashboard/settings/api/keys/{}/revoke HTTP/1.1\r\nHost: {h}\r\nOrigin: http://{h}\r\nCookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            keys[5].1,
            form.len(),
            h = a.addr
        )
        .as_bytes(),
    );
    let (status, headers, _) = parts(&res);
    assert_eq!(status, 503);
    assert_eq!(header(&headers, "retry-after"), Some("2"));
    // b granted every one of them all along.
    for (key, _) in &keys {
        assert_eq!(b.request("GET", "/v1/servers", key, "").0, 200);
    }
    // 6. A key made on b during the partition is unknown to a, which is out of sync by now
    // (--max-sync-age 3): presenting it there is no success either.
    let (status, created) = b.request(
        "POST",
        "/admin/v1/keys",
        TOKEN,
        r#"{"name":"made-elsewhere","preset":"full"}"#,
    );
    assert_eq!(status, 201, "{created}");
    let elsewhere = field(&created, "key").to_owned();
    wait_until("a out of sync", Duration::from_secs(10), || {
        a.request("GET", "/readyz", "", "")
            .1
            .contains("not confirmed in sync")
    });
    assert_eq!(present(&[&elsewhere]).0, 503);
    assert_eq!(b.request("GET", "/v1/servers", &elsewhere, "").0, 200);

    proxy.heal();
    for (key, _) in keys.iter().filter(|(k, _)| *k != keys[2].0) {
        wait_until("the revocation on b", Duration::from_secs(5), || {
            b.request("GET", "/v1/servers", key, "").0 == 401
        });
    }
    // Asked again: a success, each enforced on b.
    wait_until(
        "a presentation answered 202",
        Duration::from_secs(10),
        || present(&[&keys[0].0, &keys[1].0, &keys[3].0, &keys[4].0, &elsewhere]).0 == 202,
    );
    assert_eq!(b.request("GET", "/v1/servers", &elsewhere, "").0, 401);
    // The rotation without grace, once Redis answers: the old key is refused on b at once.
    let (status, _, body) = send(&a, "POST", &rotate, TOKEN, r#"{"grace_seconds":0}"#);
    assert_eq!(status, 201, "{body}");
    assert_eq!(b.request("GET", "/v1/servers", &keys[2].0, "").0, 401);
    let new_key = serde_json::from_str::<serde_json::Value>(&body).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_until("the new key on b", Duration::from_secs(2), || {
        b.request("GET", "/v1/servers", &new_key, "").0 == 200
    });
    Arc::try_unwrap(a).ok().unwrap().terminate();
    b.terminate();
}

/// An OAuth client registered with one instance is known to the other (client ids are signed
/// with a key derived from the shared sync secret): a code exchanged there fails for the code,
/// not for the client.
#[test]
fn an_oauth_client_registered_on_one_instance_is_known_to_the_other() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_instances(&redis, dir.path());
    let body = r#"{"redirect_uris":["http://127.0.0.1:9/callback"],"client_name":"agent"}"#;
    let res = a.raw(
        format!(
            "POST /oauth/register HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let (status, _, text) = parts(&res);
    assert_eq!(status, 201, "{text}");
    let client_id = field(&text, "client_id").to_owned();
    let form = format!(
        "grant_type=authorization_code&code=unknown&client_id={client_id}&code_verifier={}",
        "v".repeat(43)
    );
    let res = b.raw(
        format!(
            "POST /oauth/token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        )
        .as_bytes(),
    );
    let (status, _, text) = parts(&res);
    assert_eq!(status, 400, "{text}");
    assert_eq!(field(&text, "error"), "invalid_grant", "{text}");
}
