//! The spec's security tips as the demo server carries them out, over HTTP: leaked keys revoked
//! by presentation and by GitHub's secret scanning, rotation that keeps its quota, per-key
//! address allowlists behind trusted proxies, and the quota of requests without a valid key.

mod common;

use base64::Engine as _;
use common::{body, header, Server, ADMIN, T0};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sitequest_auth::{Quota, TrustedProxies};
use sitequest_auth_secret_scanning::PartnerKeys;

const UNAUTHORIZED: &str =
    r#"{"error":"Invalid or missing API key","code":"UNAUTHORIZED","status":401}"#;
const IP_NOT_ALLOWED: &str =
    r#"{"error":"API key not allowed from this address","code":"IP_NOT_ALLOWED","status":403}"#;
const RATE_LIMITED: &str = r#"{"error":"Too many requests","code":"RATE_LIMITED","status":429}"#;
const PRESENTED: &str =
    r#"{"status":202,"message":"Any live key among those presented is now revoked"}"#;

fn unknown_key(fill: char) -> String {
    format!("sq_live_{}", fill.to_string().repeat(64))
}

async fn get(s: &Server, key: &str, from: Option<&str>) -> reqwest::Response {
    let mut req = s
        .client
        .get(format!("{}/v1/servers", s.base))
        .header("authorization", format!("Bearer {key}"));
    if let Some(from) = from {
        req = req.header("x-forwarded-for", from);
    }
    req.send().await.unwrap()
}

async fn present(s: &Server, keys: &Value, from: Option<&str>) -> reqwest::Response {
    let mut req = s
        .client
        .post(format!("{}/v1/keys/revoke", s.base))
        .header("content-type", "application/json")
        .body(json!({ "keys": keys }).to_string());
    if let Some(from) = from {
        req = req.header("x-forwarded-for", from);
    }
    req.send().await.unwrap()
}

async fn listed(s: &Server, id: &str) -> Value {
    let (status, v) = s.admin(Method::GET, "/admin/v1/keys", None).await;
    assert_eq!(status, StatusCode::OK);
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("{id} is not listed"))
}

#[tokio::test]
async fn presenting_a_key_revokes_it_and_tells_nothing() {
    let s = Server::start(Quota::SPEC).await;
    let (id, key) = s.create(r#"{"name":"leaked","preset":"full"}"#).await;
    assert_eq!(get(&s, &key, None).await.status(), 200);

    // An unknown key, garbage and a live key: the same answer for each.
    let mut answers = Vec::new();
    for keys in [
        json!([unknown_key('a')]),
        json!(["not a key at all"]),
        json!([key, unknown_key('b')]),
        json!([key]),
    ] {
        let res = present(&s, &keys, None).await;
        let status = res.status();
        assert_eq!(header(&res, "content-type"), Some("application/json"));
        assert_eq!(header(&res, "x-ratelimit-limit"), Some("10"));
        assert_eq!(
            header(&res, "ratelimit-policy"),
            Some("\"key-revocation\";q=10;w=60")
        );
        answers.push((status, res.text().await.unwrap()));
    }
    for a in &answers {
        assert_eq!(a, &(StatusCode::ACCEPTED, PRESENTED.to_owned()));
    }

    let res = get(&s, &key, None).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.text().await.unwrap(), UNAUTHORIZED);
    let k = listed(&s, &id).await;
    assert_eq!(
        (k["revoked"].clone(), k["revoked_by"].clone()),
        (json!(true), json!("presentation"))
    );
    let (_, activity) = s.admin(Method::GET, "/admin/v1/activity", None).await;
    assert_eq!(
        activity["events"][0],
        json!({"at": T0 + 10, "key_id": id, "action": "revoked", "source": "presentation"})
    );
    // Presenting it again records nothing more.
    assert_eq!(present(&s, &json!([key]), None).await.status(), 202);
    let (_, again) = s.admin(Method::GET, "/admin/v1/activity", None).await;
    assert_eq!(again["events"].as_array().unwrap().len(), 2, "{again}");
}

#[tokio::test]
async fn presenting_is_bounded_and_counted_per_address() {
    let s = Server::start_configured(tempfile::tempdir().unwrap(), Quota::SPEC, |c| {
        c.trusted_proxies = TrustedProxies::parse_list(["127.0.0.1"]).unwrap();
    })
    .await;
    let too_many: Vec<String> = (0..101).map(|_| unknown_key('c')).collect();
    let res = present(&s, &json!(too_many), Some("192.0.2.1")).await;
    assert_eq!(res.status(), 400);
    assert_eq!(
        body(res).await,
        json!({"error": "at most 100 keys per request", "code": "INVALID_REQUEST", "status": 400})
    );
    let res = s
        .client
        .post(format!("{}/v1/keys/revoke", s.base))
        .header("x-forwarded-for", "192.0.2.1")
        .body(format!("{{\"keys\": [\"{}\"", unknown_key('d')))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let text = res.text().await.unwrap();
    assert_eq!(
        text,
        r#"{"error":"the body must be {\"keys\": [\"sq_live_...\", ...]} (error at line 1, column 84)","code":"INVALID_REQUEST","status":400}"#
    );
    // 10 a minute per address: two are used above.
    for i in 2..10 {
        let res = present(&s, &json!([]), Some("192.0.2.1")).await;
        assert_eq!(res.status(), 202, "request {i}");
        assert_eq!(
            header(&res, "x-ratelimit-remaining"),
            Some((9 - i).to_string().as_str())
        );
    }
    let res = present(&s, &json!([]), Some("192.0.2.1")).await;
    assert_eq!(res.status(), 429);
    assert_eq!(header(&res, "retry-after"), Some("50"));
    assert_eq!(header(&res, "x-ratelimit-remaining"), Some("0"));
    assert_eq!(res.text().await.unwrap(), RATE_LIMITED);
    assert_eq!(
        present(&s, &json!([]), Some("192.0.2.2")).await.status(),
        202
    );
}

/// A key pair standing in for GitHub's, and the keys file in the shape of GitHub's answer.
fn github_keys() -> (SigningKey, PartnerKeys) {
    let signing = SigningKey::random(&mut rand_core::OsRng);
    let pem = signing
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let file = json!({"public_keys": [
        {"key_identifier": "old", "key": pem, "is_current": false},
        {"key_identifier": "kid-1", "key": pem, "is_current": true},
    ]});
    (
        signing,
        PartnerKeys::from_json(file.to_string().as_bytes()).unwrap(),
    )
}

async fn report(s: &Server, body: &str, key_id: &str, signature: &str) -> reqwest::Response {
    s.client
        .post(format!("{}/v1/secret-scanning/github", s.base))
        .header("content-type", "application/json")
        .header("Github-Public-Key-Identifier", key_id)
        .header("Github-Public-Key-Signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

fn sign(key: &SigningKey, body: &str) -> String {
    let sig: DerSignature = key.sign(body.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sig.as_bytes())
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[tokio::test]
async fn github_secret_scanning_revokes_reported_live_keys() {
    let (github, keys) = github_keys();
    let s = Server::start_configured(tempfile::tempdir().unwrap(), Quota::SPEC, |c| {
        c.github_scanning_keys = Some(keys);
    })
    .await;
    let (id, live) = s.create(r#"{"name":"public","preset":"full"}"#).await;
    let (_, other) = s.create(r#"{"name":"private","preset":"full"}"#).await;
    let unknown = unknown_key('e');
    let payload = json!([
        {"token": live, "type": "sitequest_api_key", "url": "https://github.com/o/r/blob/main/.env", "source": "content"},
        {"token": unknown, "type": "sitequest_api_key", "url": "https://gist.github.com/x", "source": "gist"},
    ])
    .to_string();

    // A bad signature, a signature by an unknown key id, or none: 401, nothing changes.
    let (forger, _) = github_keys();
    for (kid, sig) in [
        ("kid-1", sign(&forger, &payload)),
        ("kid-1", sign(&github, "[]")),
        ("kid-9", sign(&github, &payload)),
        ("kid-1", "bm90IGEgc2lnbmF0dXJl".to_owned()),
    ] {
        let res = report(&s, &payload, kid, &sig).await;
        assert_eq!(res.status(), 401, "{kid}");
        assert_eq!(
            body(res).await,
            json!({"error": "Invalid signature", "code": "UNAUTHORIZED", "status": 401})
        );
    }
    let unsigned = s
        .client
        .post(format!("{}/v1/secret-scanning/github", s.base))
        .body(payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    // Refused reports count in the address's quota of requests without a valid key.
    assert_eq!(header(&unsigned, "x-ratelimit-remaining"), Some("55"));
    assert_eq!(
        header(&unsigned, "ratelimit-policy"),
        Some("\"unauthenticated\";q=60;w=60")
    );
    let big = vec![b' '; 1024 * 1024 + 1];
    let res = s
        .client
        .post(format!("{}/v1/secret-scanning/github", s.base))
        .header("Github-Public-Key-Identifier", "kid-1")
        .header("Github-Public-Key-Signature", sign(&github, "x"))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    // Counted as a refusal too (issue 18): a flood of megabytes stops at the quota.
    assert_eq!(header(&res, "x-ratelimit-remaining"), Some("54"));
    assert_eq!(get(&s, &live, None).await.status(), 200);

    let res = report(&s, &payload, "kid-1", &sign(&github, &payload)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        body(res).await,
        json!([
            {"token_hash": sha256_hex(&live), "token_type": "sitequest_api_key", "label": "true_positive"},
            {"token_hash": sha256_hex(&unknown), "token_type": "sitequest_api_key", "label": "false_positive"},
        ])
    );
    assert_eq!(get(&s, &live, None).await.status(), 401);
    assert_eq!(get(&s, &other, None).await.status(), 200);
    assert_eq!(
        listed(&s, &id).await["revoked_by"],
        "github_secret_scanning"
    );
    // Reported again: no longer live.
    let res = report(&s, &payload, "old", &sign(&github, &payload)).await;
    assert_eq!(body(res).await[0]["label"], "false_positive");
    // A malformed payload, signed: 400.
    let res = report(&s, "{", "kid-1", &sign(&github, "{")).await;
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn github_endpoint_is_served_only_when_configured() {
    let s = Server::start(Quota::SPEC).await;
    let res = s
        .client
        .post(format!("{}/v1/secret-scanning/github", s.base))
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn a_rotation_shares_one_window_between_old_and_new_key() {
    let s = Server::start(Quota::SPEC).await;
    let (id, old) = s.create(r#"{"name":"ci","preset":"full"}"#).await;
    for _ in 0..40 {
        assert_eq!(get(&s, &old, None).await.status(), 200);
    }
    let (status, v) = s
        .admin(
            Method::POST,
            &format!("/admin/v1/keys/{id}/rotate"),
            Some(r#"{"grace_seconds":3600}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let new = v["key"].as_str().unwrap().to_owned();
    for i in 0..20 {
        let res = get(&s, &new, None).await;
        assert_eq!(res.status(), 200, "new key request {i}");
        assert_eq!(
            header(&res, "x-ratelimit-remaining"),
            Some((19 - i).to_string().as_str())
        );
    }
    for key in [&old, &new] {
        let res = get(&s, key, None).await;
        assert_eq!(res.status(), 429);
        assert_eq!(res.text().await.unwrap(), RATE_LIMITED);
    }
    let new_id = v["id"].as_str().unwrap();
    assert_eq!(listed(&s, new_id).await["shares_limit_with"], json!(id));
    // The next window: one quota for the two, still.
    s.set_time(T0 + 60);
    assert_eq!(
        header(&get(&s, &old, None).await, "x-ratelimit-remaining"),
        Some("59")
    );
    assert_eq!(
        header(&get(&s, &new, None).await, "x-ratelimit-remaining"),
        Some("58")
    );
}

#[tokio::test]
async fn an_allowlist_refuses_other_addresses_and_trusts_only_named_proxies() {
    let s = Server::start(Quota::SPEC).await;
    let (id, key) = s
        .create(r#"{"name":"office","preset":"full","allowed_ips":["10.0.0.0/8","2001:db8::/32"]}"#)
        .await;
    // From 127.0.0.1, and X-Forwarded-For is ignored without a trusted proxy.
    for from in [None, Some("10.1.2.3")] {
        let res = get(&s, &key, from).await;
        assert_eq!(res.status(), 403);
        assert_eq!(header(&res, "www-authenticate"), None);
        assert_eq!(
            header(&res, "ratelimit-policy"),
            Some("\"unauthenticated\";q=60;w=60")
        );
        assert_eq!(res.text().await.unwrap(), IP_NOT_ALLOWED);
    }
    let k = listed(&s, &id).await;
    assert_eq!(k["allowed_ips"], json!(["10.0.0.0/8", "2001:db8::/32"]));
    assert_eq!(k["last_used_at"], Value::Null);

    // The owner allows this address: in force at once.
    let path = format!("/admin/v1/keys/{id}");
    let (status, v) = s
        .admin(
            Method::PATCH,
            &path,
            Some(r#"{"allowed_ips":["127.0.0.1"]}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["allowed_ips"], json!(["127.0.0.1/32"]));
    let res = get(&s, &key, None).await;
    assert_eq!(res.status(), 200);
    // The refusals did not use the key's quota.
    assert_eq!(header(&res, "x-ratelimit-remaining"), Some("59"));

    // Malformed lists are 400s naming the range; nothing changes.
    for (body, message) in [
        (
            r#"{"allowed_ips":["10.0.0.0/33"]}"#,
            r#"allowed_ips: "10.0.0.0/33" is not an IP address or CIDR range (such as 203.0.113.0/24 or 2001:db8::/32)"#.to_owned(),
        ),
        (
            r#"{"allowed_ips":["10.1.2.3/8"]}"#,
            r#"allowed_ips: "10.1.2.3/8" has bits set past its prefix length: the range is 10.0.0.0/8"#.to_owned(),
        ),
        (
            r#"{"allowed_ips":"10.0.0.0/8"}"#,
            "allowed_ips must be a list of IP addresses or CIDR ranges".to_owned(),
        ),
        (
            &format!(
                r#"{{"allowed_ips":{}}}"#,
                json!((0..33).map(|i| format!("10.{i}.0.0/16")).collect::<Vec<_>>())
            ),
            "allowed_ips: a key may be limited to at most 32 address ranges, got more".to_owned(),
        ),
    ] {
        let (status, v) = s.admin(Method::PATCH, &path, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(
            v,
            json!({"error": message, "code": "INVALID_REQUEST", "status": 400})
        );
    }
    let (status, v) = s
        .admin(
            Method::POST,
            "/admin/v1/keys",
            Some(r#"{"name":"x","preset":"full","allowed_ips":["nope"]}"#),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("\"nope\""), "{v}");
    assert_eq!(get(&s, &key, None).await.status(), 200);
    let (status, _) = s
        .admin(
            Method::PATCH,
            "/admin/v1/keys/kid_0000000000000000",
            Some(r#"{"allowed_ips":[]}"#),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Persisted: a restart on the same file keeps the allowlist.
    let (status, _) = s
        .admin(
            Method::PATCH,
            &path,
            Some(r#"{"allowed_ips":["192.0.2.0/24"]}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let dir = s.stop().await;
    let s = Server::start_configured(dir, Quota::SPEC, |c| {
        c.trusted_proxies = TrustedProxies::parse_list(["127.0.0.0/8"]).unwrap();
    })
    .await;
    assert_eq!(get(&s, &key, None).await.status(), 403);
    // Behind a trusted proxy: the address the proxy saw.
    assert_eq!(get(&s, &key, Some("192.0.2.77")).await.status(), 200);
    assert_eq!(get(&s, &key, Some("198.51.100.1")).await.status(), 403);
    // What the client wrote before the proxy's entry is not believed.
    assert_eq!(
        get(&s, &key, Some("192.0.2.77, 198.51.100.1"))
            .await
            .status(),
        403
    );
    let (_, activity) = s.admin(Method::GET, "/admin/v1/activity", None).await;
    let actions: Vec<&str> = activity["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["allowlist_changed", "allowlist_changed", "created"]
    );
    let _ = ADMIN;
}

#[tokio::test]
async fn requests_without_a_valid_key_have_their_own_quota_per_address() {
    let s = Server::start_configured(tempfile::tempdir().unwrap(), Quota::SPEC, |c| {
        c.trusted_proxies = TrustedProxies::parse_list(["127.0.0.1"]).unwrap();
    })
    .await;
    let (_, good) = s.create(r#"{"name":"good","preset":"full"}"#).await;
    let from = Some("203.0.113.5");
    for i in 0..60u32 {
        // Every kind of 401 counts, and each carries the address's window.
        let res = match i % 3 {
            0 => get(&s, &unknown_key('f'), from).await,
            1 => get(&s, "garbage", from).await,
            _ => s
                .client
                .get(format!("{}/v1/servers", s.base))
                .header("x-forwarded-for", "203.0.113.5")
                .send()
                .await
                .unwrap(),
        };
        assert_eq!(res.status(), 401, "request {i}");
        assert_eq!(header(&res, "x-ratelimit-limit"), Some("60"));
        assert_eq!(
            header(&res, "x-ratelimit-remaining"),
            Some((59 - i).to_string().as_str())
        );
        assert_eq!(header(&res, "x-ratelimit-reset"), Some("1800000060"));
        assert_eq!(
            header(&res, "ratelimit"),
            Some(format!("\"unauthenticated\";r={};t=50", 59 - i).as_str())
        );
        assert_eq!(res.text().await.unwrap(), UNAUTHORIZED);
    }
    // The 61st refusal: a 429, whatever the bad credential.
    for key in [unknown_key('f'), "garbage".to_owned()] {
        let res = get(&s, &key, from).await;
        assert_eq!(res.status(), 429);
        assert_eq!(header(&res, "retry-after"), Some("50"));
        assert_eq!(header(&res, "x-ratelimit-remaining"), Some("0"));
        assert_eq!(res.text().await.unwrap(), RATE_LIMITED);
    }
    // A live key from that address is served in its own window (issue 18: anyone sharing the
    // address could deny the key's owner service).
    let res = get(&s, &good, from).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "ratelimit"), Some("\"default\";r=59;t=50"));
    // Another address is unaffected.
    let res = get(&s, &unknown_key('f'), Some("203.0.113.6")).await;
    assert_eq!(res.status(), 401);
    assert_eq!(header(&res, "x-ratelimit-remaining"), Some("59"));
    let res = get(&s, &good, Some("203.0.113.6")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-ratelimit-remaining"), Some("58"));
    assert_eq!(
        header(&res, "ratelimit-policy"),
        Some("\"default\";q=60;w=60")
    );
    // The next window starts over.
    s.set_time(T0 + 60);
    assert_eq!(get(&s, &unknown_key('f'), from).await.status(), 401);
}

#[tokio::test]
async fn wrong_admin_tokens_count_in_the_address_quota() {
    let s = Server::start(Quota::SPEC).await;
    for i in 0..60u32 {
        let res = s
            .call(
                Method::GET,
                "/admin/v1/keys",
                Some("not-the-admin-token"),
                None,
            )
            .await;
        assert_eq!(res.status(), 401, "attempt {i}");
        assert_eq!(
            header(&res, "x-ratelimit-remaining"),
            Some((59 - i).to_string().as_str())
        );
    }
    let res = s
        .call(
            Method::GET,
            "/admin/v1/keys",
            Some("not-the-admin-token"),
            None,
        )
        .await;
    assert_eq!(res.status(), 429);
    assert_eq!(res.text().await.unwrap(), RATE_LIMITED);
    // The admin is never locked out by them.
    let (status, _) = s.admin(Method::GET, "/admin/v1/keys", None).await;
    assert_eq!(status, StatusCode::OK);
}
