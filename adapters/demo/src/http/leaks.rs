//! Leaked keys, revoked in seconds by whoever finds them.
//!
//! - `POST /v1/keys/revoke` with `{"keys": ["sq_live_…", …]}` (at most 100): no other
//!   authentication, since holding a key is the proof. Answers `202` and the same body whatever
//!   the keys were (unknown, already revoked or live), so it tells nothing about them; counted
//!   per client address (`--revoke-limit`, 10 a minute by default), with the rate-limit headers
//!   of that window on every answer and a 429 past it.
//! - `POST /v1/secret-scanning/github` (with `--github-scanning-keys`): GitHub's secret scanning
//!   partner program. The signature over the raw body is checked against GitHub's public keys
//!   before anything is read; every live key reported is revoked, and the answer labels each
//!   token `true_positive` (it was live) or `false_positive`.
//!
//! Each revocation is recorded in the data file's activity list with its source
//! (`presentation` or `github_secret_scanning`), and the key list shows who revoked a key.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use sitequest_auth::{ApiKey, LimitDecision, LimitPolicy};
use sitequest_auth_secret_scanning::{parse_payload, KEY_IDENTIFIER_HEADER, SIGNATURE_HEADER};

use crate::http::client::{client_ip, Refusals};
use crate::http::respond::{error, invalid, not_shared, too_many, with_window};
use crate::http::state::AppState;
use crate::service::{ChangeError, Source};

/// Most keys one `POST /v1/keys/revoke` may present.
pub const MAX_PRESENTED: usize = 100;
/// Largest body of `POST /v1/keys/revoke`: 100 keys with room for JSON around them.
pub const MAX_PRESENT_BODY: usize = 16 * 1024;
/// Largest body GitHub's partner endpoint accepts (a batch of up to 1,000 reports).
pub const MAX_GITHUB_BODY: usize = 1024 * 1024;
/// The name of the `POST /v1/keys/revoke` window in the `RateLimit-Policy` and `RateLimit`
/// fields.
pub const REVOKE_POLICY: LimitPolicy = LimitPolicy::KeyRevocation;
/// The one answer of `POST /v1/keys/revoke`, whatever the keys were.
pub const PRESENTED_BODY: &str =
    r#"{"status":202,"message":"Any live key among those presented is now revoked"}"#;

/// The routes, without authentication; GitHub's only when its keys are configured.
pub fn routes(state: AppState) -> Router {
    let mut router = Router::new().route("/v1/keys/revoke", post(present));
    if state.leaks.scanning_keys.is_some() {
        router = router.route("/v1/secret-scanning/github", post(github));
    }
    router.with_state(state)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Presented {
    keys: Vec<String>,
}

/// `POST /v1/keys/revoke`.
async fn present(State(state): State<AppState>, req: Request) -> Response {
    let now = state.now();
    let Some(ip) = client_ip(&state.core, &req) else {
        // Served only with the connection's address; without it nothing can be counted.
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "Client address unknown",
        );
    };
    let window = match state.leaks.revoke_limiter.check(ip, now) {
        LimitDecision::Allowed(w) => w,
        LimitDecision::Limited(w) => return too_many(&w, now),
    };
    let body = match axum::body::to_bytes(req.into_body(), MAX_PRESENT_BODY).await {
        Ok(b) => b,
        Err(_) => {
            let msg = format!("request body is larger than {MAX_PRESENT_BODY} bytes");
            return with_window(invalid(&msg), &window, now);
        }
    };
    let presented: Presented = match serde_json::from_slice(&body) {
        Ok(p) => p,
        // serde's message could quote a key: only the position is given.
        Err(e) => {
            let msg = format!(
                "the body must be {{\"keys\": [\"sq_live_...\", ...]}} (error at line {}, column {})",
                e.line(),
                e.column()
            );
            return with_window(invalid(&msg), &window, now);
        }
    };
    let texts = zeroize::Zeroizing::new(presented.keys);
    if texts.len() > MAX_PRESENTED {
        let msg = format!("at most {MAX_PRESENTED} keys per request");
        return with_window(invalid(&msg), &window, now);
    }
    let keys: Vec<ApiKey> = texts.iter().filter_map(|t| ApiKey::parse(t).ok()).collect();
    let presented: Vec<&ApiKey> = keys.iter().collect();
    match state
        .core
        .keys
        .revoke_presented(&presented, now, Source::Presentation)
        .await
    {
        Ok(live) => {
            for (key, _) in keys.iter().zip(live).filter(|(_, live)| *live) {
                tracing::warn!(key_id = %key.digest().id(), client = %ip, "key revoked by presentation");
            }
        }
        Err(e) => return with_window(not_done(&e), &window, now),
    }
    let mut res = (
        StatusCode::ACCEPTED,
        [("content-type", "application/json")],
        PRESENTED_BODY,
    )
        .into_response();
    window.insert_headers(now, res.headers_mut());
    res
}

/// The answer when a revocation could not be saved, or not yet shared with the other
/// instances: a 503 to retry, never a success that a restart or another instance would undo.
fn not_done(e: &ChangeError) -> Response {
    if matches!(e, ChangeError::NotShared) {
        return not_shared();
    }
    let mut res = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
        "The revocation could not be saved; try again",
    );
    res.headers_mut()
        .insert("retry-after", HeaderValue::from_static("1"));
    res
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `POST /v1/secret-scanning/github`.
///
/// Requests with a bad signature count in the client address's quota of requests without a
/// valid key (the authorizer's), and past it are refused before the body is read; a signed
/// report is never counted.
async fn github(State(state): State<AppState>, req: Request) -> Response {
    let Some(keys) = state.leaks.scanning_keys.clone() else {
        return crate::http::respond::not_found().await;
    };
    let now = state.now();
    let refusals = Refusals::of(&state.core, client_ip(&state.core, &req), now);
    if let Some(window) = refusals.exhausted() {
        return too_many(&window, now);
    }
    let refuse = |message: &str| {
        // Debug, not warn: anyone can send these, as fast as they like.
        tracing::debug!(reason = message, "secret scanning report refused");
        refusals.count(error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message))
    };
    let (parts, body) = req.into_parts();
    let (Some(key_id), Some(signature)) = (
        header(&parts.headers, KEY_IDENTIFIER_HEADER),
        header(&parts.headers, SIGNATURE_HEADER),
    ) else {
        return refuse("Missing GitHub signature headers");
    };
    if !keys.key_identifiers().any(|k| k == key_id) {
        return refuse("Invalid signature");
    }
    let body = match axum::body::to_bytes(Body::new(body), MAX_GITHUB_BODY).await {
        Ok(b) => b,
        Err(_) => {
            // Unsigned as far as anyone can tell: counted as a refusal, so that a flood of
            // megabytes from one address stops at its quota.
            return refusals.count(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                &format!("request body is larger than {MAX_GITHUB_BODY} bytes"),
            ));
        }
    };
    if keys.verify(key_id, signature, &body).is_err() {
        return refuse("Invalid signature");
    }
    let reports = match parse_payload(&body) {
        Ok(r) => r,
        Err(e) => return invalid(e),
    };
    let presented: Vec<&ApiKey> = reports.iter().filter_map(|r| r.key.as_ref()).collect();
    let mut live = match state
        .core
        .keys
        .revoke_presented(&presented, now, Source::GithubSecretScanning)
        .await
    {
        Ok(live) => live.into_iter(),
        // GitHub sends the report again after an error, not after a 2xx: only a revocation
        // every instance enforces is answered with one.
        Err(e) => return not_done(&e),
    };
    let mut verdicts = Vec::with_capacity(reports.len());
    for report in &reports {
        let was_live = report.key.is_some() && live.next().unwrap_or(false);
        if was_live {
            if let Some(key) = &report.key {
                tracing::warn!(
                    key_id = %key.digest().id(),
                    url = report.url.as_deref().unwrap_or(""),
                    "key revoked: GitHub found it public"
                );
            }
        }
        verdicts.push(report.verdict(was_live));
    }
    Json(verdicts).into_response()
}
