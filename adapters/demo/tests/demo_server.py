"""Shared by the Python tests of the demo server (the MCP SDK's and the browser's): start the built
binary on a free port with its own data file, stop it, and send plain HTTP requests."""

import contextlib
import os
import re
import subprocess
import tempfile
import time
import urllib.error
import urllib.request


@contextlib.contextmanager
def running(binary, admin_token, *args):
    """Runs `binary` on 127.0.0.1 (a free port) with a fresh data file; yields its base URL."""
    data = tempfile.mkdtemp()
    env = dict(os.environ, SITEQUEST_ADMIN_TOKEN=admin_token, RUST_LOG="warn")
    server = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--data", os.path.join(data, "demo.db"), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
    )
    try:
        base = None
        deadline = time.time() + 30
        while base is None and time.time() < deadline:
            line = server.stdout.readline()
            if not line and server.poll() is not None:
                break
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                base = m.group(1)
        if base is None:
            raise SystemExit("FAIL the server did not start")
        print("ok   the server starts", flush=True)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def http(base, method, path, token=None, body=None, headers=None, follow=True):
    """One HTTP request: (status, headers, body text). `body` may be bytes, text or JSON-able."""
    if body is None or isinstance(body, bytes):
        data = body
    elif isinstance(body, str):
        data = body.encode()
    else:
        import json

        data = json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None and not (headers and "Content-Type" in headers):
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    opener = urllib.request.build_opener() if follow else urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(req, timeout=10) as res:
            return res.status, res.headers, res.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()
