//! A middleware outside ours that holds a clone of the request across the call: actix's
//! `ServiceRequest::headers_mut` panics on such a request, so marking the `Authorization` value
//! sensitive can be turned off for it.

use std::sync::Arc;
use std::time::SystemTime;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::AUTHORIZATION;
use actix_web::middleware::{from_fn, Next};
use actix_web::{test, web, App, Error, HttpRequest};
use sitequest_auth::{Authorizer, KeyStore, NewKey, Preset, Scopes, UnixTime};
use sitequest_auth_actix::AuthMiddleware;

/// Keeps a clone of the request until the inner services have answered (for logging it after).
async fn keep_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let kept = req.request().clone();
    let response = next.call(req).await;
    drop(kept);
    response
}

#[actix_web::test]
async fn a_request_held_outside_is_served_with_marking_off() {
    let store = Arc::new(KeyStore::new());
    let now = UnixTime::from_system_time(SystemTime::now());
    let key = store
        .issue(&NewKey::new("ci", Preset::ReadOnly), now)
        .unwrap();
    let auth = Arc::new(Authorizer::new(store));
    let middleware = AuthMiddleware::new(auth, Scopes::VPS_READ).with_sensitive_header(false);
    let app = test::init_service(
        App::new().service(
            web::resource("/r")
                .wrap(middleware)
                .wrap(from_fn(keep_request))
                .to(|req: HttpRequest| async move {
                    format!("{:?}", req.headers().get(AUTHORIZATION).is_some())
                }),
        ),
    )
    .await;
    let request = test::TestRequest::get()
        .uri("/r")
        .insert_header((
            AUTHORIZATION,
            format!("Bearer {}", key.key.expose_secret().as_str()),
        ))
        .to_request();
    let response = test::call_service(&app, request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("x-ratelimit-remaining").unwrap(),
        "59"
    );
    assert_eq!(test::read_body(response).await, "true");
}
