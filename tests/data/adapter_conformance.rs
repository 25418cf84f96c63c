// The shared reading of `adapter_conformance.json`, `include!`d by the conformance tests of the
// HTTP adapters (`adapters/tower/tests/conformance.rs`, `adapters/actix/tests/conformance.rs`;
// each crate's tests are a crate of their own): the same keys, limiters, requests and checks,
// whichever framework answers. An adapter's test only mounts `Fixture::routes` on a real socket,
// each guarded route with its middleware (the fixture's authorizer, the table's scopes, the
// fixture's limiter, a clock fixed at `Fixture::clock`, the connection's peer address as the
// client's, behind `Fixture::trusted_proxies`) and a handler that counts itself in
// `Fixture::handled` and answers `whoami` of its extracted key and the `Authorization` value it
// was handed; then it calls `run_table`.
//
// The including crate needs `reqwest`, `serde_json` and `sitequest-auth` among its
// dev-dependencies, and a Tokio-based runtime (`#[tokio::test]` or `#[actix_web::test]`).

/// The table's fixture and runner, in a module of their own so that their imports cannot clash
/// with the including test's.
mod conformance {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use serde_json::Value;
    use sitequest_auth::{
        header, AsyncLimiter, Authorizer, IpAllowlist, KeyId, KeyStore, LimitFuture,
        LimiterUnavailable, NewKey, Observer, Preset, Quota, RateLimiter, Scopes, TrustedProxies,
        UnixTime,
    };

    /// The table of cases.
    const TABLE: &str = include_str!("adapter_conformance.json");

    /// In a field of the table: the case key's plaintext.
    const KEY: &str = "{key}";
    /// In an expected body: the case key's id.
    const KEY_ID: &str = "{key_id}";
    /// The field of the requests a case sends before its own, to fill the key's window.
    const PRIOR_FIELD: &str = "Bearer {key}";

    /// Where a guarded route counts its requests.
    #[derive(Debug, Clone, Copy)]
    pub(crate) enum Limiter {
        /// The authorizer's own limiter.
        Local,
        /// An outside limiter that answers.
        Outside,
        /// An outside limiter that is down.
        Down,
        /// An outside limiter that never answers.
        Hang,
    }

    /// What a guarded route requires, and where it counts.
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Guard {
        pub(crate) scopes: Scopes,
        pub(crate) limiter: Limiter,
    }

    /// A route the adapter under test mounts: `GET path`, behind the middleware when `guard` is
    /// set, else bare (its handler's extractor then finds no key).
    #[derive(Debug, Clone)]
    pub(crate) struct Route {
        pub(crate) path: String,
        pub(crate) guard: Option<Guard>,
    }

    /// What the adapter under test is built from, and the keys the cases use.
    pub(crate) struct Fixture {
        /// The authorizer every guarded route uses (default quota and realm).
        pub(crate) auth: Arc<Authorizer>,
        /// The time the adapter's clock must be fixed at.
        pub(crate) clock: UnixTime,
        /// Calls of the routes' handler: each call adds one.
        pub(crate) handled: Arc<AtomicUsize>,
        /// What the middleware's observer was told: (outcome label, status), in order.
        observed: Arc<std::sync::Mutex<Vec<(&'static str, u16)>>>,
        /// The routes to mount.
        pub(crate) routes: Vec<Route>,
        /// How long every guarded route waits for its outside limiter.
        pub(crate) limiter_timeout: std::time::Duration,
        store: Arc<KeyStore>,
        outside: Arc<TableLimiter>,
        down: Arc<TableLimiter>,
        table: Value,
    }

    impl Fixture {
        /// The fixture the table describes, with an empty store.
        pub(crate) fn load() -> Self {
            let table: Value = serde_json::from_str(TABLE).expect("the table is JSON");
            let store = Arc::new(KeyStore::new());
            let routes = table["routes"]
                .as_array()
                .expect("the table's routes")
                .iter()
                .map(route)
                .collect();
            Self {
                auth: Arc::new(Authorizer::new(store.clone())),
                clock: time(&table["clock"]),
                handled: Arc::default(),
                observed: Arc::default(),
                routes,
                limiter_timeout: std::time::Duration::from_millis(
                    table["limiter_timeout_ms"]
                        .as_u64()
                        .expect("the limiter timeout"),
                ),
                store,
                outside: Arc::new(TableLimiter {
                    counts: RateLimiter::new(),
                    down: false,
                }),
                down: Arc::new(TableLimiter {
                    counts: RateLimiter::new(),
                    down: true,
                }),
                table,
            }
        }

        /// The proxies whose `X-Forwarded-For` the middleware must believe: the runner's own
        /// address, so that each case can send from an address of its own.
        pub(crate) fn trusted_proxies(&self) -> TrustedProxies {
            let ranges = self.table["trusted_proxies"]
                .as_array()
                .expect("the trusted proxies")
                .iter()
                .map(|r| r.as_str().expect("a range"));
            TrustedProxies::parse_list(ranges).expect("the table's proxies are ranges")
        }

        /// The observer every guarded route's middleware must be given: the table checks that
        /// it is told of each decision once, with the status the client gets.
        pub(crate) fn observer(&self) -> Observer {
            let observed = self.observed.clone();
            Arc::new(move |outcome| {
                observed
                    .lock()
                    .expect("the observations")
                    .push((outcome.label(), outcome.status()));
            })
        }

        /// The outside limiter a guarded route counts in: `None` for the authorizer's own.
        pub(crate) fn limiter(&self, kind: Limiter) -> Option<Arc<dyn AsyncLimiter>> {
            match kind {
                Limiter::Local => None,
                Limiter::Outside => Some(self.outside.clone() as Arc<dyn AsyncLimiter>),
                Limiter::Down => Some(self.down.clone() as Arc<dyn AsyncLimiter>),
                Limiter::Hang => Some(Arc::new(Hang) as Arc<dyn AsyncLimiter>),
            }
        }

        /// A fresh key of the table's kind `kind` (so that no two cases share a window).
        fn case_key(&self, kind: &str) -> CaseKey {
            if kind == "none" {
                return CaseKey {
                    plaintext: None,
                    id: None,
                };
            }
            let spec = &self.table["keys"][kind];
            assert!(spec.is_object(), "unknown key kind {kind:?}");
            let preset = match spec["preset"].as_str() {
                Some("full") => Preset::Full,
                Some("read_only") => Preset::ReadOnly,
                other => panic!("unknown preset {other:?}"),
            };
            let mut new = NewKey::new(spec["name"].as_str().expect("a key's name"), preset);
            if !spec["expires_at"].is_null() {
                new = new.expires_at(time(&spec["expires_at"]));
            }
            if let Some(list) = spec["allowed_ips"].as_array() {
                let list = list.iter().map(|r| r.as_str().expect("a range"));
                new = new.allowed_ips(IpAllowlist::parse_list(list).expect("the table's ranges"));
            }
            let issued_at = time(&self.table["issued_at"]);
            let issued = if spec["stored"].as_bool() == Some(false) {
                new.generate(issued_at)
            } else {
                self.store.issue(&new, issued_at)
            }
            .expect("the table's keys are valid");
            let id = issued.record.id();
            if !spec["revoked_at"].is_null() {
                self.store
                    .revoke(id, time(&spec["revoked_at"]))
                    .expect("the key is stored");
            }
            CaseKey {
                plaintext: Some(issued.key.expose_secret().as_str().to_owned()),
                id: Some(id),
            }
        }
    }

    /// What every adapter's handler answers: the extracted key's id, name and scopes, then the
    /// `Debug` form of the `Authorization` value the handler was handed (`Sensitive` when the
    /// adapter marked it so, else the key itself).
    pub(crate) fn whoami(
        id: KeyId,
        name: &str,
        scopes: Scopes,
        authorization: &dyn std::fmt::Debug,
    ) -> String {
        format!("{id} {name} {scopes} {authorization:?}")
    }

    /// A response as the runner saw it.
    #[derive(Debug)]
    pub(crate) struct Answer {
        pub(crate) status: u16,
        /// Every header field, in the order received: lower-case name and raw value. A name sent
        /// twice is here twice.
        pub(crate) headers: Vec<(String, Vec<u8>)>,
        pub(crate) body: Vec<u8>,
        /// Whether the route's handler ran.
        pub(crate) handler_ran: bool,
    }

    /// Checks one answer against a case's `expect` (see the table's `about`). `key_id` is the
    /// case key's id, for `{key_id}` in the body. `Err` lists every difference.
    pub(crate) fn check_response(
        table: &Value,
        expect: &Value,
        key_id: Option<KeyId>,
        answer: &Answer,
    ) -> Result<(), String> {
        let mut diffs = Vec::new();
        let want_status = expect["status"].as_u64().expect("a status");
        if u64::from(answer.status) != want_status {
            diffs.push(format!("status {}, expected {want_status}", answer.status));
        }

        let want_headers = expect["headers"].as_object().expect("expected headers");
        let checked: Vec<&str> = table["checked_headers"]
            .as_array()
            .expect("the checked headers")
            .iter()
            .map(|n| n.as_str().expect("a header name"))
            .collect();
        let named: Vec<&str> = want_headers
            .keys()
            .map(String::as_str)
            .filter(|n| !checked.contains(n))
            .collect();
        for name in checked.iter().chain(&named) {
            let got: Vec<&[u8]> = answer
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_slice())
                .collect();
            let want = want_headers
                .get(*name)
                .map(|v| v.as_str().expect("a header value"));
            let as_expected = match want {
                Some(w) => got == [w.as_bytes()],
                None => got.is_empty(),
            };
            if !as_expected {
                let got: Vec<_> = got.iter().map(|v| String::from_utf8_lossy(v)).collect();
                let want = want.map_or_else(|| "none".to_owned(), |w| format!("[{w:?}]"));
                diffs.push(format!("{name}: {got:?}, expected {want}"));
            }
        }

        let want_body = expect["body"].as_str().expect("a body");
        let want_body = if want_body.contains(KEY_ID) {
            let id = key_id.expect("a body naming the key id needs a key");
            want_body.replace(KEY_ID, &id.to_string())
        } else {
            want_body.to_owned()
        };
        if answer.body != want_body.as_bytes() {
            let got = String::from_utf8_lossy(&answer.body);
            diffs.push(format!("body {got:?}, expected {want_body:?}"));
        }

        let want_ran = expect["handler_ran"].as_bool().expect("handler_ran");
        if answer.handler_ran != want_ran {
            diffs.push(format!(
                "the handler ran: {}, expected {want_ran}",
                answer.handler_ran
            ));
        }
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(diffs.join("\n"))
        }
    }

    /// Runs every case of the table against the adapter serving the fixture's routes at `base`
    /// (`http://127.0.0.1:<port>`), and fails with every difference of every failing case.
    pub(crate) async fn run_table(base: &str, fixture: &Fixture) {
        let table = &fixture.table;
        check_table(table);
        // A case the adapter never answers fails instead of hanging the test.
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .expect("an HTTP client");
        let cases = table["cases"].as_array().expect("the table's cases");
        assert!(cases.len() >= 30);
        let mut failures = Vec::new();
        for (i, case) in cases.iter().enumerate() {
            let name = case["name"].as_str().expect("a case's name");
            let key = fixture.case_key(case["key"].as_str().expect("a case's key kind"));
            let route = case["route"].as_str().expect("a case's route");
            let prior = case["prior"].as_u64().unwrap_or(0);
            let from = match case["forwarded_for"].as_str() {
                Some(from) => from.to_owned(),
                None => format!("198.51.100.{}", i + 1),
            };
            if prior > 0 {
                let prior_route = case["prior_route"].as_str().unwrap_or(route);
                let prior_status = case["prior_status"].as_u64();
                let prior_field = case["prior_authorization"].as_str().unwrap_or(PRIOR_FIELD);
                let fields = [field(prior_field, &key)];
                for i in 0..prior {
                    let status = send(&client, base, prior_route, &from, &fields)
                        .await
                        .status()
                        .as_u16();
                    assert!(
                        prior_status.map_or(matches!(status, 200 | 403), |s| u64::from(status) == s),
                        "{name}: prior request {i} got {status}, which is not counted"
                    );
                }
            }
            let fields: Vec<Vec<u8>> = case["authorization"]
                .as_array()
                .expect("a case's Authorization fields")
                .iter()
                .map(|f| field(f.as_str().expect("a field"), &key))
                .collect();
            let before = fixture.handled.load(Ordering::SeqCst);
            fixture.observed.lock().expect("the observations").clear();
            let res = send(&client, base, route, &from, &fields).await;
            let status = res.status().as_u16();
            let headers = res
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                .collect();
            let body = res.bytes().await.expect("the body").to_vec();
            let answer = Answer {
                status,
                headers,
                body,
                handler_ran: fixture.handled.load(Ordering::SeqCst) != before,
            };
            // The observer is told once, with the status the client got (a grant's 200), by a
            // guarded route; an unguarded one has no middleware to tell it.
            let observed = std::mem::take(&mut *fixture.observed.lock().expect("the observations"));
            let expected_observation = match (answer.status, route.starts_with("/unguarded")) {
                (_, true) => vec![],
                (200, _) => vec![("granted", 200)],
                (503, _) => vec![("unavailable", 503)],
                (status, _) => vec![("denied", status)],
            };
            if observed != expected_observation {
                failures.push(format!(
                    "{name}: the observer was told {observed:?}, not {expected_observation:?}"
                ));
            }
            if let Err(diff) = check_response(table, &case["expect"], key.id, &answer) {
                failures.push(format!("{name}:\n{diff}"));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} cases failed:\n\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n\n")
        );
    }

    /// The key a case sends: its plaintext and id; neither for the kind `none`.
    struct CaseKey {
        plaintext: Option<String>,
        id: Option<KeyId>,
    }

    fn route(r: &Value) -> Route {
        let path = r["path"].as_str().expect("a route's path").to_owned();
        let limiter = match r["limiter"].as_str().expect("a route's limiter") {
            "none" => return Route { path, guard: None },
            "local" => Limiter::Local,
            "outside" => Limiter::Outside,
            "down" => Limiter::Down,
            "hang" => Limiter::Hang,
            other => panic!("unknown limiter {other:?}"),
        };
        let scopes = r["scopes"].as_str().expect("a guarded route's scopes");
        let scopes = Scopes::parse_list(scopes).expect("the table's scopes are names");
        Route {
            path,
            guard: Some(Guard { scopes, limiter }),
        }
    }

    fn time(v: &Value) -> UnixTime {
        UnixTime::from_secs(v.as_u64().expect("a time in Unix seconds"))
    }

    /// A field of the table as bytes: the key for `{key}`, the byte 0xHH for `\xHH`.
    fn field(template: &str, key: &CaseKey) -> Vec<u8> {
        let text = if template.contains(KEY) {
            let plaintext = key
                .plaintext
                .as_deref()
                .expect("a field with the key needs one");
            template.replace(KEY, plaintext)
        } else {
            template.to_owned()
        };
        let mut bytes = Vec::with_capacity(text.len());
        let mut rest = text.as_bytes();
        while let Some((&b, tail)) = rest.split_first() {
            match tail {
                [b'x', hi, lo, after @ ..] if b == b'\\' => {
                    let digits = [*hi, *lo];
                    let digits = std::str::from_utf8(&digits).expect("\\x takes two hex digits");
                    bytes.push(u8::from_str_radix(digits, 16).expect("\\x takes two hex digits"));
                    rest = after;
                }
                _ => {
                    bytes.push(b);
                    rest = tail;
                }
            }
        }
        bytes
    }

    async fn send(
        client: &reqwest::Client,
        base: &str,
        path: &str,
        from: &str,
        fields: &[Vec<u8>],
    ) -> reqwest::Response {
        let mut request = client
            .get(format!("{base}{path}"))
            .header("x-forwarded-for", from);
        for f in fields {
            // Appended, not replaced: two entries are two fields.
            let value = reqwest::header::HeaderValue::from_bytes(f).expect("a field HTTP allows");
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        request.send().await.expect("the adapter answers")
    }

    /// The table against itself: its header names are core's, and its time-dependent values
    /// follow the rules of its `about`.
    fn check_table(table: &Value) {
        let core = [
            header::X_RATELIMIT_LIMIT,
            header::X_RATELIMIT_REMAINING,
            header::X_RATELIMIT_RESET,
            header::RATELIMIT_POLICY,
            header::RATELIMIT,
            header::RETRY_AFTER,
            header::WWW_AUTHENTICATE,
        ]
        .map(str::to_ascii_lowercase);
        let checked: Vec<String> = table["checked_headers"]
            .as_array()
            .expect("the checked headers")
            .iter()
            .map(|n| n.as_str().expect("a header name").to_owned())
            .collect();
        assert_eq!(checked, core, "checked_headers are core's header names");

        fn get<'a>(headers: &'a Value, name: &str) -> Option<&'a str> {
            headers[name].as_str()
        }
        let clock = table["clock"].as_u64().expect("the clock");
        for case in table["cases"].as_array().expect("the table's cases") {
            let name = case["name"].as_str().expect("a case's name");
            let status = case["expect"]["status"].as_u64().expect("a status");
            let h = &case["expect"]["headers"];
            if let Some(policy) = get(h, "ratelimit-policy") {
                // A key's window for a grant, a 403 of its scopes or its 429; else the client
                // address's.
                let by_key = status == 200
                    || case["expect"]["body"]
                        .as_str()
                        .is_some_and(|b| b.contains("INSUFFICIENT_SCOPE"))
                    || (status == 429 && case["prior_status"].is_null());
                let policy_name = if by_key { "default" } else { "unauthenticated" };
                let (q, w) = policy
                    .strip_prefix(&format!("\"{policy_name}\";q="))
                    .and_then(|p| p.split_once(";w="))
                    .unwrap_or_else(|| panic!("{name}: a policy \"{policy_name}\";q=Q;w=W"));
                let w: u64 = w.parse().expect("a window length");
                let reset = (clock / w + 1) * w;
                let t = reset - clock;
                let r = get(h, "x-ratelimit-remaining").expect("remaining with a policy");
                assert_eq!(get(h, "x-ratelimit-limit"), Some(q), "{name}");
                assert_eq!(
                    get(h, "x-ratelimit-reset"),
                    Some(reset.to_string().as_str()),
                    "{name}"
                );
                assert_eq!(
                    get(h, "ratelimit"),
                    Some(format!("\"{policy_name}\";r={r};t={t}").as_str()),
                    "{name}"
                );
                if status == 429 {
                    assert_eq!(
                        get(h, "retry-after"),
                        Some(t.max(1).to_string().as_str()),
                        "{name}"
                    );
                }
            }
            if status == 503 {
                assert_eq!(get(h, "retry-after"), Some("1"), "{name}");
            }
            // Every refusal before the key's own window is counted in the address's.
            let before_key_window = status == 401
                || case["expect"]["body"]
                    .as_str()
                    .is_some_and(|b| b.contains("IP_NOT_ALLOWED"));
            if before_key_window {
                assert!(get(h, "ratelimit-policy").is_some(), "{name}: no window");
            }
        }
    }

    /// The table's outside limiters: one counting in a limiter of its own, one that is down.
    /// Each answers after one wake-up, so that the adapter's waiting state is exercised.
    struct TableLimiter {
        counts: RateLimiter,
        down: bool,
    }

    impl AsyncLimiter for TableLimiter {
        fn check(self: Arc<Self>, key: KeyId, quota: Quota, now: UnixTime) -> LimitFuture<'static> {
            Box::pin(async move {
                YieldOnce(false).await;
                if self.down {
                    return Err(LimiterUnavailable {
                        reason: "the table's outside limiter is down".to_owned(),
                    });
                }
                Ok(self.counts.check(key, quota, now))
            })
        }
    }

    /// An outside limiter that never answers.
    struct Hang;

    impl AsyncLimiter for Hang {
        fn check(self: Arc<Self>, _: KeyId, _: Quota, _: UnixTime) -> LimitFuture<'static> {
            Box::pin(std::future::pending())
        }
    }

    /// Pending once (waking itself), then ready: an answer that is not immediate.
    struct YieldOnce(bool);

    impl Future for YieldOnce {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                return Poll::Ready(());
            }
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}
