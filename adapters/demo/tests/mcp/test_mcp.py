"""The demo server's MCP endpoint driven by a client we did not write: the official Python SDK
(`mcp` on PyPI), over its Streamable HTTP transport.

Run by scripts/test-mcp.sh, which makes the virtual environment and builds the server:
    python test_mcp.py PATH/TO/sitequest-demo
Each check prints its name; the first failure ends the run with status 1.
"""

import asyncio
import contextlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from demo_server import http, running  # noqa: E402

from mcp import Client, ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

ADMIN = "mcp-test-admin-token-0123456789"
UNAUTHORIZED = {"error": "Invalid or missing API key", "code": "UNAUTHORIZED", "status": 401}
RATE_LIMITED = {"error": "Too many requests", "code": "RATE_LIMITED", "status": 429}
READ_TOOLS = ["list_servers", "get_server", "get_server_metrics", "list_domains", "get_dns"]
ALL_TOOLS = READ_TOOLS + [
    "start_server", "stop_server", "reboot_server", "reinstall_server", "mount_iso", "ssh_exec",
    "create_server", "upgrade_server", "delete_server", "update_dns", "update_domain_settings",
    "register_domain", "transfer_domain", "delete_domain",
]


def check(name, ok, detail=""):
    if not ok:
        print(f"FAIL {name}: {detail}", flush=True)
        raise SystemExit(1)
    print(f"ok   {name}", flush=True)


def create_key(base, preset):
    status, _, text = http(base, "POST", "/admin/v1/keys", ADMIN, {"name": f"mcp {preset}", "preset": preset})
    assert status == 201, text
    v = json.loads(text)
    return v["id"], v["key"]


@contextlib.asynccontextmanager
async def session_for(url, key):
    """An initialized SDK session with `key`: (session, initialize result)."""
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    async with create_mcp_http_client(headers=headers) as http_client:
        async with streamable_http_client(url, http_client=http_client) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                yield session, init


def tool_payload(result):
    """A tool result's data: its structured content, else its text parsed as JSON."""
    if getattr(result, "structured_content", None) is not None:
        return result.structured_content
    if getattr(result, "structuredContent", None) is not None:
        return result.structuredContent
    return json.loads(result.content[0].text)


def is_error(result):
    return bool(getattr(result, "is_error", None) or getattr(result, "isError", None))


def mcp_post(base, key, message, session_id=None):
    headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
    if session_id:
        headers["Mcp-Session-Id"] = session_id
    body = message if isinstance(message, bytes) else json.dumps(message).encode()
    return http(base, "POST", "/mcp", key, body, headers)


def away_from_a_window_end():
    """Waits until the current minute has at least 20 seconds left, so a burst stays in one window."""
    s = int(time.time()) % 60
    if s > 40:
        time.sleep(61 - s)


async def main(binary):
    with running(binary, ADMIN, "--mcp-tool-limit", "ssh_exec=2") as base:
        await run(base, base + "/mcp")
        await run_2026_07_28(base, base + "/mcp")


async def run_2026_07_28(base, url):
    """The 2026-07-28 revision (no session, Mcp-Method/Mcp-Name headers), as the SDK's `Client`
    negotiates it with `server/discover`."""
    _, read_only = create_key(base, "read_only")
    _, full = create_key(base, "full")
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {read_only}"}) as http_client:
        async with Client(streamable_http_client(url, http_client=http_client)) as client:
            check("the SDK negotiates the 2026-07-28 revision", client.protocol_version == "2026-07-28",
                  client.protocol_version)
            tools = await client.list_tools()
            check("tools/list lists the key's tools, marked private to caches",
                  sorted(t.name for t in tools.tools) == sorted(READ_TOOLS)
                  and str(getattr(tools, "cache_scope", "")).endswith("private"), tools)
            result = await client.call_tool("get_server", {"server_id": "srv-1001"})
            check("a read tool runs", not is_error(result) and tool_payload(result)["id"] == "srv-1001", result)
            failed = None
            try:
                await client.call_tool("reboot_server", {"server_id": "srv-1001"})
            except Exception as e:
                failed = e
            check("a tool outside the key's scopes is refused before it runs (HTTP 403)", failed is not None)
    # What the SDK sent, replayed by hand: the headers decide, and the answer is the spec's 403.
    headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2026-07-28",
               "Mcp-Method": "tools/call", "Mcp-Name": "reboot_server"}
    status, res_headers, body = http(base, "POST", "/mcp", read_only, b"{}", headers)
    check("Mcp-Name naming a write tool is the spec's 403 with the scope in the challenge",
          status == 403 and json.loads(body)["code"] == "INSUFFICIENT_SCOPE"
          and 'scope="vps:write"' in res_headers.get("WWW-Authenticate", ""), f"{status} {dict(res_headers)} {body}")

    # ssh_exec has its own quota here (--mcp-tool-limit ssh_exec=2).
    away_from_a_window_end()
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {full}"}) as http_client:
        async with Client(streamable_http_client(url, http_client=http_client)) as client:
            for i in range(2):
                result = await client.call_tool("ssh_exec", {"server_id": "srv-1001", "command": "uptime"})
                check(f"ssh_exec call {i + 1} of 2 runs", not is_error(result), result)
            failed = None
            try:
                await client.call_tool("ssh_exec", {"server_id": "srv-1001", "command": "uptime"})
            except Exception as e:
                failed = e
            check("the third ssh_exec of the minute is refused", failed is not None)
            result = await client.call_tool("list_servers", {})
            check("other tools go on", not is_error(result), result)


async def run(base, url):
    _, read_only = create_key(base, "read_only")
    full_id, full = create_key(base, "full")

    # A Read only key: exactly the five read tools.
    async with session_for(url, read_only) as (session, init):
        check("initialize answers with the server's name", init.server_info.name == "sitequest-demo",
              repr(init.server_info))
        print(f"     protocol version {init.protocol_version}", flush=True)
        tools = await session.list_tools()
        names = [t.name for t in tools.tools]
        check("a Read only key lists exactly the five read tools", sorted(names) == sorted(READ_TOOLS), names)
        schema = next(t for t in tools.tools if t.name == "get_server").input_schema
        check("get_server takes a server_id", schema.get("required") == ["server_id"], schema)

        result = await session.call_tool("list_servers", {})
        status, _, rest = http(base, "GET", "/v1/servers", read_only)
        check("list_servers answers what GET /v1/servers answers",
              status == 200 and tool_payload(result) == json.loads(rest) and not is_error(result),
              f"{tool_payload(result)} vs {rest}")
        result = await session.call_tool("get_dns", {"domain": "example.com"})
        status, _, rest = http(base, "GET", "/v1/domains/example.com/dns", read_only)
        check("get_dns answers what its REST route answers", tool_payload(result) == json.loads(rest))

        result = await session.call_tool("reboot_server", {"server_id": "srv-1001"})
        text = result.content[0].text
        check("reboot_server with a Read only key is a tool error", is_error(result), result)
        check("the tool error carries INSUFFICIENT_SCOPE and names vps:write",
              "INSUFFICIENT_SCOPE" in text and "vps:write" in text, text)
        check("nothing ran: no reboot was answered", "accepted" not in text, text)

        failed = None
        try:
            await session.call_tool("get_server", {})
        except Exception as e:  # the SDK raises the JSON-RPC error
            failed = e
        check("a call without its required argument is a JSON-RPC error", failed is not None)
        failed = None
        try:
            await session.call_tool("no_such_tool", {})
        except Exception as e:
            failed = e
        check("an unknown tool is a JSON-RPC error", failed is not None)

    # A Full key: all nineteen tools.
    async with session_for(url, full) as (session, _):
        names = [t.name for t in (await session.list_tools()).tools]
        check("a Full key lists all nineteen tools", sorted(names) == sorted(ALL_TOOLS), names)
        result = await session.call_tool("reboot_server", {"server_id": "srv-1001"})
        check("reboot_server with a Full key runs", not is_error(result)
              and tool_payload(result) == {"id": "srv-1001", "action": "reboot", "status": "accepted"},
              result)

        # Revoked during the session: the next request is refused at the HTTP level.
        status, _, _ = http(base, "DELETE", f"/admin/v1/keys/{full_id}", ADMIN)
        check("the admin revokes the key mid-session", status == 204)
        failed = None
        try:
            await asyncio.wait_for(session.call_tool("list_servers", {}), timeout=10)
        except Exception as e:
            failed = e
        check("the revoked key's next call fails", failed is not None)
        status, headers, body = mcp_post(base, full, {"jsonrpc": "2.0", "id": 9, "method": "tools/list"})
        check("the revoked key gets the spec's 401", status == 401 and json.loads(body) == UNAUTHORIZED,
              f"{status} {body}")

    # No key, a bad key: HTTP 401 with the spec's body before any MCP processing.
    init_msg = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}
    for name, key in [("no key", None), ("a malformed key", "sq_live_nope"),
                      ("an unknown key", "sq_live_" + "ab" * 32)]:
        status, headers, body = mcp_post(base, key, init_msg)
        check(f"{name} is an HTTP 401 with the spec's body",
              status == 401 and json.loads(body) == UNAUTHORIZED
              and headers.get("WWW-Authenticate", "").startswith('Bearer realm="sitequest"'),
              f"{status} {dict(headers)} {body}")
    failed = None
    try:
        async with session_for(url, "sq_live_" + "cd" * 32):
            pass
    except BaseException as e:  # an exception group from the SDK's task group
        failed = e
    check("the SDK cannot initialize with a bad key", failed is not None)

    # Malformed JSON-RPC: a JSON-RPC error, and the server keeps serving.
    _, good = create_key(base, "read_only")
    status, _, body = mcp_post(base, good, b"{this is not json")
    check("malformed JSON gets a JSON-RPC parse error", status == 400 and json.loads(body)
          == {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}},
          f"{status} {body}")
    status, _, body = mcp_post(base, good, {"jsonrpc": "2.0", "id": 3, "method": 7})
    check("JSON that is not a JSON-RPC message gets an invalid-request error",
          status == 400 and json.loads(body)["error"]["code"] == -32600 and json.loads(body)["id"] == 3,
          f"{status} {body}")
    status, _, _ = http(base, "GET", "/v1/servers", good)
    check("the server still serves", status == 200)

    # A session answers only the key that opened it.
    _, a_key = create_key(base, "read_only")
    _, b_key = create_key(base, "full")
    status, headers, _ = mcp_post(base, a_key, init_msg)
    a_session = headers.get("Mcp-Session-Id")
    check("initialize opens a session", status == 200 and a_session, f"{status} {dict(headers)}")
    mcp_post(base, a_key, {"jsonrpc": "2.0", "method": "notifications/initialized"}, a_session)
    for method in ["POST", "DELETE", "GET"]:
        headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25",
                   "Mcp-Session-Id": a_session}
        body = {"jsonrpc": "2.0", "id": 5, "method": "tools/list"} if method == "POST" else None
        status, _, text = http(base, method, "/mcp", b_key, body, headers)
        check(f"another key's {method} on that session is a 404", status == 404
              and json.loads(text)["error"]["message"] == "Session not found", f"{status} {text}")
    status, _, _ = mcp_post(base, a_key, {"jsonrpc": "2.0", "id": 6, "method": "tools/list"}, a_session)
    check("the session still answers its own key", status == 200, status)
    status, _, text = http(base, "DELETE", "/mcp", a_key, None, {"Mcp-Session-Id": a_session})
    check("its own key ends it with a 204", status == 204, f"{status} {text}")
    status, _, text = mcp_post(base, a_key, {"jsonrpc": "2.0", "id": 7, "method": "tools/list"}, a_session)
    check("an ended session is a 404 with a JSON-RPC error", status == 404 and "error" in json.loads(text),
          f"{status} {text}")

    # A browser page of another site cannot use the endpoint.
    status, _, text = http(base, "POST", "/mcp", a_key, init_msg,
                           {"Accept": "application/json, text/event-stream", "Origin": "http://evil.example"})
    check("a request from another site's page (Origin) is refused", status == 403, f"{status} {text}")

    # One window per key across REST and MCP: 30 REST + 30 MCP requests, then a 429 for either.
    _, shared = create_key(base, "read_only")
    away_from_a_window_end()
    for i in range(30):
        status, headers, _ = http(base, "GET", "/v1/servers", shared)
        assert status == 200, f"REST request {i}: {status}"
    check("30 REST requests counted", headers.get("X-RateLimit-Remaining") == "30", dict(headers))
    status, headers, _ = mcp_post(base, shared, init_msg)
    session_id = headers.get("Mcp-Session-Id")
    check("MCP initialize counts in the same window",
          status == 200 and headers.get("X-RateLimit-Remaining") == "29", f"{status} {dict(headers)}")
    status, headers, _ = mcp_post(base, shared, {"jsonrpc": "2.0", "method": "notifications/initialized"},
                                  session_id)
    check("the initialized notification counts too", headers.get("X-RateLimit-Remaining") == "28",
          f"{status} {dict(headers)}")
    for i in range(28):
        status, headers, _ = mcp_post(
            base, shared, {"jsonrpc": "2.0", "id": 10 + i, "method": "tools/list"}, session_id)
        assert status == 200, f"MCP request {i}: {status}"
        assert headers.get("X-RateLimit-Remaining") == str(27 - i), dict(headers)
    check("30 MCP requests counted, each once", headers.get("X-RateLimit-Remaining") == "0")
    for name, answer in [
        ("the next REST request", http(base, "GET", "/v1/servers", shared)),
        ("the next MCP request", mcp_post(base, shared, {"jsonrpc": "2.0", "id": 99, "method": "tools/list"},
                                          session_id)),
    ]:
        status, headers, body = answer
        check(f"{name} is the spec's 429", status == 429 and json.loads(body) == RATE_LIMITED
              and int(headers.get("Retry-After", "0")) >= 1 and headers.get("X-RateLimit-Remaining") == "0",
              f"{status} {dict(headers)} {body}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
