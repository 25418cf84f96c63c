//! The real `sitequest-demo` binary: flags, admin token file, hardening, SIGTERM, restart, and
//! the `keys` subcommands.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::process::{field, start, wait_until, BIN};

fn keys_cmd(data: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("--data")
        .arg(data)
        .arg("keys")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn generated_admin_token_hardening_sigterm_restart_and_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo.db");
    let server = start(&data, &["--rate-limit", "100/60"], None);

    // The generated token is printed once and kept in a 0600 file beside the data file.
    let token_file = dir.path().join("demo.db.admin-token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    assert_eq!(
        server.token_line.as_deref(),
        Some(format!("admin token (shown once, kept in its 0600 file): {token}").as_str())
    );
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let (status, created) = server.request(
        "POST",
        "/admin/v1/keys",
        &token,
        r#"{"name":"cli test","preset":"read_only"}"#,
    );
    assert_eq!(status, 201, "{created}");
    let key = field(&created, "key").to_string();
    let id = field(&created, "id").to_string();
    let (status, _) = server.request("GET", "/v1/servers", &key, "");
    assert_eq!(status, 200);

    // Oversized headers, non-UTF-8 bytes and garbage get a 4xx; the server keeps serving.
    let big = format!(
        "GET /v1/servers HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    assert!(server.raw(big.as_bytes()).starts_with("HTTP/1.1 431"));
    let mut odd = b"GET /v1/servers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\xfd\r\nConnection: close\r\n\r\n".to_vec();
    assert!(server.raw(&odd).starts_with("HTTP/1.1 401"));
    odd.truncate(0);
    assert!(server.raw(b"GARBAGE\r\n\r\n").starts_with("HTTP/1.1 400"));
    let (status, _) = server.request("GET", "/v1/domains", &key, "");
    assert_eq!(status, 200);
    let (status, _) = server.request("POST", "/v1/servers", &key, "");
    assert_eq!(status, 403);
    server.terminate();

    // Restart: same token (not printed again), same keys.
    let server = start(&data, &[], None);
    assert_eq!(server.token_line, None);
    let (status, _) = server.request("GET", "/v1/servers", &key, "");
    assert_eq!(status, 200);
    let (status, list) = server.request("GET", "/admin/v1/keys", &token, "");
    assert_eq!(status, 200);
    assert!(list.contains(&id) && list.contains("\"revoked\":false"));
    server.terminate();

    // The keys subcommands work on the data file.
    let listed = keys_cmd(&data, &["list"]);
    assert!(listed.contains(&id) && listed.contains("active") && listed.contains("cli test"));
    let out = keys_cmd(
        &data,
        &["create", "--name", "ops", "--scopes", "vps:write,vps:read"],
    );
    let new_key = out
        .lines()
        .find_map(|l| l.strip_prefix("key: "))
        .unwrap()
        .to_string();
    assert_eq!(keys_cmd(&data, &["revoke", &id]), format!("revoked {id}\n"));

    let server = start(&data, &[], None);
    let (status, _) = server.request("GET", "/v1/servers", &key, "");
    assert_eq!(status, 401);
    let (status, _) = server.request("POST", "/v1/servers/s1/actions/reboot", &new_key, "");
    assert_eq!(status, 202);
    server.terminate();

    // No plaintext key anywhere in the data files.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        assert!(
            !text.contains(&key[8..]) && !text.contains(&new_key[8..]),
            "{}",
            path.display()
        );
    }
}

#[test]
fn bad_flags_are_refused() {
    let out = Command::new(BIN)
        .args(["--rate-limit", "0/60"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rate limit must be N/SECONDS"));
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--data",
        "--rate-limit",
        "127.0.0.1:8080",
        "./sitequest-demo.db",
        "60/60",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn cli_changes_reach_a_running_server_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo.db");
    let token = "cli-admin-token-0123456789";
    let server = start(&data, &[], Some(token));
    let (_, created) = server.request(
        "POST",
        "/admin/v1/keys",
        token,
        r#"{"name":"k","preset":"full"}"#,
    );
    let (id, key) = (
        field(&created, "id").to_owned(),
        field(&created, "key").to_owned(),
    );
    assert_eq!(server.request("GET", "/v1/servers", &key, "").0, 200);

    // Revoked in the data file by the CLI: refused by the running server within a second.
    assert_eq!(keys_cmd(&data, &["revoke", &id]), format!("revoked {id}\n"));
    let took = wait_until("the CLI revocation", Duration::from_secs(1), || {
        server.request("GET", "/v1/servers", &key, "").0 == 401
    });
    println!("key refused {took:?} after the CLI revoked it");

    // A rotation of the revoked key is refused and issues nothing.
    let (status, rotated) = server.request(
        "POST",
        &format!("/admin/v1/keys/{id}/rotate"),
        token,
        r#"{"grace_seconds":3600}"#,
    );
    assert_eq!(status, 409, "{rotated}");
    assert_eq!(
        rotated,
        r#"{"error":"The key is revoked or expired","code":"KEY_NOT_ACTIVE","status":409}"#
    );
    assert_eq!(server.request("GET", "/v1/servers", &key, "").0, 401);

    // Created by the CLI: accepted by the running server within a second.
    let out = keys_cmd(&data, &["create", "--name", "ops", "--preset", "read_only"]);
    let cli_key = out
        .lines()
        .find_map(|l| l.strip_prefix("key: "))
        .unwrap()
        .to_string();
    let took = wait_until("the CLI key", Duration::from_secs(1), || {
        server.request("GET", "/v1/servers", &cli_key, "").0 == 200
    });
    println!("CLI key accepted {took:?} after it was created");
    let (_, list) = server.request("GET", "/admin/v1/keys", token, "");
    assert_eq!(list.matches("\"id\"").count(), 2, "{list}");
    server.terminate();

    let server = start(&data, &[], Some(token));
    assert_eq!(server.request("GET", "/v1/servers", &key, "").0, 401);
    assert_eq!(server.request("GET", "/v1/servers", &cli_key, "").0, 200);
    let (_, list) = server.request("GET", "/admin/v1/keys", token, "");
    assert_eq!(list.matches("\"id\"").count(), 2, "{list}");
    server.terminate();
}

#[test]
fn the_lifetime_policy_applies_to_keys_create() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo.db");
    let create = |args: &[&str]| {
        Command::new(BIN)
            .arg("--data")
            .arg(&data)
            .args([
                "--max-key-lifetime",
                "30d",
                "keys",
                "create",
                "--name",
                "ci",
            ])
            .args(["--preset", "read_only"])
            .args(args)
            .output()
            .unwrap()
    };
    let out = create(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("this server requires keys to expire: give an expiry at most 30 days away"),
        "{err}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let far = (now + 31 * 86_400).to_string();
    let out = create(&["--expires-at", &far]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("expiry is too far away: this server allows keys to live at most 30 days"),
        "{err}"
    );
    // Nothing was written; a key within the cap is.
    assert!(!keys_cmd(&data, &["list"]).contains("ci"));
    let near = (now + 29 * 86_400).to_string();
    let out = create(&["--expires-at", &near]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(keys_cmd(&data, &["list"]).contains("ci"));
    // A malformed lifetime is refused by the flag's parser.
    let out = Command::new(BIN)
        .arg("--data")
        .arg(&data)
        .args(["--max-key-lifetime", "90 days", "keys", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("a lifetime is a positive number"));
}

#[test]
fn keys_list_shows_age_and_last_use_and_filters_unused_keys() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo.db");
    keys_cmd(&data, &["create", "--name", "old", "--preset", "read_only"]);
    let listed = keys_cmd(&data, &["list"]);
    assert!(listed.contains("old"), "{listed}");
    assert!(listed.contains("created 0s ago, never used"), "{listed}");
    // Never used, created over a second ago: unused for a second.
    std::thread::sleep(Duration::from_millis(2100));
    assert!(keys_cmd(&data, &["list", "--unused-since", "1s"]).contains("old"));
    assert!(!keys_cmd(&data, &["list", "--unused-since", "1h"]).contains("old"));
}

#[test]
fn keys_scan_finds_committed_keys_and_revokes_the_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo.db");
    let created = |name: &str| {
        let out = keys_cmd(&data, &["create", "--name", name, "--preset", "read_only"]);
        let key = out
            .lines()
            .find_map(|l| l.strip_prefix("key: "))
            .unwrap()
            .to_owned();
        let id = out
            .lines()
            .find_map(|l| l.strip_prefix("id:  "))
            .unwrap()
            .to_owned();
        (id, key)
    };
    let (live_id, live) = created("live");
    let (dead_id, dead) = created("dead");
    keys_cmd(&data, &["revoke", &dead_id]);
    let tree = dir.path().join("repo");
    std::fs::create_dir_all(tree.join("src/.git")).unwrap();
    std::fs::write(tree.join("README"), "nothing here\n").unwrap();
    std::fs::write(
        tree.join("src/config.env"),
        format!("# deploy\nSQ_KEY={live}\nOLD={dead}\n"),
    )
    .unwrap();
    // A near miss (63 digits), a key inside .git and one in a binary file are not reported.
    std::fs::write(tree.join("src/notes.txt"), format!("{}\n", &live[..71])).unwrap();
    std::fs::write(tree.join("src/.git/ORIG"), format!("{live}\n")).unwrap();
    std::fs::write(
        tree.join("src/blob.bin"),
        [b"\0\0".as_slice(), live.as_bytes()].concat(),
    )
    .unwrap();

    let scan = |extra: &[&str]| {
        Command::new(BIN)
            .arg("--data")
            .arg(&data)
            .args(["keys", "scan"])
            .arg(&tree)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = scan(&[]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let file = tree.join("src/config.env");
    assert_eq!(
        stdout,
        format!(
            "{f}:2: sq_live_…{l4}  LIVE ({live_id})\n{f}:3: sq_live_…{d4}  revoked ({dead_id})\n",
            f = file.display(),
            l4 = &live[68..],
            d4 = &dead[68..],
        )
    );
    assert!(
        !stdout.contains(&live[8..20]),
        "the key is never shown whole"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("found 2 key(s), 1 live"));

    // --revoke revokes the live one; the next scan still fails (keys are committed) but
    // finds none live.
    let out = scan(&["--revoke"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("LIVE, now revoked ({live_id})"))
    );
    let out = scan(&[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("found 2 key(s), 0 live"));

    // A clean tree passes.
    std::fs::remove_file(&file).unwrap();
    let out = scan(&[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn keys_create_takes_an_allowlist_and_activity_names_who_changed_what() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo.db");
    let out = keys_cmd(
        &data,
        &[
            "create",
            "--name",
            "office",
            "--preset",
            "full",
            "--allow-ip",
            "10.0.0.0/8",
            "--allow-ip",
            "2001:db8::/32",
        ],
    );
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("id:  "))
        .unwrap()
        .to_owned();
    let list = keys_cmd(&data, &["list"]);
    assert!(list.contains("from 10.0.0.0/8, 2001:db8::/32"), "{list}");
    keys_cmd(&data, &["revoke", &id]);
    let list = keys_cmd(&data, &["list"]);
    assert!(list.contains(&format!("{id}  revoked by cli")), "{list}");
    let activity = keys_cmd(&data, &["activity"]);
    let lines: Vec<&str> = activity.lines().collect();
    assert_eq!(lines.len(), 2, "{activity}");
    assert!(lines[0].contains(&format!("{id}  revoked")) && lines[0].ends_with("by cli"));
    assert!(lines[1].contains(&format!("{id}  created")) && lines[1].ends_with("by cli"));

    // A malformed range is refused, naming it, and nothing is created.
    let out = Command::new(BIN)
        .arg("--data")
        .arg(&data)
        .args(["keys", "create", "--name", "x", "--preset", "full"])
        .args(["--allow-ip", "10.0.0.0/33"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"10.0.0.0/33\" is not an IP address or CIDR range"),
        "{err}"
    );
    assert_eq!(keys_cmd(&data, &["list"]).lines().count(), 1);
}

/// Issue 21: an admin token shorter than 16 characters stopped the server with a Rust backtrace.
/// Any start-up error is one clear line on standard error and exit status 2.
#[test]
fn a_start_up_error_is_one_line_and_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("demo.db"))
        .env("SITEQUEST_ADMIN_TOKEN", "short")
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "sitequest-demo: the admin token must be at least 16 characters long\n"
    );
    assert!(out.stdout.is_empty());
}
