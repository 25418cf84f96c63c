//! The real `sitequest-demo` binary as a child process, spoken to over raw TCP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_sitequest-demo");
/// The sync secret every test server gets through SITEQUEST_SYNC_SECRET.
pub const SYNC_SECRET: &str = "demo-test-sync-secret-0123456789abcdef";

pub struct Running {
    pub child: Child,
    pub addr: String,
    pub token_line: Option<String>,
}

/// Starts the binary on a free port; `admin_token` goes to SITEQUEST_ADMIN_TOKEN.
pub fn start(data: &Path, extra: &[&str], admin_token: Option<&str>) -> Running {
    let mut cmd = Command::new(BIN);
    cmd.args(["--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(extra)
        .env_remove("SITEQUEST_ADMIN_TOKEN")
        .env("SITEQUEST_SYNC_SECRET", SYNC_SECRET)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(t) = admin_token {
        cmd.env("SITEQUEST_ADMIN_TOKEN", t);
    }
    let child = cmd.spawn().unwrap();
    // From here on, Drop kills and reaps the child whatever happens.
    let mut running = Running {
        child,
        addr: String::new(),
        token_line: None,
    };
    let stdout = running.child.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(addr) = line.strip_prefix("listening on http://") {
            running.addr = addr.to_string();
            return running;
        }
        if line.starts_with("admin token") {
            running.token_line = Some(line);
        }
    }
    panic!("server exited before listening");
}

impl Running {
    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit status {status}");
                return;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends raw bytes and returns the raw response.
    pub fn raw(&self, request: &[u8]) -> String {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// One request on its own connection: (status, body).
    pub fn request(&self, method: &str, path: &str, auth: &str, body: &str) -> (u16, String) {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let res = self.raw(req.as_bytes());
        let status = res[9..12].parse().unwrap();
        let body = res.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        (status, body)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A string field of a flat JSON object.
pub fn field<'a>(json: &'a str, name: &str) -> &'a str {
    let start = json.find(&format!("\"{name}\":\"")).unwrap() + name.len() + 4;
    &json[start..start + json[start..].find('"').unwrap()]
}

/// Polls `f` every 5 ms until it holds; fails after `limit`. Returns how long it took.
pub fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}
