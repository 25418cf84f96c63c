//! The shared adapter-conformance table (`tests/data/adapter_conformance.json` at the
//! repository root) against the actix middleware in an `HttpServer` on a real socket, driven by
//! an HTTP client; the tower layer is run against the same table.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, App, HttpRequest, HttpServer};
use sitequest_auth::UnixTime;
use sitequest_auth_actix::{AuthMiddleware, AuthenticatedKey, Clock, TimeProvider};

include!("../../../tests/data/adapter_conformance.rs");

use conformance::{run_table, whoami, Fixture};

/// The table's clock: a time that does not move.
struct Fixed(UnixTime);

impl TimeProvider for Fixed {
    fn now(&self) -> UnixTime {
        self.0
    }
}

#[actix_web::test]
async fn every_case_of_the_shared_table() {
    let fixture = Fixture::load();
    let clock: Clock = Arc::new(Fixed(fixture.clock));
    // Built once, here; the server's factory runs on its worker thread and clones them.
    let routes: Vec<(String, Option<AuthMiddleware>)> = fixture
        .routes
        .iter()
        .map(|route| {
            let middleware = route.guard.map(|guard| {
                let middleware = AuthMiddleware::new(fixture.auth.clone(), guard.scopes)
                    .with_clock(clock.clone())
                    .with_limiter_timeout(fixture.limiter_timeout)
                    .with_trusted_proxies(fixture.trusted_proxies())
                    .with_observer(fixture.observer());
                match fixture.limiter(guard.limiter) {
                    Some(limiter) => middleware.with_limiter(limiter),
                    None => middleware,
                }
            });
            (route.path.clone(), middleware)
        })
        .collect();
    let handled = fixture.handled.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = HttpServer::new(move || {
        let mut app = App::new();
        for (path, middleware) in &routes {
            let handled = handled.clone();
            let handler = web::get().to(move |key: AuthenticatedKey, req: HttpRequest| {
                handled.fetch_add(1, Ordering::SeqCst);
                let authorization = req
                    .headers()
                    .get(AUTHORIZATION)
                    .cloned()
                    .expect("a granted key's field");
                async move { whoami(key.id, &key.name, key.scopes, &authorization) }
            });
            let resource = web::resource(path.as_str()).route(handler);
            app = match middleware {
                Some(middleware) => app.service(resource.wrap(middleware.clone())),
                None => app.service(resource),
            };
        }
        app
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    run_table(&base, &fixture).await;
}
