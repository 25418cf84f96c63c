//! The shared adapter-conformance table (`tests/data/adapter_conformance.json` at the
//! repository root) against the tower layer in an axum app on a real socket, driven by an HTTP
//! client; the actix middleware is run against the same table.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;
use sitequest_auth::UnixTime;
use sitequest_auth_tower::{AuthLayer, AuthenticatedKey, TimeProvider};

include!("../../../tests/data/adapter_conformance.rs");

use conformance::{run_table, whoami, Fixture};

/// The table's clock: a time that does not move.
struct Fixed(UnixTime);

impl TimeProvider for Fixed {
    fn now(&self) -> UnixTime {
        self.0
    }
}

#[tokio::test]
async fn every_case_of_the_shared_table() {
    let fixture = Fixture::load();
    let mut app = Router::new();
    for route in &fixture.routes {
        let handled = fixture.handled.clone();
        let handler = get(move |key: AuthenticatedKey, headers: HeaderMap| {
            handled.fetch_add(1, Ordering::SeqCst);
            let authorization = headers[AUTHORIZATION].clone();
            async move { whoami(key.id, &key.name, key.scopes, &authorization) }
        });
        let handler = match route.guard {
            None => handler,
            Some(guard) => {
                let layer = AuthLayer::new(fixture.auth.clone(), guard.scopes)
                    .with_clock(Arc::new(Fixed(fixture.clock)))
                    .with_limiter_timeout(fixture.limiter_timeout)
                    .with_client_ip(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()))
                    .with_trusted_proxies(fixture.trusted_proxies())
                    .with_observer(fixture.observer());
                let layer = match fixture.limiter(guard.limiter) {
                    Some(limiter) => layer.with_limiter(limiter),
                    None => layer,
                };
                handler.layer(layer)
            }
        };
        app = app.route(&route.path, handler);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    run_table(&base, &fixture).await;
}
