//! OAuth for MCP clients over plain HTTP, for the exact answers a client scripts against: the
//! metadata documents and `/mcp`'s challenges, registration, the consent page's refusals and
//! redirects, the token endpoint's errors, and what the code flow mints. The official Python SDK
//! runs the whole flow against a real browser approval in `tests/dashboard/test_oauth.py`
//! (`scripts/test-dashboard.sh`).
//!
//! Also the 2026-07-28 revision's headers on `/mcp`: the scope decided from `Mcp-Method` and
//! `Mcp-Name` before the body, a body that disagrees with them, and a tool's own quota.

mod common;

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use common::{body, header, Server, ADMIN, T0};
use reqwest::header::{COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use reqwest::{redirect, Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sitequest_auth::Quota;

const CALLBACK: &str = "http://127.0.0.1:9/callback";
const VERIFIER: &str = "a-verifier-of-the-test-with-more-than-43-characters-0123456789";
const SCOPES: [&str; 6] = [
    "vps:read",
    "vps:write",
    "vps:manage",
    "domains:read",
    "domains:write",
    "domains:manage",
];

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap()
}

fn challenge(verifier: &str) -> String {
    B64.encode(Sha256::digest(verifier.as_bytes()))
}

async fn register(s: &Server, body: Value) -> reqwest::Response {
    client()
        .post(format!("{}/oauth/register", s.base))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn registered(s: &Server) -> String {
    let res = register(
        s,
        json!({"redirect_uris": [CALLBACK], "client_name": "Test agent"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    body(res).await["client_id"].as_str().unwrap().to_owned()
}

/// Signs in to the dashboard: (cookie, CSRF token of the settings page).
async fn sign_in(s: &Server) -> (String, String) {
    let c = client();
    let res = c
        .post(format!("{}/dashboard/login", s.base))
        .header(ORIGIN, &s.base)
        .form(&[("token", ADMIN)])
        .send()
        .await
        .unwrap();
    let cookie = res.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = c
        .get(format!("{}/dashboard/settings/api", s.base))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = page.find("name=\"csrf\" value=\"").unwrap() + 19;
    (cookie, page[at..at + 64].to_owned())
}

fn authorize_query(client_id: &str, extra: &[(&str, &str)]) -> String {
    let challenge = challenge(VERIFIER);
    let mut pairs = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", CALLBACK),
        ("state", "state-123"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    for (name, value) in extra {
        pairs.retain(|(n, _)| n != name);
        if !value.is_empty() {
            pairs.push((name, value));
        }
    }
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

async fn consent_page(s: &Server, cookie: &str, query: &str) -> reqwest::Response {
    client()
        .get(format!("{}/dashboard/oauth/authorize?{query}", s.base))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap()
}

/// Sends the consent form: `decision` and the key's fields.
async fn decide(
    s: &Server,
    session: &(String, String),
    client_id: &str,
    decision: &str,
    key: &[(&str, &str)],
) -> reqwest::Response {
    let challenge = challenge(VERIFIER);
    let mut form = vec![
        ("csrf", session.1.as_str()),
        ("client_id", client_id),
        ("redirect_uri", CALLBACK),
        ("state", "state-123"),
        ("code_challenge", challenge.as_str()),
        ("decision", decision),
    ];
    form.extend_from_slice(key);
    client()
        .post(format!("{}/dashboard/oauth/authorize", s.base))
        .header(ORIGIN, &s.base)
        .header(COOKIE, &session.0)
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// The query of a redirect to the client.
fn redirect_query(res: &reqwest::Response) -> HashMap<String, String> {
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let location = res.headers()[LOCATION].to_str().unwrap();
    let url = url::Url::parse(location).unwrap();
    assert_eq!(
        format!("{}://{}{}", url.scheme(), url.authority(), url.path()),
        CALLBACK
    );
    url.query_pairs().into_owned().collect()
}

async fn token(s: &Server, form: &[(&str, &str)]) -> reqwest::Response {
    client()
        .post(format!("{}/oauth/token", s.base))
        .form(form)
        .send()
        .await
        .unwrap()
}

async fn approved_code(s: &Server, session: &(String, String), client_id: &str) -> String {
    let res = decide(
        s,
        session,
        client_id,
        "approve",
        &[
            ("name", "Test agent"),
            ("expiry", "30d"),
            ("access", "read_only"),
        ],
    )
    .await;
    redirect_query(&res)["code"].clone()
}

#[tokio::test]
async fn metadata_names_the_endpoint_and_the_authorization_server() {
    let s = Server::start(Quota::SPEC).await;
    let base = &s.base;
    let res = s.call(Method::POST, "/mcp", None, Some("{}")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&res, "www-authenticate"),
        Some(
            format!(
                "Bearer realm=\"sitequest\", scope=\"vps:read domains:read\", resource_metadata=\"{base}/.well-known/oauth-protected-resource/mcp\""
            )
            .as_str()
        )
    );
    assert_eq!(
        body(res).await,
        json!({"error": "Invalid or missing API key", "code": "UNAUTHORIZED", "status": 401})
    );
    let res = s
        .call(Method::POST, "/mcp", Some("sq_live_nope"), Some("{}"))
        .await;
    assert_eq!(
        header(&res, "www-authenticate"),
        Some(format!("Bearer realm=\"sitequest\", error=\"invalid_token\", scope=\"vps:read domains:read\", resource_metadata=\"{base}/.well-known/oauth-protected-resource/mcp\"").as_str())
    );
    // The REST routes' challenges are unchanged.
    let res = s.call(Method::GET, "/v1/servers", None, None).await;
    assert_eq!(
        header(&res, "www-authenticate"),
        Some("Bearer realm=\"sitequest\"")
    );

    // The endpoint's metadata names it; the root document names the server (RFC 9728 §3.3).
    for (path, resource) in [
        (
            "/.well-known/oauth-protected-resource/mcp",
            format!("{base}/mcp"),
        ),
        ("/.well-known/oauth-protected-resource", format!("{base}/")),
    ] {
        let res = s.call(Method::GET, path, None, None).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_eq!(
            body(res).await,
            json!({
                "resource": resource,
                "authorization_servers": [format!("{base}/")],
                "scopes_supported": SCOPES,
                "bearer_methods_supported": ["header"],
                "resource_name": "Sitequest API",
            }),
            "{path}"
        );
    }
    // Browser-based clients may read the metadata and use the endpoints (no cookie is read).
    let res = client()
        .request(Method::OPTIONS, format!("{base}/oauth/token"))
        .header(ORIGIN, "http://localhost:6274")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "access-control-allow-origin"), Some("*"));
    let res = client()
        .get(format!("{base}/.well-known/oauth-authorization-server"))
        .header(ORIGIN, "http://localhost:6274")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&res, "access-control-allow-origin"), Some("*"));
    // Host names compare without case; an IPv6 address needs its brackets.
    let port = base.rsplit(':').next().unwrap();
    for (host, status) in [
        (format!("LOCALHOST:{port}"), StatusCode::OK),
        ("::1".to_owned(), StatusCode::MISDIRECTED_REQUEST),
        (
            "[::1]@evil.example".to_owned(),
            StatusCode::MISDIRECTED_REQUEST,
        ),
        (
            "[::1]\", error=\"x".to_owned(),
            StatusCode::MISDIRECTED_REQUEST,
        ),
        ("[127.0.0.1]".to_owned(), StatusCode::MISDIRECTED_REQUEST),
    ] {
        let res = client()
            .get(format!("{base}/.well-known/oauth-protected-resource"))
            .header("host", &host)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{host}");
    }
    // A 403 that is not the auth layer's (a page of another site) names no metadata.
    let res = client()
        .post(format!("{base}/mcp"))
        .header(
            "authorization",
            format!(
                "Bearer {}",
                s.create(r#"{"name":"k","preset":"full"}"#).await.1
            ),
        )
        .header(ORIGIN, "http://evil.example")
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.headers().get("www-authenticate").is_none());
    let res = s
        .call(
            Method::GET,
            "/.well-known/oauth-authorization-server",
            None,
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        body(res).await,
        json!({
            "issuer": format!("{base}/"),
            "authorization_endpoint": format!("{base}/dashboard/oauth/authorize"),
            "token_endpoint": format!("{base}/oauth/token"),
            "registration_endpoint": format!("{base}/oauth/register"),
            "scopes_supported": SCOPES,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "token_endpoint_auth_methods_supported": ["none"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": true,
        })
    );
    // A forged Host cannot put another server in the metadata.
    let res = client()
        .get(format!("{base}/.well-known/oauth-protected-resource"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::MISDIRECTED_REQUEST);
}

#[tokio::test]
async fn registration_checks_what_clients_send() {
    let s = Server::start(Quota::SPEC).await;
    let res = register(
        &s,
        json!({"redirect_uris": [CALLBACK], "client_name": "Test agent",
               "token_endpoint_auth_method": "client_secret_post",
               "grant_types": ["authorization_code", "refresh_token"]}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let v = body(res).await;
    assert!(v["client_id"].as_str().unwrap().starts_with("sqc_"));
    assert_eq!(v["client_id_issued_at"], json!(T0 + 10));
    let mut rest = v.as_object().unwrap().clone();
    rest.remove("client_id");
    rest.remove("client_id_issued_at");
    assert_eq!(
        Value::Object(rest),
        json!({"client_name": "Test agent", "redirect_uris": [CALLBACK],
               "grant_types": ["authorization_code"], "response_types": ["code"],
               "token_endpoint_auth_method": "none"})
    );

    let refused = [
        (json!({"client_name": "x"}), "invalid_redirect_uri"),
        (
            json!({"redirect_uris": ["http://example.com/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb#x"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["javascript:alert(1)"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": [CALLBACK, CALLBACK, CALLBACK, CALLBACK, CALLBACK]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": [CALLBACK], "client_name": "n".repeat(129)}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [CALLBACK], "grant_types": ["client_credentials"]}),
            "invalid_client_metadata",
        ),
        (json!(["not", "an", "object"]), "invalid_client_metadata"),
        (
            json!({"redirect_uris": [CALLBACK], "client_name": "Agent\u{202e}gpj.exe"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": (0..4).map(|i| format!("https://a.example/{i}{}", "\"".repeat(480))).collect::<Vec<_>>()}),
            "invalid_client_metadata",
        ),
    ];
    for (sent, error) in refused {
        let res = register(&s, sent.clone()).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{sent}");
        let v = body(res).await;
        assert_eq!(v["error"], error, "{sent}: {v}");
        assert!(v["error_description"].as_str().unwrap().len() < 200);
    }
    let res = client()
        .post(format!("{}/oauth/register", s.base))
        .header("content-type", "application/json")
        .body(vec![b' '; 20_000])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn an_approved_authorization_is_exchanged_once_for_a_key() {
    let s = Server::start(Quota::SPEC).await;
    let client_id = registered(&s).await;
    let session = sign_in(&s).await;

    // The consent page, with the client's name, Read only preselected for a request without
    // scopes, and its redirect's origin allowed as a form target.
    let res = consent_page(&s, &session.0, &authorize_query(&client_id, &[])).await;
    assert_eq!(res.status(), StatusCode::OK);
    let csp = header(&res, "content-security-policy").unwrap().to_owned();
    assert!(
        csp.contains("form-action 'self' http://127.0.0.1:9;"),
        "{csp}"
    );
    let page = res.text().await.unwrap();
    assert!(page.contains("<span id=\"client-name\">Test agent</span>"));
    assert!(page.contains("value=\"read_only\" id=\"access-read_only\"\n      checked"));
    // Keys given to applications end on their own: 30 days unless the person changes it.
    assert!(
        page.contains("value=\"30d\" id=\"expiry-30d\"\n      checked"),
        "{page}"
    );
    // The client's requested scopes are ticked.
    let page = consent_page(
        &s,
        &session.0,
        &authorize_query(&client_id, &[("scope", "vps:read vps:write")]),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(page.contains("value=\"custom\" id=\"access-custom\"\n      checked"));
    assert!(page.contains("value=\"vps:write\" id=\"scope-vps-write\"\n          checked"));

    // Approved: the code goes to the client with its state and the issuer.
    let res = decide(
        &s,
        &session,
        &client_id,
        "approve",
        &[
            ("name", "Test agent"),
            ("expiry", "30d"),
            ("access", "read_only"),
        ],
    )
    .await;
    let q = redirect_query(&res);
    assert_eq!(q["state"], "state-123");
    assert_eq!(q["iss"], format!("{}/", s.base));
    let code = q["code"].clone();
    assert_eq!(code.len(), 43);

    // A wrong verifier spends the code.
    let wrong = "x".repeat(50);
    let exchange = |code: String, verifier: String| {
        let client_id = client_id.clone();
        let s = &s;
        async move {
            token(
                s,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", CALLBACK),
                    ("client_id", &client_id),
                    ("code_verifier", &verifier),
                ],
            )
            .await
        }
    };
    let res = exchange(code.clone(), wrong).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        body(res).await,
        json!({"error": "invalid_grant", "error_description": "the code_verifier does not match the code_challenge"})
    );
    let res = exchange(code, VERIFIER.to_owned()).await;
    assert_eq!(
        body(res).await,
        json!({"error": "invalid_grant", "error_description": "the code is unknown, used or expired"})
    );

    // The right verifier: a key with the chosen scopes and expiry, once.
    let code = approved_code(&s, &session, &client_id).await;
    let res = exchange(code.clone(), VERIFIER.to_owned()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "cache-control"), Some("no-store"));
    assert_eq!(header(&res, "pragma"), Some("no-cache"));
    let v = body(res).await;
    let key = v["access_token"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sq_live_") && key.len() == 72, "{v}");
    assert_eq!(
        v,
        json!({"access_token": key, "token_type": "Bearer", "scope": "vps:read domains:read",
               "expires_in": 30 * 86_400})
    );
    let res = exchange(code, VERIFIER.to_owned()).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // An authorization request that named no redirect URI (the client's only one is used):
    // its exchange may leave it out too, but only then.
    let res = decide(
        &s,
        &session,
        &client_id,
        "approve",
        &[
            ("name", "Second"),
            ("expiry", "none"),
            ("access", "read_only"),
            ("redirect_uri_given", "false"),
        ],
    )
    .await;
    let code = redirect_query(&res)["code"].clone();
    let res = token(
        &s,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &client_id),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let second = body(res).await;
    assert!(second.get("expires_in").is_none(), "{second}");
    let code = approved_code(&s, &session, &client_id).await;
    let res = token(
        &s,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &client_id),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(body(res).await["error"], "invalid_grant");

    // It is a key like any other: its scopes on REST and MCP, listed, revocable.
    let res = s.call(Method::GET, "/v1/servers", Some(&key), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = s
        .call(
            Method::POST,
            "/v1/servers/srv-1001/actions/reboot",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let (_, list) = s.admin(Method::GET, "/admin/v1/keys", None).await;
    let listed = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "Test agent")
        .unwrap()
        .clone();
    assert_eq!(listed["scopes"], json!(["vps:read", "domains:read"]));
    let id = listed["id"].as_str().unwrap().to_owned();
    let (_, activity) = s.admin(Method::GET, "/admin/v1/activity", None).await;
    assert!(
        activity.to_string().contains("\"source\":\"oauth\""),
        "{activity}"
    );
    let (status, _) = s
        .admin(Method::DELETE, &format!("/admin/v1/keys/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let res = s.call(Method::GET, "/v1/servers", Some(&key), None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_consent_page_refuses_what_it_must() {
    let s = Server::start(Quota::SPEC).await;
    let client_id = registered(&s).await;

    // Not signed in: to sign-in, and back here after it; sign-in goes nowhere else.
    let query = authorize_query(&client_id, &[]);
    let res = consent_page(&s, "", &query).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let location = res.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(location.starts_with("/dashboard/login?next=%2Fdashboard%2Foauth%2Fauthorize%3F"));
    let next = format!("/dashboard/oauth/authorize?{query}");
    for (sent, expected) in [
        (next.as_str(), next.as_str()),
        ("https://evil.example/", "/dashboard/settings/api"),
        ("//evil.example/", "/dashboard/settings/api"),
        (
            "/dashboard/oauth/authorize/../../x",
            "/dashboard/settings/api",
        ),
    ] {
        let res = client()
            .post(format!("{}/dashboard/login", s.base))
            .header(ORIGIN, &s.base)
            .form(&[("token", ADMIN), ("next", sent)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()[LOCATION], expected, "{sent}");
    }
    let session = sign_in(&s).await;

    // No client of this server, or a redirect URI it did not register: an error page, never
    // a redirect.
    for query in [
        authorize_query("sqc_forged.AAAA", &[]),
        authorize_query(&client_id, &[("redirect_uri", "http://127.0.0.1:10/other")]),
    ] {
        let res = consent_page(&s, &session.0, &query).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{query}");
        assert!(res.headers().get(LOCATION).is_none());
    }
    // Other errors are a page with a link back to the client carrying the error, never an
    // automatic redirect (anyone may register a client and its redirect URI).
    for (extra, error) in [
        (vec![("code_challenge", "")], "invalid_request"),
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (vec![("scope", "vps:read admin")], "invalid_scope"),
        (
            vec![("resource", "https://other.example/mcp")],
            "invalid_target",
        ),
    ] {
        let res = consent_page(&s, &session.0, &authorize_query(&client_id, &extra)).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{extra:?}");
        assert!(res.headers().get(LOCATION).is_none());
        let page = res.text().await.unwrap();
        let at = page.find("id=\"back-to-client\"").unwrap();
        let href_at = page[..at].rfind("href=\"").unwrap() + 6;
        let href = page[href_at..]
            .split('"')
            .next()
            .unwrap()
            .replace("&#38;", "&");
        let url = url::Url::parse(&href).unwrap();
        assert!(href.starts_with(CALLBACK), "{href}");
        let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(q["error"], error, "{extra:?}");
        assert_eq!(q["state"], "state-123", "{href}");
        assert_eq!(q["iss"], format!("{}/", s.base));
    }
    // A request without a redirect URI is answered at the client's only one, and the form says
    // so, so that the exchange may leave it out too; one that names it must name it again.
    let page = consent_page(
        &s,
        &session.0,
        &authorize_query(&client_id, &[("redirect_uri", "")]),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(
        page.contains(&format!("name=\"redirect_uri\" value=\"{CALLBACK}\"")),
        "{page}"
    );
    assert!(page.contains("name=\"redirect_uri_given\" value=\"false\""));
    let page = consent_page(&s, &session.0, &authorize_query(&client_id, &[]))
        .await
        .text()
        .await
        .unwrap();
    assert!(!page.contains("redirect_uri_given"));
    // A loopback redirect URI may name another port (RFC 8252 §7.3).
    let res = consent_page(
        &s,
        &session.0,
        &authorize_query(
            &client_id,
            &[("redirect_uri", "http://127.0.0.1:5555/callback")],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    // Denied.
    let res = decide(&s, &session, &client_id, "deny", &[]).await;
    let q = redirect_query(&res);
    assert_eq!(q["error"], "access_denied");
    assert!(!q.contains_key("code"));
    // A form with errors is shown again, nothing sent to the client.
    let res = decide(
        &s,
        &session,
        &client_id,
        "approve",
        &[("name", ""), ("expiry", "30d"), ("access", "custom")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let page = res.text().await.unwrap();
    assert!(page.contains("id=\"access-error\""), "{page}");
    // From another site, or without the session's token: refused.
    let res = client()
        .post(format!("{}/dashboard/oauth/authorize", s.base))
        .header(ORIGIN, "https://evil.example")
        .header(COOKIE, &session.0)
        .form(&[
            ("csrf", session.1.as_str()),
            ("client_id", client_id.as_str()),
            ("redirect_uri", CALLBACK),
            ("code_challenge", &challenge(VERIFIER)),
            ("decision", "approve"),
            ("name", "x"),
            ("expiry", "30d"),
            ("access", "full"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_token_endpoint_answers_oauth_errors_and_counts_them() {
    let s = Server::start_configured(tempfile::tempdir().unwrap(), Quota::SPEC, |c| {
        c.unauthenticated_limit = Quota::per_minute(6);
    })
    .await;
    let client_id = registered(&s).await;
    type Form<'a> = Vec<(&'a str, &'a str)>;
    let cases: [(Form, StatusCode, &str); 5] = [
        (
            vec![("grant_type", "refresh_token")],
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            vec![("grant_type", "authorization_code")],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "authorization_code"),
                ("code", "a"),
                ("code", "b"),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "authorization_code"),
                ("code", "a"),
                ("redirect_uri", CALLBACK),
                ("client_id", "sqc_forged.AAAA"),
                ("code_verifier", VERIFIER),
            ],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "authorization_code"),
                ("code", "a"),
                ("redirect_uri", CALLBACK),
                ("client_id", &client_id),
                ("code_verifier", VERIFIER),
                ("resource", "https://other.example/mcp"),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_target",
        ),
    ];
    for (form, status, error) in cases {
        let res = token(&s, &form).await;
        assert_eq!(res.status(), status, "{form:?}");
        assert_eq!(body(res).await["error"], error, "{form:?}");
    }
    // Six refusals a minute from this address (the registration above was not one): the next
    // request is the spec's 429.
    let res = token(&s, &[("grant_type", "password")]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = token(&s, &[("grant_type", "password")]).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        body(res).await,
        json!({"error": "Too many requests", "code": "RATE_LIMITED", "status": 429})
    );
}

const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"test","version":"1"}}"#;

async fn call_tool(
    s: &Server,
    key: &str,
    header_name: Option<&str>,
    tool: &str,
    arguments: &str,
) -> reqwest::Response {
    let mut req = client()
        .post(format!("{}/mcp", s.base))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call");
    if let Some(name) = header_name {
        req = req.header("mcp-name", name);
    }
    req.body(format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"{tool}","arguments":{arguments},{META}}}}}"#
    ))
    .send()
    .await
    .unwrap()
}

#[tokio::test]
async fn the_2026_07_28_headers_decide_the_scope_before_the_body() {
    let s = Server::start(Quota::SPEC).await;
    let (_, read_only) = s
        .create(r#"{"name": "agent", "preset": "read_only"}"#)
        .await;
    let base = &s.base;

    // A tool the key may not use: the spec's 403 with the challenge naming the scope, whatever
    // the body holds (here no body at all).
    let res = client()
        .post(format!("{base}/mcp"))
        .header("authorization", format!("Bearer {read_only}"))
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "reboot_server")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        header(&res, "www-authenticate"),
        Some(format!("Bearer realm=\"sitequest\", error=\"insufficient_scope\", scope=\"vps:write\", resource_metadata=\"{base}/.well-known/oauth-protected-resource/mcp\"").as_str())
    );
    assert_eq!(header(&res, "x-ratelimit-limit"), Some("60"));
    assert_eq!(header(&res, "x-ratelimit-remaining"), Some("59"));
    assert_eq!(
        body(res).await,
        json!({"error": "API key lacks the required scope(s)", "code": "INSUFFICIENT_SCOPE", "status": 403})
    );
    // Base64 as the revision encodes names.
    let res = call_tool(
        &s,
        &read_only,
        Some("=?base64?c3NoX2V4ZWM=?="),
        "ssh_exec",
        "{}",
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // Headers naming an allowed tool over a body calling another: a JSON-RPC error.
    let res = call_tool(
        &s,
        &read_only,
        Some("list_servers"),
        "reboot_server",
        r#"{"server_id":"srv-1001"}"#,
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        body(res).await,
        json!({"jsonrpc": "2.0", "id": 7, "error": {"code": -32020,
               "message": "Mcp-Name header does not match the tool the body calls"}})
    );

    // The allowed tool runs; answers are private to caches.
    let res = call_tool(&s, &read_only, Some("list_servers"), "list_servers", "{}").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "cache-control"), Some("no-store, private"));
    let text = res.text().await.unwrap();
    assert!(text.contains("srv-1001"), "{text}");
}

#[tokio::test]
async fn a_tool_with_its_own_quota_is_refused_past_it() {
    let s = Server::start_configured(tempfile::tempdir().unwrap(), Quota::SPEC, |c| {
        c.mcp_tool_limits = vec![("ssh_exec".to_owned(), Quota::per_minute(2))];
    })
    .await;
    let (_, full) = s.create(r#"{"name": "agent", "preset": "full"}"#).await;
    let args = r#"{"server_id":"srv-1001","command":"uptime"}"#;
    // A 2026-07-28 call without its Mcp-Name header is the transport's error and spends none of
    // the tool's quota.
    let res = call_tool(&s, &full, None, "ssh_exec", args).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(header(&res, "x-ratelimit-limit"), Some("60"));
    for remaining in ["1", "0"] {
        let res = call_tool(&s, &full, Some("ssh_exec"), "ssh_exec", args).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(&res, "x-ratelimit-limit"), Some("2"));
        assert_eq!(header(&res, "x-ratelimit-remaining"), Some(remaining));
        assert_eq!(
            header(&res, "x-ratelimit-reset"),
            Some((T0 + 60).to_string().as_str())
        );
    }
    // Also when only the body names the tool (a client of an earlier revision, which sends no
    // such headers).
    let res = client()
        .post(format!("{}/mcp", s.base))
        .header("authorization", format!("Bearer {full}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(format!(
            r#"{{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{{"name":"ssh_exec","arguments":{args}}}}}"#
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "x-ratelimit-limit"), Some("2"));
    assert_eq!(header(&res, "x-ratelimit-remaining"), Some("0"));
    assert_eq!(header(&res, "retry-after"), Some("50"));
    assert_eq!(
        body(res).await,
        json!({"error": "Too many requests", "code": "RATE_LIMITED", "status": 429})
    );
    // A key without the tool's scope spends nothing of its quota (the tool refuses it).
    let (_, read_only) = s
        .create(r#"{"name": "reader", "preset": "read_only"}"#)
        .await;
    let res = call_tool(&s, &read_only, Some("ssh_exec"), "ssh_exec", args).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(header(&res, "x-ratelimit-limit"), Some("60"));
    // Other tools, and the key's own window, go on.
    let res = call_tool(&s, &full, Some("list_servers"), "list_servers", "{}").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "x-ratelimit-limit"), Some("60"));
    assert_eq!(header(&res, "x-ratelimit-remaining"), Some("55"));
    // The next window gives the tool its quota again.
    s.set_time(T0 + 61);
    let res = call_tool(&s, &full, Some("ssh_exec"), "ssh_exec", args).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "x-ratelimit-remaining"), Some("1"));
}
