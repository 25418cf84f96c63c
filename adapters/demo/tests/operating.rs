//! The real binary as an operator runs it: the Redis URL's sources and redaction, the admin
//! token file's and the sync secret file's rules, the connection flags, and what is logged at
//! which level.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::process::{Running, BIN};
use sitequest_auth_redis::testing::RedisServer;

const PASSWORD: &str = "s3cretpw";
/// Nothing listens on port 1, so connecting is refused at once.
const UNREACHABLE: &str = "redis://:s3cretpw@127.0.0.1:1/";
const SHOWN: &str = "redis://:***@127.0.0.1:1/";
const TOKEN: &str = "operating-admin-token-0123456789";

/// The binary with a fresh data file and no inherited settings.
fn demo(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["--listen", "127.0.0.1:0", "--data"])
        .arg(dir.join("demo.db"))
        .env_remove("SITEQUEST_ADMIN_TOKEN")
        .env_remove("SITEQUEST_REDIS_URL")
        .env("SITEQUEST_SYNC_SECRET", common::process::SYNC_SECRET)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs a command that must exit by itself within 10 s.
fn exits(mut cmd: Command) -> Output {
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after 10 s; stdout: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Starts a server and returns it with a thread collecting its stderr.
fn serve(mut cmd: Command) -> (Running, std::thread::JoinHandle<String>) {
    let mut child: Child = cmd.spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let stdout = child.stdout.take().unwrap();
    let mut running = Running {
        child,
        addr: String::new(),
        token_line: None,
    };
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line.unwrap();
        if let Some(addr) = line.strip_prefix("listening on http://") {
            running.addr = addr.to_owned();
            return (running, log);
        }
    }
    panic!("server exited before listening: {}", log.join().unwrap());
}

fn assert_redacted_refusal(out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("cannot connect to Redis at {SHOWN}")),
        "{stderr}"
    );
    assert!(
        !stderr.contains(PASSWORD) && !stdout.contains(PASSWORD),
        "{stderr}"
    );
}

#[test]
fn the_redis_password_is_never_shown_whatever_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = demo(dir.path());
    cmd.env("SITEQUEST_ADMIN_TOKEN", TOKEN)
        .args(["--redis", UNREACHABLE]);
    assert_redacted_refusal(&exits(cmd));

    let mut cmd = demo(dir.path());
    cmd.env("SITEQUEST_ADMIN_TOKEN", TOKEN)
        .env("SITEQUEST_REDIS_URL", UNREACHABLE);
    assert_redacted_refusal(&exits(cmd));

    let file = dir.path().join("redis-url");
    std::fs::write(&file, format!("  {UNREACHABLE}\n")).unwrap();
    let mut cmd = demo(dir.path());
    cmd.env("SITEQUEST_ADMIN_TOKEN", TOKEN)
        .arg("--redis-url-file")
        .arg(&file);
    assert_redacted_refusal(&exits(cmd));

    // An explicit source beats the environment; two explicit ones are refused.
    let other = "redis://:envpw@127.0.0.1:2/";
    let mut cmd = demo(dir.path());
    cmd.env("SITEQUEST_ADMIN_TOKEN", TOKEN)
        .env("SITEQUEST_REDIS_URL", other)
        .arg("--redis-url-file")
        .arg(&file);
    assert_redacted_refusal(&exits(cmd));
    let mut cmd = demo(dir.path());
    cmd.env("SITEQUEST_ADMIN_TOKEN", TOKEN)
        .env("SITEQUEST_REDIS_URL", other)
        .args(["--redis", UNREACHABLE]);
    assert_redacted_refusal(&exits(cmd));
    let mut cmd = demo(dir.path());
    cmd.env("SITEQUEST_ADMIN_TOKEN", TOKEN)
        .args(["--redis", other, "--redis-url-file"])
        .arg(&file);
    let out = exits(cmd);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("give either --redis or --redis-url-file, not both"),
        "{stderr}"
    );

    // An empty file is refused, naming the file.
    std::fs::write(&file, "\n").unwrap();
    let mut cmd = demo(dir.path());
    cmd.env("SITEQUEST_ADMIN_TOKEN", TOKEN)
        .arg("--redis-url-file")
        .arg(&file);
    let out = exits(cmd);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("{} is empty", file.display())));

    // A password holding `/` (refused by the URL parser), and a Unix socket's `pass` parameter.
    for (url, shown) in [
        (
            "redis://user:Ab/Cd+Ef==@127.0.0.1:1/",
            "redis://user:***@127.0.0.1:1/",
        ),
        (
            "redis+unix:///nonexistent/redis.sock?db=0&pass=Ab/Cd+Ef==",
            "redis+unix:///nonexistent/redis.sock?db=0&pass=***",
        ),
    ] {
        let mut cmd = demo(dir.path());
        cmd.env("SITEQUEST_ADMIN_TOKEN", TOKEN)
            .args(["--redis", url]);
        let out = exits(cmd);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains(&format!("cannot connect to Redis at {shown}")),
            "{stderr}"
        );
        assert!(!stderr.contains("Ab/Cd+Ef=="), "{stderr}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("Ab/Cd+Ef=="));
    }

    // --help names the variable but never shows its value.
    let out = Command::new(BIN)
        .arg("--help")
        .env("SITEQUEST_REDIS_URL", UNREACHABLE)
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("SITEQUEST_REDIS_URL"), "{help}");
    assert!(!help.contains(PASSWORD), "{help}");
}

#[test]
fn a_token_file_others_may_read_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.db.admin-token");
    std::fs::write(&path, TOKEN).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = exits(demo(dir.path()));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "has mode 0644, so other users may read or change it: run `chmod 600 {}`",
            path.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains(TOKEN), "{stderr}");

    // Fixed as told, it is used.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (server, _) = serve(demo(dir.path()));
    assert_eq!(server.token_line, None);
    assert_eq!(server.request("GET", "/admin/v1/keys", TOKEN, "").0, 200);
    server.terminate();
}

#[test]
fn a_sync_secret_file_others_may_read_stops_the_server() {
    const SECRET: &str = "operating-sync-secret-0123456789abcdef";
    let redis = RedisServer::start();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sync-secret");
    std::fs::write(&path, SECRET).unwrap();
    let with_file = || {
        let mut cmd = demo(dir.path());
        cmd.env("SITEQUEST_ADMIN_TOKEN", TOKEN)
            .env_remove("SITEQUEST_SYNC_SECRET")
            .args(["--redis", &url, "--sync-secret-file"])
            .arg(&path);
        cmd
    };
    for bits in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bits)).unwrap();
        let out = exits(with_file());
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "the sync secret file {p} has mode {bits:04o}, so other users may read or \
                 change it: run `chmod 600 {p}`",
                p = path.display()
            )),
            "{stderr}"
        );
        assert!(!stderr.contains(SECRET), "{stderr}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains(SECRET));
    }

    // Fixed as told, it is used: the instance syncs through Redis and serves.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (server, _) = serve(with_file());
    assert_eq!(server.request("GET", "/readyz", "", "").0, 200);
    assert_eq!(
        server
            .request(
                "POST",
                "/admin/v1/keys",
                TOKEN,
                r#"{"name":"k","preset":"full"}"#
            )
            .0,
        201
    );
    server.terminate();
}

#[test]
fn refusals_are_logged_at_debug_only() {
    for (level, shown) in [("info", false), ("debug", true)] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = demo(dir.path());
        cmd.env("SITEQUEST_ADMIN_TOKEN", TOKEN)
            .env("RUST_LOG", level);
        let (server, log) = serve(cmd);
        assert_eq!(
            server.request("GET", "/v1/servers", "sq_live_00", "").0,
            401
        );
        assert_eq!(server.request("GET", "/admin/v1/keys", "wrong", "").0, 401);
        server.terminate();
        let log = log.join().unwrap();
        // Info lines still get through the non-blocking writer, flushed at exit.
        assert!(log.contains("sitequest-demo ready"), "{log}");
        assert_eq!(log.contains("request refused"), shown, "{level}: {log}");
        assert_eq!(
            log.contains("admin request refused"),
            shown,
            "{level}: {log}"
        );
    }
}

/// `log` without its colours (ANSI escape sequences).
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ parameters m
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The `suppressed=N` field of a log line.
fn suppressed(line: &str) -> u64 {
    let start = line
        .find("suppressed=")
        .unwrap_or_else(|| panic!("no suppressed count in {line:?}"))
        + "suppressed=".len();
    let digits: String = line[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

/// While Redis is down every request used to log a warning (a 503 from the shared limiter, or a
/// fail-open check), so a flood of requests was a flood of log lines. Now at most one a second
/// is logged, with the count of those held back since the previous one.
#[test]
fn limiter_warnings_are_logged_at_most_once_a_second() {
    const BURST: u64 = 40;
    for (policy, status, message) in [
        ("closed", 503, "rate limiter unavailable"),
        (
            "open",
            200,
            "Redis unavailable: using the per-process limit",
        ),
    ] {
        let mut redis = RedisServer::start();
        let url = redis.url();
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = demo(dir.path());
        cmd.env("SITEQUEST_ADMIN_TOKEN", TOKEN)
            .env("RUST_LOG", "warn")
            .args(["--redis", &url, "--redis-failure", policy])
            .args(["--rate-limit", "1000/60"]);
        let (server, log) = serve(cmd);
        let (_, created) = server.request(
            "POST",
            "/admin/v1/keys",
            TOKEN,
            r#"{"name":"k","preset":"full"}"#,
        );
        let key = common::process::field(&created, "key").to_owned();
        redis.stop();

        let start = Instant::now();
        for _ in 0..BURST {
            assert_eq!(server.request("GET", "/v1/servers", &key, "").0, status);
        }
        let burst = start.elapsed();
        // One more after a pause longer than the interval is logged, with the count of all the
        // ones held back since the last line.
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(server.request("GET", "/v1/servers", &key, "").0, status);
        server.terminate();

        let log = plain(&log.join().unwrap());
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(message)).collect();
        // At most one line per second begun during the burst, and the one after the pause.
        assert!(
            !lines.is_empty() && lines.len() as u64 <= burst.as_secs() + 2,
            "{policy}: {} lines for {} requests in {burst:?}:\n{log}",
            lines.len(),
            BURST + 1
        );
        assert!(lines.iter().all(|l| l.contains(" WARN ")), "{log}");
        // Every request is either logged or counted in the next line logged.
        let counted: u64 = lines.iter().map(|l| suppressed(l)).sum();
        assert_eq!(lines.len() as u64 + counted, BURST + 1, "{policy}:\n{log}");
        assert_eq!(suppressed(lines[0]), 0, "{policy}:\n{log}");
    }
}

#[test]
fn connection_limits_come_from_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = demo(dir.path());
    cmd.env("SITEQUEST_ADMIN_TOKEN", TOKEN).args([
        "--max-connections-per-ip",
        "2",
        "--first-byte-timeout",
        "1",
    ]);
    let (server, _) = serve(cmd);
    let open = |s: &mut TcpStream, limit: Duration| -> Option<Duration> {
        let start = Instant::now();
        s.set_read_timeout(Some(limit)).unwrap();
        let mut buf = [0u8; 1];
        match s.read(&mut buf) {
            Ok(0) => Some(start.elapsed()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(start.elapsed()),
            Err(_) => None,
            Ok(_) => panic!("unexpected bytes"),
        }
    };
    let mut a = TcpStream::connect(&server.addr).unwrap();
    let mut b = TcpStream::connect(&server.addr).unwrap();
    let mut c = TcpStream::connect(&server.addr).unwrap();
    // The third from this address is closed at once; the two others after a second of silence.
    assert!(open(&mut c, Duration::from_millis(500)).is_some());
    for s in [&mut a, &mut b] {
        let closed = open(s, Duration::from_secs(3)).expect("silent connection left open");
        assert!(closed < Duration::from_millis(1500), "{closed:?}");
    }
    // A client that has started its request is not cut by the first-byte timeout.
    let mut d = TcpStream::connect(&server.addr).unwrap();
    d.write_all(b"GET /admin/v1/keys HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    assert_eq!(
        open(&mut d, Duration::from_millis(1500)),
        None,
        "a talking client was cut"
    );
    drop(d);
    server.terminate();

    for (flag, value) in [
        ("--max-connections", "0"),
        ("--max-connections-per-ip", "x"),
        ("--idle-timeout", "0"),
        ("--response-timeout", "0"),
    ] {
        let out = exits({
            let mut cmd = demo(dir.path());
            cmd.args([flag, value]);
            cmd
        });
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains(flag));
    }
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for text in [
        "--max-connections <N>",
        "[default: 10000]",
        "--max-connections-per-ip <N>",
        "[default: 256]",
        "--first-byte-timeout <SECONDS>",
        "[default: 10]",
        "--idle-timeout <SECONDS>",
        "--mcp-max-sessions <N>",
        "[default: 1000]",
        "--mcp-max-sessions-per-key <N>",
        "[default: 16]",
        "--response-timeout <SECONDS>",
        "[default: 30]",
        "--redis-url-file <PATH>",
    ] {
        assert!(help.contains(text), "{text} missing from --help:\n{help}");
    }
}
