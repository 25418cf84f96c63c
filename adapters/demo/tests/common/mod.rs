//! Shared helpers: an in-process server on a real socket with a clock the test controls.
#![allow(dead_code, unreachable_pub)]

pub mod process;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use sitequest_auth::{Quota, UnixTime};
use sitequest_demo::{Config, Demo};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A multiple of 60: the start of a rate-limit window.
pub const T0: u64 = 1_800_000_000;
pub const ADMIN: &str = "test-admin-token-0123456789";

pub struct Server {
    pub base: String,
    pub clock: Arc<AtomicU64>,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    pub async fn start(quota: Quota) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), quota).await
    }

    pub async fn start_in(dir: tempfile::TempDir, quota: Quota) -> Self {
        Self::start_configured(dir, quota, |_| {}).await
    }

    /// As [`Server::start_in`], with `configure` changing the configuration last.
    pub async fn start_configured(
        dir: tempfile::TempDir,
        quota: Quota,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        let clock = Arc::new(AtomicU64::new(T0 + 10));
        let c = clock.clone();
        let mut config = Config::new(
            "127.0.0.1:0".parse().unwrap(),
            dir.path().join("demo.db"),
            quota,
        );
        config.admin_token = Some(ADMIN.to_string());
        config.clock = Arc::new(move || UnixTime::from_secs(c.load(Ordering::SeqCst)));
        configure(&mut config);
        let demo = Demo::bind(config).await.unwrap();
        let addr = demo.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(demo.serve(async {
            let _ = rx.await;
        }));
        Self {
            base: format!("http://{addr}"),
            clock,
            client: reqwest::Client::new(),
            dir,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the server gracefully and returns its data directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    /// The data file.
    pub fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("demo.db")
    }

    pub fn set_time(&self, t: u64) {
        self.clock.store(t, Ordering::SeqCst);
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(a) = auth {
            req = req.header("authorization", format!("Bearer {a}"));
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        req.send().await.unwrap()
    }

    pub async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let res = self.call(method, path, Some(ADMIN), body).await;
        let status = res.status();
        let text = res.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, v)
    }

    /// Creates a key and returns (id, plaintext key).
    pub async fn create(&self, body: &str) -> (String, String) {
        let (status, v) = self.admin(Method::POST, "/admin/v1/keys", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        (
            v["id"].as_str().unwrap().to_string(),
            v["key"].as_str().unwrap().to_string(),
        )
    }
}

pub fn header<'a>(res: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    res.headers().get(name).map(|v| v.to_str().unwrap())
}

pub async fn body(res: reqwest::Response) -> Value {
    serde_json::from_str(&res.text().await.unwrap()).unwrap()
}
