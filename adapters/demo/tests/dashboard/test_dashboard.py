"""The dashboard as a person uses it: a real headless Chromium driven over WebDriver (Selenium with
Debian's chromium and chromium-driver), against a freshly built demo server.

Run by scripts/test-dashboard.sh:
    python test_dashboard.py PATH/TO/sitequest-demo SCREENSHOT_DIR
Each check prints its name; the first failure ends the run with status 1 (and a screenshot).
"""

import json
import os
import re
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from demo_server import http, running  # noqa: E402

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ADMIN = "dashboard-test-admin-token-0123456789"
UNAUTHORIZED = {"error": "Invalid or missing API key", "code": "UNAUTHORIZED", "status": 401}
KEY_RE = re.compile(r"sq_live_[0-9a-f]{64}")

driver = None
shots = None
step = [0]
seen_keys = []


def shot(name):
    step[0] += 1
    path = os.path.join(shots, f"{step[0]:02d}-{name}.png")
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


def by_id(i):
    return driver.find_element(By.ID, i)


def navigate(element):
    """Clicks `element` and waits until the page it leads to has loaded."""
    driver.execute_script("window.__leaving = true")
    element.click()
    WebDriverWait(driver, 15).until(
        lambda d: d.execute_script("return !window.__leaving && document.readyState === 'complete'"))


def go(element_id):
    navigate(by_id(element_id))


def create_key(name, access="read_only", scopes=(), expiry="none", date=None):
    """Fills and sends the create form; returns the key shown once and its id."""
    by_id("name").clear()
    by_id("name").send_keys(name)
    by_id(f"access-{access}").click()
    for s in scopes:
        by_id(f"scope-{s.replace(':', '-')}").click()
    if expiry == "date":
        by_id("expiry-date-choice").click()
        driver.execute_script("document.getElementById('expiry-date').value = arguments[0]", date)
    else:
        by_id(f"expiry-{expiry}").click()
    go("create-key")
    key = by_id("new-key").text.strip()
    check(f"the new key {name!r} is shown once, whole", KEY_RE.fullmatch(key) is not None, key)
    seen_keys.append(key)
    return key


def row(key_id):
    return driver.find_element(By.ID, f"key-{key_id}")


def key_id_of(key, base):
    """The id of a key, from the created page's hint."""
    text = driver.find_element(By.CSS_SELECTOR, ".reveal .hint code").text
    return text


def holds_no_key(where, text):
    found = [k for k in seen_keys if k in text]
    check(f"{where} holds no full key", not found and not KEY_RE.search(text or ""), found)


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
        check("the browser starts", True)
        try:
            run(base)
        finally:
            driver.quit()


def run(base):
    # Headers every dashboard answer carries.
    status, headers, _ = http(base, "GET", "/dashboard/login")
    csp = headers.get("Content-Security-Policy", "")
    check("the pages send a strict Content-Security-Policy",
          "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, csp)
    check("and nosniff and no-referrer", headers.get("X-Content-Type-Options") == "nosniff"
          and headers.get("Referrer-Policy") == "no-referrer", dict(headers))
    status, headers, _ = http(base, "GET", "/dashboard/settings/api", follow=False)
    check("without a session the settings page redirects to sign-in",
          status in (302, 303) and headers.get("Location") == "/dashboard/login", f"{status} {dict(headers)}")

    # Sign in: wrong token, then the right one.
    driver.get(base + "/")
    check("/ leads to the sign-in page", driver.current_url.endswith("/dashboard/login"), driver.current_url)
    shot("sign-in")
    by_id("token").send_keys("not-the-token")
    go("sign-in")
    check("a wrong token is refused", "That is not the admin token." in driver.page_source)
    shot("sign-in-refused")
    by_id("token").send_keys(ADMIN)
    go("sign-in")
    check("the right token signs in to Settings › API / MCP",
          driver.title.startswith("Settings › API / MCP") and driver.current_url.endswith("/dashboard/settings/api"),
          f"{driver.title!r} at {driver.current_url}")
    cookies = driver.get_cookies()
    session = next((c for c in cookies if c["name"] == "sq_dashboard"), None)
    check("the session cookie is HttpOnly, SameSite=Strict, on /dashboard",
          session is not None and session["httpOnly"] and session.get("sameSite") == "Strict"
          and session["path"] == "/dashboard", cookies)
    check("the page names the MCP endpoint", by_id("mcp-url").text == base + "/mcp", by_id("mcp-url").text)
    check("the spec's security tips are on the page",
          "Never commit API keys to version control." in driver.page_source
          and "Set an expiry date for keys used in CI/CD pipelines." in driver.page_source)
    shot("settings-empty")

    # A field error, shown next to its field; the server judges.
    by_id("name").clear()
    go("create-key")
    check("an empty name is refused next to the field", by_id("name-error").text == "Key name is empty.",
          driver.page_source[:500])
    shot("name-error")
    # Issue 21: one name limit, in characters a person counts, in the field and on the server.
    # The field counts as the server does (code points), not in UTF-16 units as maxlength would.
    by_id("name").clear()
    by_id("name").send_keys("🔑" * 128)
    check("the field counts 128 emoji as 128 characters", by_id("name-count").text == "128"
          and len(by_id("name").get_attribute("value")) == 128, by_id("name-count").text)
    by_id("name").clear()
    by_id("name").send_keys("é" * 129)
    check("and shows a name over the limit", by_id("name-count").text == "129"
          and "over" in by_id("name-hint").get_attribute("class"), by_id("name-hint").get_attribute("class"))
    go("create-key")
    check("the server counts characters too", by_id("name-error").text
          == "Key name is 129 characters long, the most is 128.", by_id("name-error").text)
    # Issue 21: a date expiry says it is UTC.
    check("the date choice says UTC", "On a date (UTC)" in driver.find_element(By.CSS_SELECTOR, "label[for], fieldset").text
          or "On a date (UTC)" in driver.page_source, "")
    check("and until when the key works", by_id("expiry-date-hint").text
          == "The key works through the end of that day in UTC (until 23:59:59 UTC), then stops.",
          by_id("expiry-date-hint").text)

    # A Read only key: use it against the API.
    read_key = create_key("ci read")
    read_id = key_id_of(read_key, base)
    check("the page gives a ready curl line",
          by_id("curl-line").text == f'curl -H "Authorization: Bearer {read_key}" {base}/v1/servers',
          by_id("curl-line").text)
    shot("key-shown-once")
    # The window's count is read back below: keep the calls and the reading in one minute.
    if time.time() % 60 > 40:
        time.sleep(61 - time.time() % 60)
    status, headers, _ = http(base, "GET", "/v1/servers", read_key)
    check("the Read only key lists servers (200, with the rate-limit headers)",
          status == 200 and headers.get("X-RateLimit-Limit") == "60"
          and headers.get("X-RateLimit-Remaining") == "59" and headers.get("X-RateLimit-Reset", "").isdigit(),
          f"{status} {dict(headers)}")
    status, _, body = http(base, "POST", "/v1/servers", read_key)
    check("and may not create one (403 INSUFFICIENT_SCOPE)",
          status == 403 and json.loads(body)["code"] == "INSUFFICIENT_SCOPE", f"{status} {body}")

    # Back and Forward after leaving the page do not bring the key back.
    go("done")
    driver.back()
    WebDriverWait(driver, 15).until(lambda d: d.execute_script("return document.readyState") == "complete")
    holds_no_key("the page Back leads to", driver.execute_script("return document.documentElement.outerHTML"))
    driver.forward()
    WebDriverWait(driver, 15).until(lambda d: d.execute_script("return document.readyState") == "complete")
    holds_no_key("the page Forward leads to", driver.execute_script("return document.documentElement.outerHTML"))
    driver.get(base + "/dashboard/settings/api/created")

    # Reload: the key is not shown again.
    driver.refresh()
    check("a reload does not show the key again", "new-key" not in driver.page_source
          and driver.current_url.endswith("/dashboard/settings/api"), driver.current_url)
    holds_no_key("the list page", driver.page_source)

    # A Custom key with two scopes.
    custom_key = create_key("deploy", "custom", ["vps:write", "domains:read"])
    custom_id = key_id_of(custom_key, base)
    go("done")
    badges = [b.text for b in row(custom_id).find_elements(By.CSS_SELECTOR, ".badge")]
    check("the Custom key's badges are its two scopes", badges == ["vps:write", "domains:read"], badges)

    # Keys with an expiry: 30 days, and a chosen date.
    exp_key = create_key("ci nightly", "read_only", expiry="30d")
    exp_id = key_id_of(exp_key, base)
    go("done")
    check("a 30-day key shows when it expires", "in 30 days" in row(exp_id).text, row(exp_id).text)
    date_key = create_key("until 2030", "read_only", expiry="date", date="2030-01-31")
    date_id = key_id_of(date_key, base)
    go("done")
    check("a key with a date works through that day", "2030-02-01 00:00 UTC" in row(date_id).text, row(date_id).text)
    shot("list")

    # The usage chart shows the calls made above: one grant, one 403.
    svg = driver.execute_script(
        "return (async (url) => { const r = await fetch(url);"
        " return [r.status, r.headers.get('content-type'), await r.text()]; })(arguments[0]);",
        f"/dashboard/settings/api/keys/{read_id}/usage.svg")
    check("the usage chart draws the calls just made", svg[0] == 200 and svg[1] == "image/svg+xml"
          and "Last hour: 1 granted, 1 refused for scope (403), 0 rate limited (429)" in svg[2], svg[:2])
    img = row(read_id).find_element(By.CSS_SELECTOR, "img.usage")
    check("the chart is an image on the page", driver.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0", img))
    check("this window's usage reads 2 / 60", row(read_id).find_element(By.CSS_SELECTOR, ".window").text == "2 / 60",
          row(read_id).text)
    check("the last hour's totals are text beside the chart",
          row(read_id).find_element(By.CSS_SELECTOR, ".usage-text").text
          == "1 granted · 1 refused (403) · 0 limited (429)", row(read_id).text)

    # Issue 21: "This window" refreshes with the charts, without a reload.
    if time.time() % 60 > 45:
        time.sleep(61 - time.time() % 60)
        driver.refresh()
    for _ in range(3):
        http(base, "GET", "/v1/servers", read_key)
    WebDriverWait(driver, 15).until(
        lambda d: row(read_id).find_element(By.CSS_SELECTOR, ".window").text in ("5 / 60", "3 / 60"))
    now_window = row(read_id).find_element(By.CSS_SELECTOR, ".window").text
    check("this window's count follows the calls without a reload", now_window in ("5 / 60", "3 / 60"), now_window)
    check("and so do the totals beside the chart",
          row(read_id).find_element(By.CSS_SELECTOR, ".usage-text").text.startswith("4 granted"),
          row(read_id).find_element(By.CSS_SELECTOR, ".usage-text").text)

    # Issue 21: a readable chart with axes and totals, on a page of its own.
    navigate(by_id(f"usage-{read_id}"))
    detail = driver.find_element(By.CSS_SELECTOR, "img.usage-detail")
    check("the detail chart is drawn at its own size (720 x 300)", driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        " return arguments[0].complete && arguments[0].naturalWidth === 720 && r.width >= 700 && r.height >= 290",
        detail))
    detail_svg = driver.execute_script(
        "return (async (url) => (await fetch(url)).text())(arguments[0]);",
        f"/dashboard/settings/api/keys/{read_id}/usage-detail.svg")
    check("it has axes", all(t in detail_svg for t in (">60 min ago<", ">now<", ">requests / min<")), detail_svg[:300])
    check("and the totals as text", by_id("total-granted").text == "4" and by_id("total-forbidden").text == "1"
          and by_id("total-limited").text == "0", driver.find_element(By.ID, "usage-totals").text)
    # The totals refresh with the chart on this page too.
    http(base, "GET", "/v1/servers", read_key)
    WebDriverWait(driver, 15).until(lambda d: by_id("total-granted").text == "5")
    check("the page's totals follow the calls without a reload", by_id("total-granted").text == "5")
    shot("usage-detail")
    driver.get(base + "/dashboard/settings/api")

    # Revoke, with a confirmation: the API answers 401.
    navigate(driver.find_element(By.ID, f"revoke-{read_id}"))
    check("revoking asks for a confirmation", "Revoke ci read?" in driver.page_source)
    shot("revoke-confirm")
    go("confirm-revoke")
    check("the key is listed as revoked", "revoked" in row(read_id).find_element(By.CSS_SELECTOR, ".status").text)
    # Issue 21: a confirmation, and the page at the revoked row.
    notice = by_id("notice")
    check("a confirmation names the revoked key",
          notice.text.startswith("Key ci read (sq_live_…" + read_key[-4:] + ") revoked: every request with it is refused."),
          notice.text)
    check("the page is at the revoked key's row", driver.current_url.endswith(f"#key-{read_id}")
          and driver.execute_script("return document.querySelector(':target') === arguments[0]", row(read_id)),
          driver.current_url)
    check("the confirmation and the row are both in view, the row below it", driver.execute_script(
        "const inView = e => { const r = e.getBoundingClientRect();"
        " return r.top >= 0 && r.bottom <= window.innerHeight; };"
        " return inView(arguments[0]) && inView(arguments[1])"
        " && arguments[1].getBoundingClientRect().top >= arguments[0].getBoundingClientRect().bottom;",
        notice, row(read_id)))
    check("and the confirmation can take the focus (it is focused on load)",
          notice.get_attribute("tabindex") == "-1")
    shot("after-revoke")
    status, _, body = http(base, "GET", "/v1/servers", read_key)
    check("the revoked key gets the spec's 401", status == 401 and json.loads(body) == UNAUTHORIZED, f"{status} {body}")

    # Rotate with a grace: old and new both work meanwhile.
    navigate(driver.find_element(By.ID, f"rotate-{custom_id}"))
    check("the rotation keeps the old key for 24 hours unless told otherwise",
          by_id("grace-86400").is_selected() and not by_id("grace-0").is_selected())
    check("and says what happens", "keep working for a\nday" in by_id("grace-explained").text.replace(" day", "\nday")
          or "keep working for a day" in by_id("grace-explained").text, by_id("grace-explained").text)
    by_id("grace-3600").click()
    shot("rotate")
    go("confirm-rotate")
    new_key = by_id("new-key").text.strip()
    seen_keys.append(new_key)
    check("the rotation shows the new key once", KEY_RE.fullmatch(new_key) is not None and new_key != custom_key)
    for name, key in [("old", custom_key), ("new", new_key)]:
        status, _, _ = http(base, "GET", "/v1/domains", key)
        check(f"the {name} key works within the grace", status == 200, status)
    go("done")
    # Issue 21: rotated keys tell which replaced which.
    new_id = [r.get_attribute("data-key-id") for r in driver.find_elements(By.CSS_SELECTOR, "#keys tbody tr")
              if f"replaces deploy (sq_live_…{custom_key[-4:]})" in r.text]
    check("the new key says which key it replaces", len(new_id) == 1, by_id("keys").text)
    check("the old key says which key replaced it",
          f"replaced by deploy (sq_live_…{new_key[-4:]})" in row(custom_id).text, row(custom_id).text)
    check("and, replaced, is no longer offered for rotation (revoke still is)",
          not driver.find_elements(By.ID, f"rotate-{custom_id}") and driver.find_elements(By.ID, f"revoke-{custom_id}"))
    shot("after-rotate")
    # Rotated with no grace, the old key reads "rotated", not "expired".
    navigate(driver.find_element(By.ID, f"rotate-{new_id[0]}"))
    by_id("grace-0").click()
    go("confirm-rotate")
    newest = by_id("new-key").text.strip()
    seen_keys.append(newest)
    go("done")
    check("a key rotated with no grace reads rotated",
          row(new_id[0]).find_element(By.CSS_SELECTOR, ".status").text == "rotated", row(new_id[0]).text)
    status, _, _ = http(base, "GET", "/v1/domains", newest)
    check("and its replacement works", status == 200, status)

    # Activity names what happened and where.
    activity = by_id("activity").text
    check("the activity list shows the changes from the dashboard",
          "revoked by dashboard" in activity and "rotated by dashboard" in activity
          and "created by dashboard" in activity, activity)
    check("and names the keys", f"ci read {read_id} revoked by dashboard" in activity, activity)

    # Two forms sent before the page showed a key (a double submit): both keys are shown, once.
    driver.get(base + "/dashboard/settings/api")
    driver.execute_script("""
        return (async () => {
          const csrf = document.querySelector('input[name=csrf]').value;
          for (const name of ['twice 1', 'twice 2']) {
            const body = new URLSearchParams({csrf, name, access: 'read_only', expiry: 'none'});
            await fetch('/dashboard/settings/api/keys', {method: 'POST', body, redirect: 'manual'});
          }
        })();""")
    driver.get(base + "/dashboard/settings/api/created")
    twice = [e.text.strip() for e in driver.find_elements(By.CSS_SELECTOR, ".reveal .key")]
    check("two keys created before either was shown are both shown",
          len(twice) == 2 and all(KEY_RE.fullmatch(k) for k in twice), twice)
    seen_keys.extend(twice)
    driver.get(base + "/dashboard/settings/api/created")
    holds_no_key("the creation page after both were shown", driver.page_source)

    # No page, cookie or storage holds a full key once the creation page is left.
    holds_no_key("the settings page", driver.page_source)
    holds_no_key("the cookies", json.dumps(driver.get_cookies()))
    holds_no_key("the browser storage", driver.execute_script(
        "return JSON.stringify(localStorage) + JSON.stringify(sessionStorage)"))
    driver.get(base + "/dashboard/settings/api/created")
    holds_no_key("the creation page, visited again", driver.page_source)
    for path in ["/dashboard", "/dashboard/settings/api?sort=last_used",
                 f"/dashboard/settings/api/keys/{custom_id}/rotate", f"/dashboard/settings/api/keys/{exp_id}/revoke"]:
        driver.get(base + path)
        holds_no_key(path, driver.page_source)

    # A form post without the CSRF token, or from another origin, is refused.
    driver.get(base + "/dashboard/settings/api")
    status = driver.execute_script("""
        return (async () => {
          const body = new URLSearchParams({name: 'forged', access: 'full', expiry: 'none'});
          const r = await fetch('/dashboard/settings/api/keys', {method: 'POST', body});
          return r.status;
        })();""")
    check("a form post without the CSRF token is refused (403)", status == 403, status)
    csrf = driver.find_element(By.NAME, "csrf").get_attribute("value")
    cookie = "sq_dashboard=" + next(c["value"] for c in driver.get_cookies() if c["name"] == "sq_dashboard")
    form = urllib.parse.urlencode({"csrf": csrf, "name": "forged", "access": "full", "expiry": "none"})
    for name, extra in [("a foreign Origin", {"Origin": "https://evil.example"}),
                        ("no Origin", {}),
                        ("Origin null from another site", {"Origin": "null", "Sec-Fetch-Site": "cross-site"})]:
        headers = {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded", **extra}
        status, _, _ = http(base, "POST", "/dashboard/settings/api/keys", body=form, headers=headers, follow=False)
        check(f"a post with the token but {name} is refused (403)", status == 403, status)
    headers = {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded", "Origin": base}
    empty = urllib.parse.urlencode({"csrf": csrf, "name": "", "access": "full", "expiry": "none"})
    status, _, _ = http(base, "POST", "/dashboard/settings/api/keys", body=empty, headers=headers, follow=False)
    check("the same post from this server's origin gets to the form's own checks (400)", status == 400, status)
    driver.get(base + "/dashboard/settings/api")
    check("nothing was created by those posts", "forged" not in driver.page_source)

    # Sorting by last use puts the unused keys first.
    driver.get(base + "/dashboard/settings/api?sort=last_used")
    names = [r.get_attribute("id") for r in driver.find_elements(By.CSS_SELECTOR, "#keys tbody tr")]
    check("sorting by last use lists never-used keys before used ones",
          names.index(f"key-{exp_id}") < names.index(f"key-{read_id}"), names)

    # Readable at 375 px, usable with the keyboard.
    driver.set_window_size(375, 1400)
    driver.get(base + "/dashboard/settings/api")
    check("nothing overflows sideways at 375 px",
          driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"))
    shot("list-375px")
    unlabeled = driver.execute_script("""
        return [...document.querySelectorAll('input:not([type=hidden]), button, select, textarea')]
          .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
          .map(e => e.outerHTML);""")
    check("every control has a label", not unlabeled, unlabeled)
    driver.set_window_size(1280, 1800)
    driver.get(base + "/dashboard/settings/api")
    body = driver.find_element(By.TAG_NAME, "body")
    focused = []
    for _ in range(6):
        body.send_keys("\ue004")  # Tab
        focused.append(driver.switch_to.active_element.get_attribute("id") or driver.switch_to.active_element.tag_name)
    check("the keyboard reaches the create form", "name" in focused, focused)
    shot("settings-keys")

    # Sign out: the session ends.
    go("sign-out")
    check("signing out returns to sign-in", driver.current_url.endswith("/dashboard/login"), driver.current_url)
    driver.get(base + "/dashboard/settings/api")
    check("and the settings page needs a sign-in again", driver.current_url.endswith("/dashboard/login"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
