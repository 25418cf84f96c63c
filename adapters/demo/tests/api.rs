//! The demo server over a real socket: admin API, every mock route and scope, revocation,
//! expiry, rotation, rate limits and persistence.

mod common;

use std::sync::Arc;

use common::{body, header, Server, ADMIN, T0};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sitequest_auth::Quota;

/// Every mock route with the scope that guards it.
const ROUTES: [(&str, &str, &str); 21] = [
    ("GET", "/v1/servers", "vps:read"),
    ("GET", "/v1/servers/srv-1001", "vps:read"),
    ("GET", "/v1/servers/srv-1001/metrics", "vps:read"),
    ("POST", "/v1/servers/srv-1001/actions/start", "vps:write"),
    ("POST", "/v1/servers/srv-1001/actions/stop", "vps:write"),
    ("POST", "/v1/servers/srv-1001/actions/reboot", "vps:write"),
    (
        "POST",
        "/v1/servers/srv-1001/actions/reinstall",
        "vps:write",
    ),
    (
        "POST",
        "/v1/servers/srv-1001/actions/mount-iso",
        "vps:write",
    ),
    ("POST", "/v1/servers/srv-1001/ssh", "vps:write"),
    ("POST", "/v1/servers", "vps:manage"),
    ("POST", "/v1/servers/srv-1001/upgrade", "vps:manage"),
    ("DELETE", "/v1/servers/srv-1001", "vps:manage"),
    ("GET", "/v1/domains", "domains:read"),
    ("GET", "/v1/domains/example.com/dns", "domains:read"),
    ("PUT", "/v1/domains/example.com/dns", "domains:write"),
    ("PATCH", "/v1/domains/example.com/settings", "domains:write"),
    ("POST", "/v1/domains", "domains:manage"),
    ("POST", "/v1/domains/example.com/transfer", "domains:manage"),
    ("DELETE", "/v1/domains/example.com", "domains:manage"),
    ("GET", "/v1/servers/srv-1002", "vps:read"),
    ("GET", "/v1/domains/example.org/dns", "domains:read"),
];

const UNAUTHORIZED: &str =
    r#"{"error":"Invalid or missing API key","code":"UNAUTHORIZED","status":401}"#;
const FORBIDDEN: &str =
    r#"{"error":"API key lacks the required scope(s)","code":"INSUFFICIENT_SCOPE","status":403}"#;

fn method(m: &str) -> Method {
    m.parse().unwrap()
}

#[tokio::test]
async fn each_preset_reaches_exactly_its_routes() {
    // Rate limit high enough for the whole matrix.
    let s = Server::start(Quota::new(1000, 60).unwrap()).await;
    let presets = [
        (
            r#"{"name":"full","preset":"full"}"#,
            vec![
                "vps:read",
                "vps:write",
                "vps:manage",
                "domains:read",
                "domains:write",
                "domains:manage",
            ],
        ),
        (
            r#"{"name":"ro","preset":"read_only"}"#,
            vec!["vps:read", "domains:read"],
        ),
        (
            r#"{"name":"custom","scopes":["vps:write","domains:manage"]}"#,
            vec!["vps:write", "domains:manage"],
        ),
    ];
    for (create, scopes) in presets {
        let (_, key) = s.create(create).await;
        for (m, path, scope) in ROUTES {
            let res = s.call(method(m), path, Some(&key), Some("{}")).await;
            let status = res.status();
            if scopes.contains(&scope) {
                assert!(status.is_success(), "{create} {m} {path}: {status}");
                assert_eq!(header(&res, "content-type"), Some("application/json"));
                assert_eq!(header(&res, "x-ratelimit-limit"), Some("1000"));
                let _ = body(res).await;
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{create} {m} {path}");
                assert!(header(&res, "x-ratelimit-remaining").is_some());
                assert_eq!(res.text().await.unwrap(), FORBIDDEN);
            }
        }
    }
}

#[tokio::test]
async fn create_response_has_exactly_the_documented_fields() {
    let s = Server::start(Quota::SPEC).await;
    let (status, v) = s
        .admin(
            Method::POST,
            "/admin/v1/keys",
            Some(r#"{"name":"ci deploy","preset":"read_only","expires_at":1800003600}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let obj = v.as_object().unwrap();
    let fields: Vec<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(
        fields,
        [
            "id",
            "key",
            "name",
            "scopes",
            "created_at",
            "expires_at",
            "allowed_ips"
        ]
    );
    let key = v["key"].as_str().unwrap();
    assert!(key.starts_with("sq_live_") && key.len() == 72);
    assert!(v["id"].as_str().unwrap().starts_with("kid_"));
    assert_eq!(v["name"], "ci deploy");
    assert_eq!(v["scopes"], json!(["vps:read", "domains:read"]));
    assert_eq!(v["created_at"], T0 + 10);
    assert_eq!(v["expires_at"], 1_800_003_600u64);
    assert_eq!(v["allowed_ips"], json!([]));

    let (_, v2) = s
        .admin(
            Method::POST,
            "/admin/v1/keys",
            Some(r#"{"name":"x","scopes":["vps:read"]}"#),
        )
        .await;
    assert_eq!(v2["expires_at"], serde_json::Value::Null);
}

#[tokio::test]
async fn list_shows_no_secrets() {
    let s = Server::start(Quota::SPEC).await;
    let (id, key) = s.create(r#"{"name":"a","preset":"full"}"#).await;
    s.set_time(T0 + 20);
    assert_eq!(
        s.call(Method::GET, "/v1/servers", Some(&key), None)
            .await
            .status(),
        200
    );
    let res = s
        .call(Method::GET, "/admin/v1/keys", Some(ADMIN), None)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    assert!(!text.contains(&key[8..]));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v,
        json!({"keys": [{
            "id": id,
            "name": "a",
            "scopes": ["vps:read", "vps:write", "vps:manage", "domains:read", "domains:write", "domains:manage"],
            "created_at": T0 + 10,
            "expires_at": null,
            "revoked": false,
            "revoked_at": null,
            "revoked_by": null,
            "last4": &key[68..],
            "last_used_at": T0 + 20,
            "allowed_ips": [],
            "shares_limit_with": null,
        }]})
    );
}

#[tokio::test]
async fn admin_input_errors_are_400_invalid_request() {
    let s = Server::start(Quota::SPEC).await;
    let big = format!(r#"{{"name":"{}","preset":"full"}}"#, "x".repeat(20_000));
    let cases = [
        (
            r#"{"name":"a","scopes":["vps:admin"]}"#.to_string(),
            "unknown scope \"vps:admin\"",
        ),
        (
            r#"{"name":"a","scopes":[]}"#.to_string(),
            "scopes must not be empty",
        ),
        (
            r#"{"name":"a","preset":"everything"}"#.to_string(),
            "unknown preset, expected \"full\" or \"read_only\"",
        ),
        (
            r#"{"name":"a","preset":"full","scopes":["vps:read"]}"#.to_string(),
            "give either scopes or preset, not both",
        ),
        (
            r#"{"name":"a"}"#.to_string(),
            "scopes or preset is required",
        ),
        (
            r#"{"name":"a","preset":"full","expires_at":1800000000}"#.to_string(),
            "expiry time must be in the future",
        ),
        (
            r#"{"name":"","preset":"full"}"#.to_string(),
            "key name is empty",
        ),
        (big, "request body is larger than 16384 bytes"),
    ];
    for (req, message) in cases {
        let (status, v) = s.admin(Method::POST, "/admin/v1/keys", Some(&req)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{req:.60}");
        assert_eq!(
            v,
            json!({"error": message, "code": "INVALID_REQUEST", "status": 400}),
            "{req:.60}"
        );
    }
    for malformed in [
        "{",
        "[]",
        "null",
        r#"{"name":"a","preset":"full","extra":1}"#,
        r#"{"name":"a","scopes":[1]}"#,
        r#"{"name":"a","scopes":"vps:read"}"#,
        "\u{0}",
    ] {
        let (status, v) = s
            .admin(Method::POST, "/admin/v1/keys", Some(malformed))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{malformed}");
        assert_eq!(v["code"], "INVALID_REQUEST");
        assert_eq!(v["status"], 400);
        assert!(v["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON body"));
    }
    let (_, list) = s.admin(Method::GET, "/admin/v1/keys", None).await;
    assert_eq!(list, json!({"keys": []}));
}

#[tokio::test]
async fn admin_api_requires_the_admin_token() {
    let s = Server::start(Quota::SPEC).await;
    let (_, key) = s.create(r#"{"name":"a","preset":"full"}"#).await;
    let expected =
        json!({"error": "Invalid or missing admin token", "code": "UNAUTHORIZED", "status": 401});
    for auth in [None, Some("wrong-token-0123456789"), Some(key.as_str())] {
        for (m, path) in [
            ("GET", "/admin/v1/keys"),
            ("POST", "/admin/v1/keys"),
            ("DELETE", "/admin/v1/keys/kid_0000000000000000"),
            ("POST", "/admin/v1/keys/kid_0000000000000000/rotate"),
        ] {
            let res = s
                .call(
                    method(m),
                    path,
                    auth,
                    Some(r#"{"name":"b","preset":"full"}"#),
                )
                .await;
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{m} {path}");
            assert_eq!(body(res).await, expected);
        }
    }
    // Two Authorization fields are no credential, even when the first holds the admin token.
    let res = s
        .client
        .get(format!("{}/admin/v1/keys", s.base))
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("authorization", "Bearer something-else")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body(res).await, expected);
}

#[tokio::test]
async fn revoke_takes_effect_at_once() {
    let s = Server::start(Quota::SPEC).await;
    let (id, key) = s.create(r#"{"name":"a","preset":"full"}"#).await;
    assert_eq!(
        s.call(Method::GET, "/v1/servers", Some(&key), None)
            .await
            .status(),
        200
    );
    let path = format!("/admin/v1/keys/{id}");
    let (status, v) = s.admin(Method::DELETE, &path, None).await;
    assert_eq!(
        (status, v),
        (StatusCode::NO_CONTENT, serde_json::Value::Null)
    );
    let res = s.call(Method::GET, "/v1/servers", Some(&key), None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // The client address's window, not the key's.
    assert_eq!(
        header(&res, "ratelimit-policy"),
        Some("\"unauthenticated\";q=60;w=60")
    );
    assert_eq!(header(&res, "x-ratelimit-remaining"), Some("59"));
    assert_eq!(res.text().await.unwrap(), UNAUTHORIZED);
    // Revoking again is harmless; unknown ids are 404.
    assert_eq!(
        s.admin(Method::DELETE, &path, None).await.0,
        StatusCode::NO_CONTENT
    );
    for bad in ["kid_0000000000000000", "nonsense"] {
        let (status, v) = s
            .admin(Method::DELETE, &format!("/admin/v1/keys/{bad}"), None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            v,
            json!({"error": "No key with this id", "code": "NOT_FOUND", "status": 404})
        );
    }
    let (_, list) = s.admin(Method::GET, "/admin/v1/keys", None).await;
    assert_eq!(list["keys"][0]["revoked"], true);
}

#[tokio::test]
async fn expired_keys_are_refused() {
    let s = Server::start(Quota::SPEC).await;
    let (_, key) = s
        .create(&format!(
            r#"{{"name":"ci","preset":"full","expires_at":{}}}"#,
            T0 + 100
        ))
        .await;
    s.set_time(T0 + 99);
    assert_eq!(
        s.call(Method::GET, "/v1/domains", Some(&key), None)
            .await
            .status(),
        200
    );
    s.set_time(T0 + 100);
    let res = s.call(Method::GET, "/v1/domains", Some(&key), None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.text().await.unwrap(), UNAUTHORIZED);
}

#[tokio::test]
async fn rotate_with_grace() {
    let s = Server::start(Quota::SPEC).await;
    let (id, old) = s.create(r#"{"name":"deploy","scopes":["vps:read"]}"#).await;
    let (status, v) = s
        .admin(
            Method::POST,
            &format!("/admin/v1/keys/{id}/rotate"),
            Some(r#"{"grace_seconds":30}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(v["name"], "deploy");
    assert_eq!(v["scopes"], json!(["vps:read"]));
    let new = v["key"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    s.set_time(T0 + 39);
    assert_eq!(
        s.call(Method::GET, "/v1/servers", Some(&old), None)
            .await
            .status(),
        200
    );
    assert_eq!(
        s.call(Method::GET, "/v1/servers", Some(&new), None)
            .await
            .status(),
        200
    );
    s.set_time(T0 + 40);
    assert_eq!(
        s.call(Method::GET, "/v1/servers", Some(&old), None)
            .await
            .status(),
        401
    );
    assert_eq!(
        s.call(Method::GET, "/v1/servers", Some(&new), None)
            .await
            .status(),
        200
    );
    let (_, list) = s.admin(Method::GET, "/admin/v1/keys", None).await;
    let old_entry = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap();
    assert_eq!(old_entry["expires_at"], T0 + 40);

    // An expired key cannot be rotated; an unknown one is 404; bad bodies are 400.
    let (status, v) = s
        .admin(
            Method::POST,
            &format!("/admin/v1/keys/{id}/rotate"),
            Some("{}"),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        v,
        json!({"error": "The key is revoked or expired", "code": "KEY_NOT_ACTIVE", "status": 409})
    );
    let (status, _) = s
        .admin(
            Method::POST,
            "/admin/v1/keys/kid_0000000000000000/rotate",
            Some("{}"),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, v) = s
        .admin(
            Method::POST,
            &format!("/admin/v1/keys/{id}/rotate"),
            Some(r#"{"grace_seconds":-1}"#),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["code"], "INVALID_REQUEST");
}

#[tokio::test]
async fn burst_past_the_limit() {
    let s = Server::start(Quota::SPEC).await;
    let (_, key) = s.create(r#"{"name":"a","preset":"read_only"}"#).await;
    for i in 0..60 {
        let res = s.call(Method::GET, "/v1/servers", Some(&key), None).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            header(&res, "x-ratelimit-remaining"),
            Some((59 - i).to_string().as_str())
        );
    }
    s.set_time(T0 + 35);
    let res = s.call(Method::GET, "/v1/servers", Some(&key), None).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "x-ratelimit-limit"), Some("60"));
    assert_eq!(header(&res, "x-ratelimit-remaining"), Some("0"));
    assert_eq!(header(&res, "x-ratelimit-reset"), Some("1800000060"));
    assert_eq!(header(&res, "retry-after"), Some("25"));
    assert_eq!(
        header(&res, "ratelimit-policy"),
        Some("\"default\";q=60;w=60")
    );
    assert_eq!(header(&res, "ratelimit"), Some("\"default\";r=0;t=25"));
    assert_eq!(
        res.text().await.unwrap(),
        r#"{"error":"Too many requests","code":"RATE_LIMITED","status":429}"#
    );
    s.set_time(T0 + 60);
    let res = s.call(Method::GET, "/v1/servers", Some(&key), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "x-ratelimit-remaining"), Some("59"));
}

#[tokio::test]
async fn concurrent_requests_on_one_key_get_exactly_the_limit() {
    let s = Arc::new(Server::start(Quota::SPEC).await);
    let (_, key) = s.create(r#"{"name":"a","preset":"full"}"#).await;
    let tasks: Vec<_> = (0..150)
        .map(|_| {
            let (s, key) = (s.clone(), key.clone());
            tokio::spawn(async move {
                s.call(Method::GET, "/v1/domains", Some(&key), None)
                    .await
                    .status()
            })
        })
        .collect();
    let (mut ok, mut limited) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("{other}"),
        }
    }
    assert_eq!((ok, limited), (60, 90));
}

#[tokio::test]
async fn restart_keeps_keys_revocations_and_expiry() {
    let s = Server::start(Quota::SPEC).await;
    let (_, live) = s.create(r#"{"name":"live","preset":"full"}"#).await;
    let (revoked_id, revoked) = s.create(r#"{"name":"gone","preset":"full"}"#).await;
    let (_, expiring) = s
        .create(&format!(
            r#"{{"name":"ci","preset":"full","expires_at":{}}}"#,
            T0 + 50
        ))
        .await;
    s.admin(
        Method::DELETE,
        &format!("/admin/v1/keys/{revoked_id}"),
        None,
    )
    .await;
    assert_eq!(
        s.call(Method::GET, "/v1/servers", Some(&live), None)
            .await
            .status(),
        200
    );
    let (_, before) = s.admin(Method::GET, "/admin/v1/keys", None).await;
    let dir = s.stop().await;

    // The data file holds no plaintext key.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for key in [&live, &revoked, &expiring] {
            assert!(!text.contains(&key[8..40]), "plaintext key in data file");
        }
    }

    let s = Server::start_in(dir, Quota::SPEC).await;
    let (_, after) = s.admin(Method::GET, "/admin/v1/keys", None).await;
    assert_eq!(before, after);
    assert_eq!(
        s.call(Method::GET, "/v1/servers", Some(&live), None)
            .await
            .status(),
        200
    );
    assert_eq!(
        s.call(Method::GET, "/v1/servers", Some(&revoked), None)
            .await
            .status(),
        401
    );
    assert_eq!(
        s.call(Method::GET, "/v1/servers", Some(&expiring), None)
            .await
            .status(),
        200
    );
    s.set_time(T0 + 50);
    assert_eq!(
        s.call(Method::GET, "/v1/servers", Some(&expiring), None)
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn unknown_routes_and_actions_are_json_404() {
    let s = Server::start(Quota::SPEC).await;
    let (_, key) = s.create(r#"{"name":"a","preset":"full"}"#).await;
    let res = s.call(Method::GET, "/v2/nothing", Some(&key), None).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        body(res).await,
        json!({"error": "No such route", "code": "NOT_FOUND", "status": 404})
    );
    let res = s
        .call(
            Method::POST,
            "/v1/servers/srv-1/actions/explode",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // Without a key the guard answers first.
    let res = s
        .call(
            Method::POST,
            "/v1/servers/srv-1/actions/explode",
            None,
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // A route that exists with other methods: a JSON 405.
    for (method, path) in [
        (Method::GET, "/v1/keys/revoke"),
        (Method::PUT, "/v1/servers"),
    ] {
        let res = s.call(method, path, Some(&key), None).await;
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(
            body(res).await,
            json!({"error": "Method not allowed on this route", "code": "METHOD_NOT_ALLOWED", "status": 405})
        );
    }
}

#[tokio::test]
async fn an_endless_grace_is_capped_and_the_data_file_still_loads() {
    let s = Server::start(Quota::SPEC).await;
    let (id, old) = s.create(r#"{"name":"k","preset":"full"}"#).await;
    let (status, _) = s
        .admin(
            Method::POST,
            &format!("/admin/v1/keys/{id}/rotate"),
            Some(r#"{"grace_seconds":18446744073709551615}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let dir = s.stop().await;
    let s = Server::start_in(dir, Quota::SPEC).await;
    let (_, list) = s.admin(Method::GET, "/admin/v1/keys", None).await;
    let entry = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["expires_at"], sitequest_auth::MAX_TIME.as_secs());
    assert_eq!(
        s.call(Method::GET, "/v1/servers", Some(&old), None)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn the_lifetime_policy_requires_and_caps_expiry_in_the_admin_api() {
    let s = Server::start_configured(tempfile::tempdir().unwrap(), Quota::SPEC, |c| {
        c.key_policy = sitequest_auth::KeyPolicy::default()
            .with_max_lifetime(std::time::Duration::from_secs(90 * 86_400));
    })
    .await;
    let now = T0 + 10;
    for (req, message) in [
        (
            r#"{"name":"ci","preset":"full"}"#.to_string(),
            "this server requires keys to expire: give an expiry at most 90 days away",
        ),
        (
            format!(
                r#"{{"name":"ci","preset":"full","expires_at":{}}}"#,
                now + 90 * 86_400 + 1
            ),
            "expiry is too far away: this server allows keys to live at most 90 days",
        ),
    ] {
        let (status, v) = s.admin(Method::POST, "/admin/v1/keys", Some(&req)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{req}");
        assert_eq!(
            v,
            json!({"error": message, "code": "INVALID_REQUEST", "status": 400})
        );
    }
    let ok = format!(
        r#"{{"name":"ci","preset":"full","expires_at":{}}}"#,
        now + 90 * 86_400
    );
    let (status, v) = s.admin(Method::POST, "/admin/v1/keys", Some(&ok)).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let (_, list) = s.admin(Method::GET, "/admin/v1/keys", None).await;
    assert_eq!(list["keys"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_admin_list_filters_keys_unused_for_a_while() {
    let s = Server::start(Quota::SPEC).await;
    let day = 86_400;
    // At T0 + 10: "used" is created, then used at T0 + 20 * day; "idle" is never used.
    let (used_id, used_key) = s.create(r#"{"name":"used","preset":"full"}"#).await;
    let (idle_id, _) = s.create(r#"{"name":"idle","preset":"full"}"#).await;
    s.set_time(T0 + 20 * day);
    let res = s
        .call(Method::GET, "/v1/servers", Some(&used_key), None)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    // A fresh key, never used but created yesterday.
    s.set_time(T0 + 39 * day);
    let (fresh_id, _) = s.create(r#"{"name":"fresh","preset":"full"}"#).await;
    s.set_time(T0 + 40 * day);
    let ids = |v: &serde_json::Value| -> Vec<String> {
        let mut ids: Vec<String> = v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let sorted = |mut v: Vec<&String>| {
        v.sort();
        v.into_iter().cloned().collect::<Vec<String>>()
    };
    let (status, v) = s
        .admin(Method::GET, "/admin/v1/keys?unused_since=30d", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&v), sorted(vec![&idle_id]));
    let (_, v) = s
        .admin(Method::GET, "/admin/v1/keys?unused_since=10d", None)
        .await;
    assert_eq!(ids(&v), sorted(vec![&idle_id, &used_id]));
    let (_, v) = s
        .admin(Method::GET, "/admin/v1/keys?unused_since=12h", None)
        .await;
    assert_eq!(ids(&v), sorted(vec![&idle_id, &used_id, &fresh_id]));
    for bad in ["unused_since=soon", "unused_since=", "since=30d"] {
        let (status, v) = s
            .admin(Method::GET, &format!("/admin/v1/keys?{bad}"), None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(v["code"], "INVALID_REQUEST");
    }
}
