//! The real binary as an operator runs it: the Redis URL's sources and redaction, the admin
//! token file's rules, the connection flags, and what is logged at which level.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::process::{Running, BIN};

const TOKEN: &str = "operating-admin-token-0123456789";

/// The binary with a fresh data file and no inherited settings.
fn demo(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["--listen", "127.0.0.1:0", "--data"])
        .arg(dir.join("demo.db"))
        .env_remove("SITEQUEST_ADMIN_TOKEN")
        .env_remove("SITEQUEST_REDIS_URL")
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
        "[default: 60]",
    ] {
        assert!(help.contains(text), "{text} missing from --help:\n{help}");
    }
}
