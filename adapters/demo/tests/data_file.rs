//! The data file over a real socket: the file, its WAL and its shared-memory index are private.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::Server;
use sitequest_auth::Quota;

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
