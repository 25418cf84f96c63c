//! The dashboard over plain HTTP, for what a browser test does not reach cheaply: the key
//! lifetime policy judged by the server (`--max-key-lifetime`), sign-in refusals, cookie
//! attributes, and the headers of every kind of answer. The browser test
//! (`tests/dashboard/test_dashboard.py`, run by `scripts/test-dashboard.sh`) covers the rest.

mod common;

use common::{Server, ADMIN, T0};
use reqwest::header::{COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use reqwest::{redirect, StatusCode};
use sitequest_auth::{KeyPolicy, Quota};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in: the session cookie (`name=value`) and the page's CSRF token.
async fn sign_in(s: &Server, c: &reqwest::Client) -> (String, String) {
    let res = c
        .post(format!("{}/dashboard/login", s.base))
        .header(ORIGIN, &s.base)
        .form(&[("token", ADMIN)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let set = res.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        set.ends_with("; HttpOnly; SameSite=Strict; Path=/dashboard; Max-Age=43200"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
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
    let csrf = page[at..at + 64].to_owned();
    (cookie, csrf)
}

async fn create(
    s: &Server,
    c: &reqwest::Client,
    session: &(String, String),
    expiry: &str,
) -> reqwest::Response {
    c.post(format!("{}/dashboard/settings/api/keys", s.base))
        .header(ORIGIN, &s.base)
        .header(COOKIE, &session.0)
        .form(&[
            ("csrf", session.1.as_str()),
            ("name", "ci"),
            ("access", "read_only"),
            ("expiry", expiry),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_lifetime_policy_applies_to_the_dashboard() {
    let s = Server::start_configured(tempfile::tempdir().unwrap(), Quota::SPEC, |c| {
        c.key_policy =
            KeyPolicy::default().with_max_lifetime(KeyPolicy::parse_lifetime("90d").unwrap());
    })
    .await;
    let c = client();
    let session = sign_in(&s, &c).await;
    for (expiry, message) in [
        (
            "none",
            "This server requires keys to expire: give an expiry at most 90 days away.",
        ),
        (
            "1y",
            "Expiry is too far away: this server allows keys to live at most 90 days.",
        ),
    ] {
        let res = create(&s, &c, &session, expiry).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{expiry}");
        let page = res.text().await.unwrap();
        assert!(
            page.contains(&format!(
                r#"<p class="error" id="expiry-error" role="alert">{message}</p>"#
            )),
            "{expiry}: {page}"
        );
    }
    let res = create(&s, &c, &session, "90d").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/dashboard/settings/api/created");
    let (_, list) = s.admin(reqwest::Method::GET, "/admin/v1/keys", None).await;
    assert_eq!(list["keys"][0]["expires_at"], T0 + 10 + 90 * 86_400);
}

#[tokio::test]
async fn every_dashboard_answer_carries_the_security_headers() {
    let s = Server::start(Quota::SPEC).await;
    let c = client();
    let session = sign_in(&s, &c).await;
    let wrong = c
        .post(format!("{}/dashboard/login", s.base))
        .header(ORIGIN, &s.base)
        .form(&[("token", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    let answers = [
        wrong,
        c.get(format!("{}/dashboard/settings/api", s.base))
            .send()
            .await
            .unwrap(),
        c.get(format!("{}/dashboard/settings/api", s.base))
            .header(COOKIE, &session.0)
            .send()
            .await
            .unwrap(),
        c.get(format!("{}/dashboard/assets/dashboard.css", s.base))
            .send()
            .await
            .unwrap(),
        c.get(format!("{}/dashboard/assets/..%2f..%2fCargo.toml", s.base))
            .send()
            .await
            .unwrap(),
        c.get(format!(
            "{}/dashboard/settings/api/keys/kid_0000000000000000/usage.svg",
            s.base
        ))
        .send()
        .await
        .unwrap(),
        create(&s, &c, &(session.0.clone(), "0".repeat(64)), "none").await,
    ];
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses, [401, 303, 200, 200, 404, 401, 403]);
    for res in &answers {
        let h = res.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
    }
}

/// Issue 18: anyone sharing the admin's address (or every client, behind a proxy that is not
/// trusted) used up the address's quota with wrong tokens, and the admin could no longer sign
/// in. The token is compared first: wrong tokens are refused (429 past the quota), the right
/// one always signs in, and it is not counted.
#[tokio::test]
async fn wrong_tokens_from_the_admins_address_do_not_lock_the_admin_out() {
    let s = Server::start_configured(tempfile::tempdir().unwrap(), Quota::SPEC, |c| {
        c.unauthenticated_limit = Quota::new(3, 60).unwrap();
    })
    .await;
    let c = client();
    let attempt = |token: &'static str| {
        c.post(format!("{}/dashboard/login", s.base))
            .header(ORIGIN, &s.base)
            .form(&[("token", token)])
            .send()
    };
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(attempt("wrong").await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
    // The right token from the same address: signed in, and not counted.
    for _ in 0..3 {
        let res = attempt(ADMIN).await.unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        assert!(res.headers().get(SET_COOKIE).is_some());
    }
    assert_eq!(
        attempt("wrong").await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}
