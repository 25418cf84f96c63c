"""OAuth for MCP clients end to end, with clients we did not write: the official Python SDK's OAuth
client (`mcp` on PyPI) finds the authorization server from `/mcp`'s challenge, registers, sends the
person to the dashboard's consent page, which a real headless Chromium approves over WebDriver,
exchanges the code and calls tools with the key it got; a tool its key's scopes do not allow sends
it through a second approval (step-up) with more access. Beside it, on the same endpoint, a static
key.

Run by scripts/test-dashboard.sh:
    python test_oauth.py PATH/TO/sitequest-demo SCREENSHOT_DIR
Each check prints its name; the first failure ends the run with status 1 (and a screenshot).
"""

import asyncio
import http.server
import json
import os
import re
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from demo_server import http as request, running  # noqa: E402

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientMetadata

ADMIN = "oauth-test-admin-token-0123456789"
KEY_RE = re.compile(r"sq_live_[0-9a-f]{64}")
READ_TOOLS = ["list_servers", "get_server", "get_server_metrics", "list_domains", "get_dns"]

driver = None
shots = None
step = [0]


def shot(name):
    step[0] += 1
    path = os.path.join(shots, f"oauth-{step[0]:02d}-{name}.png")
    driver.save_screenshot(path)
    return path


def check(name, ok, detail=""):
    if not ok:
        print(f"FAIL {name}: {detail}", flush=True)
        if driver is not None:
            try:
                print("     screenshot:", shot("failure"), flush=True)
            except Exception:
                pass
        raise SystemExit(1)
    print(f"ok   {name}", flush=True)


class Callback:
    """The client's redirect URI: a local HTTP server that keeps the query it is sent."""

    def __init__(self):
        self.queries = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                url = urllib.parse.urlparse(self.path)
                if url.path == "/callback":
                    outer.queries.append(dict(urllib.parse.parse_qsl(url.query)))
                body = b"<!doctype html><title>Done</title><p id='done'>You can close this window.</p>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/callback"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    async def next_query(self, seen):
        deadline = time.time() + 30
        while len(self.queries) <= seen:
            if time.time() > deadline:
                raise RuntimeError("the browser never reached the callback")
            await asyncio.sleep(0.05)
        return self.queries[seen]


class Memory:
    """The SDK's token storage, in memory."""

    def __init__(self):
        self.tokens = None
        self.client = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, client_info):
        self.client = client_info


def person_decides(url, decision, access):
    """What the person does in the browser: opens the authorization URL, signs in if asked,
    reads the consent page and approves with `access`, or denies."""
    driver.get(url)
    if driver.current_url.split("?")[0].endswith("/dashboard/login"):
        driver.find_element(By.ID, "token").send_keys(ADMIN)
        driver.find_element(By.ID, "sign-in").click()
    WebDriverWait(driver, 15).until(lambda d: d.find_elements(By.ID, "consent-form"))
    name = driver.find_element(By.ID, "client-name").text
    check("the consent page names the client", name == "Test agent", name)
    check("the consent page says where the key is sent",
          driver.find_element(By.ID, "redirect-to").text == "http://127.0.0.1", driver.page_source[:500])
    shot(f"consent-{decision}")
    if decision == "approve":
        driver.find_element(By.ID, f"access-{access}").click()
        driver.find_element(By.ID, "expiry-30d").click()
        driver.find_element(By.ID, "approve").click()
    else:
        driver.find_element(By.ID, "deny").click()
    WebDriverWait(driver, 15).until(lambda d: d.current_url.startswith("http://127.0.0.1:")
                                    and "/callback" in d.current_url)
    holds = KEY_RE.search(driver.current_url) or KEY_RE.search(driver.page_source)
    check("no key reaches the browser (only a code)", holds is None, driver.current_url)


def provider_for(base, callback, decisions):
    """An SDK OAuth client whose person makes `decisions` in turn: (decision, access)."""
    storage = Memory()
    rounds = [0]
    waiting = [0]

    async def redirect_handler(url):
        decision, access = decisions[min(rounds[0], len(decisions) - 1)]
        rounds[0] += 1
        waiting[0] = len(callback.queries)
        await asyncio.to_thread(person_decides, url, decision, access)

    async def callback_handler():
        query = await callback.next_query(waiting[0])
        if "code" not in query:
            raise RuntimeError(f"authorization refused: {query.get('error')}")
        return AuthorizationCodeResult(code=query["code"], state=query.get("state"), iss=query.get("iss"))

    provider = OAuthClientProvider(
        server_url=base + "/mcp",
        client_metadata=OAuthClientMetadata(
            redirect_uris=[callback.url], client_name="Test agent", grant_types=["authorization_code"]),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )
    return provider, storage


async def run(base):
    callback = Callback()
    url = base + "/mcp"

    # Approved as Read only: the SDK gets a key and sees the read tools.
    provider, storage = provider_for(base, callback, [("approve", "read_only"), ("approve", "full")])
    async with create_mcp_http_client(auth=provider) as http_client:
        async with Client(streamable_http_client(url, http_client=http_client)) as client:
            check("the SDK speaks the 2026-07-28 revision", client.protocol_version == "2026-07-28",
                  client.protocol_version)
            q = callback.queries[0]
            check("the code came with the state and the issuer", q.get("state") and q.get("iss") == base + "/", q)
            first = storage.tokens.access_token
            check("the access token is a sq_live_ key", KEY_RE.fullmatch(first) is not None)
            check("with the scopes the person chose", storage.tokens.scope == "vps:read domains:read",
                  storage.tokens.scope)
            # 30 days from the approval, a moment before the exchange.
            check("and the expiry (30 days)", 30 * 86400 - 10 <= storage.tokens.expires_in <= 30 * 86400,
                  storage.tokens.expires_in)
            names = [t.name for t in (await client.list_tools()).tools]
            check("the OAuth client lists the Read only tools", sorted(names) == sorted(READ_TOOLS), names)
            result = await client.call_tool("list_servers", {})
            status, _, rest = request(base, "GET", "/v1/servers", first)
            check("list_servers answers what GET /v1/servers answers with the same key",
                  status == 200 and result.structured_content == json.loads(rest), result)

            # A write tool: the 403's challenge names vps:write; the SDK asks again (step-up),
            # the person approves Full access, and the call goes through with the new key.
            result = await client.call_tool("reboot_server", {"server_id": "srv-1001"})
            check("after a second approval the write tool runs",
                  result.structured_content == {"id": "srv-1001", "action": "reboot", "status": "accepted"},
                  result)
            second = storage.tokens.access_token
            check("with a new key holding every scope", second != first and len(storage.tokens.scope.split()) == 6,
                  storage.tokens.scope)

    # Both keys are in the dashboard, made by OAuth, and can be revoked there.
    driver.get(base + "/dashboard/settings/api")
    rows = driver.find_elements(By.CSS_SELECTOR, "#keys tbody tr")
    agents = [r for r in rows if r.text.startswith("Test agent")]
    check("the dashboard lists the two keys the client was given", len(agents) == 2, [r.text for r in rows])
    activity = driver.find_element(By.ID, "activity").text
    check("the activity says OAuth made them", activity.count("created by oauth") == 2, activity)
    status, _, _ = request(base, "GET", "/v1/servers", second)
    check("the new key works on the REST API too", status == 200)
    row = next(r for r in agents if "sq_live_…" + second[-4:] in r.text)
    key_id = row.get_attribute("data-key-id")
    driver.find_element(By.ID, f"revoke-{key_id}").click()
    WebDriverWait(driver, 15).until(lambda d: d.find_elements(By.ID, "confirm-revoke"))
    driver.find_element(By.ID, "confirm-revoke").click()
    WebDriverWait(driver, 15).until(lambda d: d.find_elements(By.ID, "notice"))
    shot("revoked")
    status, _, body = request(base, "POST", "/mcp", second, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    check("the key revoked in the dashboard is refused at /mcp", status == 401, f"{status} {body}")

    # Denied: the client is told, and gets no key.
    before = len(callback.queries)
    provider, storage = provider_for(base, callback, [("deny", None)])
    failed = None
    try:
        async with create_mcp_http_client(auth=provider) as http_client:
            async with Client(streamable_http_client(url, http_client=http_client)) as client:
                await client.list_tools()
    except BaseException as e:  # an exception group from the SDK's task group
        failed = e
    check("a denied client cannot connect", failed is not None and storage.tokens is None)
    q = callback.queries[before]
    check("the client is sent access_denied with its state", q.get("error") == "access_denied" and q.get("state"), q)

    # A static key on the same endpoint, with the same SDK.
    status, _, text = request(base, "POST", "/admin/v1/keys", ADMIN, {"name": "static", "preset": "read_only"})
    static = json.loads(text)["key"]
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {static}"}) as http_client:
        async with Client(streamable_http_client(url, http_client=http_client)) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            check("a static key lists the same tools on the same endpoint", sorted(names) == sorted(READ_TOOLS),
                  names)


def main(binary, screenshot_dir):
    global driver, shots
    shots = screenshot_dir
    os.makedirs(shots, exist_ok=True)
    with running(binary, ADMIN) as base:
        opts = Options()
        opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
        for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1800",
                    "--disable-gpu", "--no-first-run"]:
            opts.add_argument(arg)
        try:
            driver = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")),
                                      options=opts)
        except Exception as e:
            check("the browser starts", False, repr(e))
        try:
            asyncio.run(run(base))
        finally:
            driver.quit()
    print("all OAuth checks passed", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
