//! A flood of forged entries in the shared hash or on the change channel does not flood the log
//! (issue 18: 200,000 bad hash entries wrote 31 MB of warnings per instance per minute, one line
//! per entry per resync). Its own test binary: it installs the process's log subscriber.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sitequest_auth::KeyStore;
use sitequest_auth_redis::testing::RedisServer;
use sitequest_auth_redis::{KeySync, KeySyncConfig, SyncSecret};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_entries_are_skipped_with_one_summary_line() {
    let log = Captured::default();
    let writer = log.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .unwrap();

    let redis = RedisServer::start();
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut pipe = redis::pipe();
    for i in 0..5_000_u64 {
        pipe.hset(
            "flood:records",
            format!("kid_{i:016x}"),
            "00.{\"forged\":true}",
        )
        .ignore();
    }
    let () = pipe.query_async(&mut conn).await.unwrap();

    let mut config =
        KeySyncConfig::new(SyncSecret::new(b"flood-test-secret-0123456789abcdef").unwrap());
    config.prefix = "flood".to_owned();
    config.resync_interval = Duration::from_millis(200);
    let sync = Arc::new(KeySync::connect(&redis.url(), config).await.unwrap());
    sync.clone().spawn(Arc::new(KeyStore::new()), |_| {});
    let started = Instant::now();
    while sync.stats().resyncs < 5 {
        assert!(started.elapsed() < Duration::from_secs(20), "no resyncs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..1_000 {
        let _: i64 = redis::cmd("PUBLISH")
            .arg("flood:changes")
            .arg("00.{\"forged\":true}")
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    while sync.stats().rejected_signature < 5 * 5_000 + 1_000 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            sync.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("not signed")).collect();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].contains("unsigned=5000"), "{}", lines[0]);
    // Skipped: nothing was applied, and the entries are left to whoever wrote them.
    assert_eq!(sync.stats().applied, 0);
    let left: usize = redis::cmd("HLEN")
        .arg("flood:records")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 5_000);
}
