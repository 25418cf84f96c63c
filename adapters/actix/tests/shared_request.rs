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

/// Serves one granted request at a resource wrapped by our middleware (marking the
/// `Authorization` value sensitive or not) inside `keep_request`: the status, the remaining
/// count and the body.
async fn served(mark_sensitive: bool) -> (u16, String, String) {
    let store = Arc::new(KeyStore::new());
    let now = UnixTime::from_system_time(SystemTime::now());
    let key = store
        .issue(&NewKey::new("ci", Preset::ReadOnly), now)
        .unwrap();
    let auth = Arc::new(Authorizer::new(store));
    let middleware =
        AuthMiddleware::new(auth, Scopes::VPS_READ).with_sensitive_header(mark_sensitive);
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
    let status = response.status().as_u16();
    let remaining = response
        .headers()
        .get("x-ratelimit-remaining")
        .expect("a granted response has its rate-limit headers")
        .to_str()
        .unwrap()
        .to_owned();
    let body = test::read_body(response).await;
    (status, remaining, String::from_utf8(body.to_vec()).unwrap())
}

#[actix_web::test]
async fn a_request_held_outside_is_served_with_marking_off() {
    assert_eq!(
        served(false).await,
        (200, "59".to_owned(), "true".to_owned())
    );
}

/// What marking off is for: with it on, actix panics on the shared request.
#[actix_web::test]
#[should_panic(expected = "called `Option::unwrap()` on a `None` value")]
async fn a_request_held_outside_panics_in_actix_with_marking_on() {
    let _ = served(true).await;
}
