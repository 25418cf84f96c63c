//! The data file under faults, over a real socket: the API keeps answering while another
//! process holds the file locked, a full queue of changes is a 503, rotation re-reads the key in
//! its transaction, and the file, its WAL and its shared-memory index are private.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{header, Server, T0};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sitequest_auth::Quota;
use tokio::sync::oneshot;

/// How long the other connection keeps the file locked.
const HOLD: Duration = Duration::from_secs(3);

/// Takes the data file's write lock from a connection of its own (as another process would,
/// `BEGIN EXCLUSIVE`) and keeps it for `hold`. The receiver completes once the lock is held.
fn lock_data_file(
    path: PathBuf,
    hold: Duration,
) -> (std::thread::JoinHandle<()>, oneshot::Receiver<()>) {
    let (locked, is_locked) = oneshot::channel();
    let thread = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked.send(()).unwrap();
        std::thread::sleep(hold);
        conn.execute_batch("COMMIT").unwrap();
    });
    (thread, is_locked)
}

/// Starts an admin create in the background.
fn spawn_create(s: &Arc<Server>, name: &str) -> tokio::task::JoinHandle<(StatusCode, Value)> {
    let s = s.clone();
    let body = format!(r#"{{"name":"{name}","preset":"full"}}"#);
    tokio::spawn(async move { s.admin(Method::POST, "/admin/v1/keys", Some(&body)).await })
}

async fn get_servers(s: &Server, key: &str) -> StatusCode {
    s.call(Method::GET, "/v1/servers", Some(key), None)
        .await
        .status()
}

/// One thread runs the server, the client and the admin create. Before the data file had a
/// thread of its own, the create's SQLite write waited for the lock on that thread, and the GET
/// waited with it.
#[tokio::test(flavor = "current_thread")]
async fn the_api_answers_while_another_process_holds_the_data_file_locked() {
    let s = Arc::new(Server::start(Quota::SPEC).await);
    let (_, key) = s.create(r#"{"name":"a","preset":"full"}"#).await;
    let (locker, locked) = lock_data_file(s.data(), HOLD);
    locked.await.unwrap();
    let locked_at = Instant::now();

    let create = spawn_create(&s, "made while locked");
    // Time for the create to reach the data file and wait for the lock.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let t = Instant::now();
    assert_eq!(get_servers(&s, &key).await, StatusCode::OK);
    let took = t.elapsed();
    let answered_at = locked_at.elapsed();
    println!("GET /v1/servers answered in {took:?}, {answered_at:?} after the file was locked");
    assert!(took < Duration::from_millis(500), "took {took:?}");
    assert!(
        answered_at < Duration::from_secs(1),
        "answered after {answered_at:?}"
    );
    assert!(
        !create.is_finished(),
        "the create did not wait for the lock"
    );
    let (status, _) = s.admin(Method::GET, "/admin/v1/keys", None).await;
    assert_eq!(status, StatusCode::OK);

    // The create waited for the lock (under the 5 s busy timeout) and then went through.
    let (status, v) = create.await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert!(locked_at.elapsed() >= HOLD - Duration::from_millis(200));
    assert_eq!(
        get_servers(&s, v["key"].as_str().unwrap()).await,
        StatusCode::OK
    );
    locker.join().unwrap();
}

#[tokio::test]
async fn a_full_queue_of_changes_is_a_503_and_the_queued_ones_go_through() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_configured(dir, Quota::SPEC, |c| c.db_queue = 1).await;
    let s = Arc::new(s);
    let (locker, locked) = lock_data_file(s.data(), HOLD);
    locked.await.unwrap();

    // The first create is taken by the data file's thread, which waits for the lock; the second
    // waits in the queue, which is then full.
    let first = spawn_create(&s, "first");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = spawn_create(&s, "second");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let t = Instant::now();
    let res = s
        .call(
            Method::POST,
            "/admin/v1/keys",
            Some(common::ADMIN),
            Some(r#"{"name":"third","preset":"full"}"#),
        )
        .await;
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&res, "retry-after"), Some("1"));
    assert_eq!(
        common::body(res).await,
        json!({"error": "The data file is busy; try again", "code": "SERVICE_UNAVAILABLE", "status": 503})
    );

    for task in [first, second] {
        let (status, v) = task.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{v}");
    }
    locker.join().unwrap();
    let (_, list) = s.admin(Method::GET, "/admin/v1/keys", None).await;
    let mut names: Vec<&str> = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    // Both are created in the same second of the test clock, so the list orders them by id.
    names.sort_unstable();
    assert_eq!(names, ["first", "second"]);
}

fn rows(path: &Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM keys", [], |r| r.get(0))
        .unwrap()
}

/// A revocation committed to the file by another connection, just before a rotation reaches the
/// server (sooner than the server looks for outside changes), still makes the rotation a 409:
/// the rotation reads the key in its own transaction.
#[tokio::test]
async fn rotation_honours_a_revocation_committed_to_the_file_by_another_connection() {
    let s = Server::start(Quota::SPEC).await;
    let (id, key) = s.create(r#"{"name":"a","preset":"full"}"#).await;
    let other = rusqlite::Connection::open(s.data()).unwrap();
    let n = other
        .execute(
            "UPDATE keys SET revoked_at = ?1 WHERE id = ?2",
            rusqlite::params![T0 + 10, id],
        )
        .unwrap();
    assert_eq!(n, 1);

    let (status, v) = s
        .admin(
            Method::POST,
            &format!("/admin/v1/keys/{id}/rotate"),
            Some(r#"{"grace_seconds":3600}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        v,
        json!({"error": "The key is revoked or expired", "code": "KEY_NOT_ACTIVE", "status": 409})
    );
    assert_eq!(get_servers(&s, &key).await, StatusCode::UNAUTHORIZED);
    let (_, list) = s.admin(Method::GET, "/admin/v1/keys", None).await;
    assert_eq!(list["keys"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["keys"][0]["revoked"], true);
    assert_eq!(rows(&s.data()), 1, "a replacement was saved");

    // And after a restart.
    let s = Server::start_in(s.stop().await, Quota::SPEC).await;
    assert_eq!(get_servers(&s, &key).await, StatusCode::UNAUTHORIZED);
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", path.display()))
}

#[tokio::test]
async fn the_data_file_its_wal_and_its_shm_are_private() {
    // A new file, after a write.
    let s = Server::start(Quota::SPEC).await;
    s.create(r#"{"name":"a","preset":"full"}"#).await;
    for suffix in ["", "-wal", "-shm"] {
        let file = with_suffix(&s.data(), suffix);
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }

    // An existing file, WAL and index readable by everyone are narrowed at start.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo.db");
    let other = rusqlite::Connection::open(&data).unwrap();
    other.pragma_update(None, "journal_mode", "WAL").unwrap();
    other
        .execute_batch("CREATE TABLE other (x); INSERT INTO other VALUES (1);")
        .unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let file = with_suffix(&data, suffix);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let s = Server::start_in(dir, Quota::SPEC).await;
    s.create(r#"{"name":"b","preset":"full"}"#).await;
    for suffix in ["", "-wal", "-shm"] {
        let file = with_suffix(&data, suffix);
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    drop(other);
}

/// A data file written before allowlists, shared windows and the activity list opens as it
/// was: its keys load with no allowlist, and the new columns and table are added.
#[tokio::test]
async fn a_data_file_from_before_allowlists_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.db");
    let key = sitequest_auth::ApiKey::generate();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE keys (
                id TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
                scopes TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER,
                revoked_at INTEGER, rate_limit TEXT, last_used_at INTEGER, last4 TEXT NOT NULL
            );",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO keys VALUES (?1, ?2, 'old', 'vps:read', ?3, NULL, NULL, NULL, NULL, ?4)",
            rusqlite::params![
                key.digest().id().to_string(),
                key.digest().to_hex(),
                T0 as i64,
                key.last4().as_str()
            ],
        )
        .unwrap();
    }
    let s = Server::start_in(dir, Quota::SPEC).await;
    let res = s
        .call(Method::GET, "/v1/servers", Some(&key.expose_secret()), None)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let (_, list) = s.admin(Method::GET, "/admin/v1/keys", None).await;
    assert_eq!(list["keys"][0]["allowed_ips"], json!([]));
    let id = key.digest().id().to_string();
    let (status, _) = s
        .admin(
            Method::PATCH,
            &format!("/admin/v1/keys/{id}"),
            Some(r#"{"allowed_ips":["192.0.2.0/24"]}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let res = s
        .call(Method::GET, "/v1/servers", Some(&key.expose_secret()), None)
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

/// A revocation by presentation that the data file cannot save is not reported as done: the
/// answer is a 503 to retry (the key is refused at once meanwhile), and the retry saves it, so
/// that it outlives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsaved_revocation_by_presentation_is_a_503_and_the_retry_saves_it() {
    let s = Server::start(Quota::SPEC).await;
    let (id, key) = s.create(r#"{"name":"leaked","preset":"full"}"#).await;
    // Locked past the busy timeout (5 s), so the save fails.
    let (locker, locked) = lock_data_file(s.data(), Duration::from_secs(7));
    locked.await.unwrap();
    let body = json!({ "keys": [key] }).to_string();
    let res = s
        .call(Method::POST, "/v1/keys/revoke", None, Some(&body))
        .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&res, "retry-after"), Some("1"));
    assert_eq!(
        res.text().await.unwrap(),
        r#"{"error":"The revocation could not be saved; try again","code":"SERVICE_UNAVAILABLE","status":503}"#
    );
    assert_eq!(get_servers(&s, &key).await, StatusCode::UNAUTHORIZED);
    tokio::task::spawn_blocking(move || locker.join().unwrap())
        .await
        .unwrap();
    let res = s
        .call(Method::POST, "/v1/keys/revoke", None, Some(&body))
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let dir = s.stop().await;
    let s = Server::start_in(dir, Quota::SPEC).await;
    assert_eq!(get_servers(&s, &key).await, StatusCode::UNAUTHORIZED);
    let (_, activity) = s.admin(Method::GET, "/admin/v1/activity", None).await;
    assert_eq!(activity["events"][0]["key_id"], id);
    assert_eq!(activity["events"][0]["action"], "revoked");
    assert_eq!(activity["events"][0]["source"], "presentation");
}
