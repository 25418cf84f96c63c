//! MCP sessions are bounded without ever closing a live one (issue 18): past the per-key or the
//! total limit a new session is refused, with its reason, while every open session keeps
//! working; a session leaves the count when its client ends it or it stays silent too long.

mod common;

use std::time::Duration;

use common::Server;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sitequest_auth::Quota;
use sitequest_demo::mcp::SessionLimits;

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}"#;

async fn post(s: &Server, key: &str, session: Option<&str>, body: &str) -> reqwest::Response {
    let mut req = s
        .client
        .post(format!("{}/mcp", s.base))
        .header("authorization", format!("Bearer {key}"))
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(id) = session {
        req = req.header("mcp-session-id", id);
    }
    req.send().await.unwrap()
}

/// Opens a session: its id, or the refusal's status and JSON body.
async fn open(s: &Server, key: &str) -> Result<String, (StatusCode, Value)> {
    let res = post(s, key, None, INITIALIZE).await;
    if res.status() != StatusCode::OK {
        let status = res.status();
        return Err((
            status,
            serde_json::from_str(&res.text().await.unwrap()).unwrap(),
        ));
    }
    let id = res.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let _ = res.text().await;
    let ready = post(
        s,
        key,
        Some(&id),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!(ready.status(), StatusCode::ACCEPTED);
    Ok(id)
}

/// Whether the session still answers its key.
async fn works(s: &Server, key: &str, session: &str) -> bool {
    let res = post(
        s,
        key,
        Some(session),
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    )
    .await;
    let ok = res.status() == StatusCode::OK;
    let _ = res.text().await;
    ok
}

fn refusal(status: StatusCode, message: &str) -> Result<String, (StatusCode, Value)> {
    Err((
        status,
        json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32000, "message": message}}),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_past_a_limit_are_refused_and_live_ones_are_never_evicted() {
    let s = Server::start_configured(tempfile::tempdir().unwrap(), Quota::per_minute(1000), |c| {
        c.mcp_sessions = SessionLimits {
            total: 4,
            per_key: 2,
            idle: Duration::from_secs(2),
        };
    })
    .await;
    let full = r#"{"name":"k","preset":"full"}"#;
    let (_, a) = s.create(full).await;
    let (_, b) = s.create(full).await;
    let (_, c) = s.create(full).await;

    let a1 = open(&s, &a).await.unwrap();
    let a2 = open(&s, &a).await.unwrap();
    assert_eq!(
        open(&s, &a).await,
        refusal(
            StatusCode::TOO_MANY_REQUESTS,
            "this key has 2 MCP sessions open, the most allowed: end one (DELETE) or let one expire"
        )
    );
    let b1 = open(&s, &b).await.unwrap();
    let _b2 = open(&s, &b).await.unwrap();
    assert_eq!(
        open(&s, &c).await,
        refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server has 4 MCP sessions open, the most allowed: try again later"
        )
    );
    // Nobody's live session was closed to make room.
    for (key, session) in [(&a, &a1), (&a, &a2), (&b, &b1)] {
        assert!(works(&s, key, session).await);
    }
    // Ending one gives its place back.
    let ended = s
        .client
        .delete(format!("{}/mcp", s.base))
        .header("authorization", format!("Bearer {a}"))
        .header("mcp-session-id", &a1)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), StatusCode::NO_CONTENT);
    assert!(!works(&s, &a, &a1).await);
    let c1 = open(&s, &c).await.unwrap();
    assert!(works(&s, &c, &c1).await);

    // Silent sessions close by themselves, and leave the count.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!works(&s, &b, &b1).await);
    for key in [&a, &a, &c, &c] {
        open(&s, key).await.unwrap();
    }
}
