"""The console without a browser: sign-in, CSRF, scoping, paging, languages, charts."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient

from collector.fleet import registry
from collector.web import charts, i18n
from linecheck.i18n import LANGUAGES, catalogue
from tests.api_support import RecordingSender
from tests.fleet_data import PASSWORD, Fleet
from tests.qrdecode import decode_svg

TEMPLATES = Path(__file__).resolve().parent.parent / "collector" / "web" / "templates"


def login(client: TestClient, user: str, password: str = PASSWORD, **extra: str) -> object:
    return client.post("/console/login", data={"user": user, "password": password, **extra}, follow_redirects=False)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def test_pages_need_a_session_and_sign_in_works(client: TestClient) -> None:
    r = client.get("/console/lines/acme-xuhui-1", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/console/login?next=")
    assert login(client, "a-admin", "wrong-password-x").status_code == 401
    assert login(client, "nobody", "wrong-password-x").status_code == 401
    r = login(client, "a-admin", next="/console/agents")
    assert r.status_code == 303 and r.headers["location"] == "/console/agents"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert "acme-gw" in client.get("/console/agents").text


def test_password_guessing_is_throttled_per_user_and_address(client: TestClient) -> None:
    for _ in range(5):
        assert login(client, "a-admin", "wrong-password-x").status_code == 401
    r = login(client, "a-admin")  # even the right password waits now: the guesser cannot tell
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 800
    assert "Try again in 15 min" in r.text
    # Another user from the same address still signs in (the per-address limit is higher).
    assert login(client, "a-viewer").status_code == 303


def test_login_throttle_window_slides() -> None:
    from collector.api.throttle import LoginThrottle, ThrottleLimits

    now = [1000.0]
    throttle = LoginThrottle(ThrottleLimits(per_user_and_address=3, per_address=5, window_s=60),
                             clock=lambda: now[0])
    for _ in range(3):
        assert throttle.retry_after("u", "10.0.0.1") == 0
        throttle.failed("u", "10.0.0.1")
        now[0] += 10
    assert throttle.retry_after("u", "10.0.0.1") == 30  # the first failure leaves the window at 1060
    assert throttle.retry_after("u", "10.0.0.2") == 0
    for user in ("v", "w"):
        throttle.failed(user, "10.0.0.1")
    assert throttle.retry_after("x", "10.0.0.1") == 30  # five failures from the address, any users
    now[0] += 30
    assert throttle.retry_after("u", "10.0.0.1") == 0
    throttle.succeeded("u", "10.0.0.1")


def test_login_never_redirects_off_site(client: TestClient) -> None:
    for target in ("https://evil.example/", "//evil.example/console/", "/console//evil.example", "/api/v1/lines"):
        assert login(client, "a-admin", next=target).headers["location"] == "/console/"


def test_forms_need_the_csrf_token_and_logout_ends_the_session(client: TestClient, sender: RecordingSender) -> None:
    login(client, "a-tech")
    page = client.get("/console/lines/acme-xuhui-1").text
    assert client.post("/console/lines/acme-xuhui-1/check", data={"csrf": "0" * 32}).status_code == 403
    assert sender.sent == []
    r = client.post("/console/lines/acme-xuhui-1/check", data={"csrf": csrf_of(page), "action": "check_now"},
                    follow_redirects=False)
    assert r.status_code == 303 and sender.sent == [("acme-gw", "check_now")]
    assert "command_sent" in r.headers["location"]
    client.post("/console/logout", data={"csrf": csrf_of(page)})
    assert client.get("/console/", follow_redirects=False).status_code == 303


def _console_routes(app: object) -> list[tuple[str, str, object]]:
    """(method, path, route) of every console route in the app's route table, included routers walked."""
    from fastapi.routing import APIRoute

    found: list[tuple[str, str, object]] = []

    def walk(routes: object, prefix: str) -> None:
        for r in routes:  # type: ignore[attr-defined]
            if hasattr(r, "original_router"):
                walk(r.original_router.routes, prefix + r.include_context.prefix)
            elif isinstance(r, APIRoute) and (prefix + r.path).startswith("/console"):
                found.extend((m, prefix + r.path, r) for m in sorted(r.methods or ()) if m != "HEAD")

    walk(app.routes, "")  # type: ignore[attr-defined]
    return found


def test_every_console_route_requires_sign_in(client: TestClient) -> None:
    """Every console page and form takes the one sign-in dependency (a handler added without it fails here),
    and answers as the console always has: to the sign-in page with `next` when signed out, 403 on a form
    without the session's CSRF token. Only sign-in and sign-out are open (static files are a mount)."""
    from collector.web.auth import PUBLIC, requires_sign_in

    routes = _console_routes(client.app)
    assert len(routes) >= 18, routes
    without = sorted(f"{m} {p}" for m, p, r in routes if not requires_sign_in(r))
    assert without == ["GET /console/login", "POST /console/login", "POST /console/logout"], without
    assert {p for m, p, r in routes if not requires_sign_in(r)} == PUBLIC
    guarded = [(m, re.sub(r"{[a-z_]+}", "1", p)) for m, p, r in routes if requires_sign_in(r)]
    for method, path in guarded:
        r = client.request(method, path + "?lang=en", data={"name": "x"} if method == "POST" else None,
                           follow_redirects=False)
        assert r.status_code == 303, (method, path, r.status_code)
        assert r.headers["location"] == "/console/login?next=" + path.replace("/", "%2F") + "%3Flang%3Den"
    login(client, "a-admin")  # a carrier admin holds every role the console's forms ask for
    for method, path in guarded:
        if method == "POST":
            r = client.post(path, data={"csrf": "0" * 32, "name": "x", "text": "x", "to_state": "acknowledged",
                                        "agent_id": "x-gw"}, follow_redirects=False)
            assert r.status_code == 403 and "The form expired" in r.text, (path, r.status_code)
            assert r.headers["content-security-policy"].startswith("default-src 'none'")


def test_viewer_cannot_request_checks_and_nobody_sees_other_tenants(client: TestClient,
                                                                     sender: RecordingSender) -> None:
    login(client, "a-viewer")
    page = client.get("/console/lines/acme-xuhui-1").text
    assert 'id="check-now"' not in page
    r = client.post("/console/lines/acme-xuhui-1/check", data={"csrf": csrf_of(page)})
    assert r.status_code == 403 and sender.sent == []
    assert client.get("/console/lines/bravo-pudong-1").status_code == 404
    fleet_page = client.get("/console/").text
    assert "acme-xuhui-1" in fleet_page and "bravo" not in fleet_page
    assert client.get("/console/quarantine").status_code == 403


def test_technician_issues_an_enrolment_token_on_the_line_page(client: TestClient) -> None:
    login(client, "a-tech")
    page = client.get("/console/lines/acme-xuhui-1").text
    assert 'id="enrol-form"' in page
    r = client.post("/console/lines/acme-xuhui-1/enrolment-token", data={"csrf": csrf_of(page), "agent_id": "new-gw"})
    assert r.status_code == 200
    token = re.search(r'id="enrol-token">.*?<code>(new-gw\.[A-Za-z0-9_-]+)</code>', r.text, re.S)
    assert token, "the token is shown once on the page"
    assert f"--token '{token.group(1)}'" in r.text.replace("&#39;", "'")
    # The same command as a QR code for the technician's phone, read back by an independent decoder.
    command = re.search(r"<code>(linecheck-agent enroll [^<]+)</code>", r.text).group(1).replace("&#39;", "'")
    qr = re.search(r'<figure class="qr" id="enrol-qr">(<svg.*?</svg>)', r.text, re.S)
    assert qr, "the enrolment command as a QR code"
    assert decode_svg(qr.group(1)) == [command]
    # acme-gw already speaks for this line: taking its id elsewhere is refused with the reason.
    r = client.post("/console/lines/acme-xuhui-1/enrolment-token", data={"csrf": csrf_of(page), "agent_id": "bravo-gw"})
    assert r.status_code == 409 and 'id="enrol-error"' in r.text and "taken by another line" in r.text
    assert client.post("/console/lines/acme-xuhui-1/enrolment-token",
                       data={"csrf": "0" * 32, "agent_id": "x-gw"}).status_code == 403
    assert client.post("/console/lines/bravo-pudong-1/enrolment-token",
                       data={"csrf": csrf_of(page), "agent_id": "x-gw"}).status_code == 404
    login(client, "a-viewer")
    page = client.get("/console/lines/acme-xuhui-1").text
    assert 'id="enrol-form"' not in page
    assert client.post("/console/lines/acme-xuhui-1/enrolment-token",
                       data={"csrf": csrf_of(page), "agent_id": "x-gw"}).status_code == 403


def test_acceptance_report_from_the_line_page_is_signed_for_the_technician(client: TestClient,
                                                                          tmp_path: Path) -> None:
    from collector.promises import acceptance
    from collector.promises.criterion import PromisePolicy

    client.app.state.promises = PromisePolicy(signing_key_file=tmp_path / "signing.key")  # type: ignore[attr-defined]
    login(client, "a-tech")
    page = client.get("/console/lines/acme-xuhui-1").text
    url = "/console/lines/acme-xuhui-1/promises/acme-xuhui-1-speed/acceptance"
    assert f'href="{url}"' in page
    r = client.get(url)
    assert r.status_code == 200
    report = acceptance.verify(r.text)  # raises if the signature does not match the content
    assert report.payload["technician"] == "a-tech" and report.payload["line"]["line_id"] == "acme-xuhui-1"
    assert report.payload["verdict"]["promise_id"] == "acme-xuhui-1-speed"
    # Another line's promise under this line, or another carrier's line: not found.
    assert client.get("/console/lines/acme-xuhui-1/promises/acme-xuhui-2-speed/acceptance").status_code == 404
    assert client.get("/console/lines/bravo-pudong-1/promises/bravo-pudong-1-speed/acceptance").status_code == 404
    login(client, "a-viewer")
    assert client.get(url).status_code == 403


def test_fleet_page_is_paged_and_filtered(client: TestClient, fleet: Fleet) -> None:
    lines = [{"line_id": f"bulk-{i:03d}", "tenant_id": "sh-telecom", "site_id": "tel-jingan"} for i in range(60)]
    with fleet.engine.begin() as conn:
        registry.import_registry(conn, registry.Registry.model_validate({"lines": lines}))
    login(client, "a-admin")
    page = client.get("/console/").text
    rows = re.findall(r'class="line-link"', page)
    assert len(rows) == 25 and "total 63" in page  # 60 + 3 of tenant A: one page, not the fleet
    last = client.get("/console/", params={"page": 3}).text
    assert len(re.findall(r'class="line-link"', last)) == 13
    problems = client.get("/console/", params={"status": "problems"}).text
    assert re.findall(r'class="line-link">([^<]+)<', problems) == ["acme-xuhui-1"]


def test_language_from_browser_then_switch_sticks(client: TestClient) -> None:
    login(client, "a-ent")
    zh = client.get("/console/", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}).text
    assert '<html lang="zh-CN">' in zh and "线路总览" in zh
    en = client.get("/console/", params={"lang": "en"}, headers={"Accept-Language": "zh-CN"}).text
    assert '<html lang="en">' in en and "Fleet" in en
    again = client.get("/console/", headers={"Accept-Language": "zh-CN"}).text  # the cookie wins now
    assert '<html lang="en">' in again


def test_every_text_used_by_a_template_is_translated() -> None:
    used = set()
    for path in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r't\("([a-z_0-9]+)"\)', path.read_text()))
        used |= set(re.findall(r"t\('([a-z_0-9]+)'\)", path.read_text()))
    assert used, "no texts found"
    for lang in LANGUAGES:  # the console's section of the shared catalogue (linecheck/i18n)
        texts = catalogue(lang).console
        assert not used - set(texts), f"{lang}: texts without a translation: {sorted(used - set(texts))}"
        for key, text in texts.items():
            assert text.strip(), (lang, key)
    assert i18n.pick("en-US,en;q=0.9") == "en" and i18n.pick("zh-TW") == "zh-CN" and i18n.pick(None) == "en"


def test_chart_breaks_the_line_at_a_failed_measurement() -> None:
    t0 = datetime(2024, 5, 1, tzinfo=UTC)
    points = [(t0 + timedelta(hours=i), v) for i, v in enumerate([480.0, 470.0, None, 465.0, 460.0])]
    svg = charts.render(charts.Chart("Throughput", "Mbit/s", [charts.Series("down", points)],
                                     [charts.Reference(500, "plan 500")]), ZoneInfo("UTC"))
    assert svg.count("<polyline") == 2  # two runs either side of the gap, never a drop to zero
    assert svg.count("<circle") == 4 and "plan 500" in svg and "stroke-dasharray" not in svg.split("<polyline")[1]
    zero_y = re.findall(r'<text x="46" y="([0-9.]+)" text-anchor="end" class="tick">0</text>', svg)
    assert zero_y and all(f",{zero_y[0]}" not in run for run in re.findall(r'points="([^"]+)"', svg))
    empty = charts.render(charts.Chart("Latency", "ms", [charts.Series("rtt", [])]), ZoneInfo("UTC"), "none yet")
    assert "none yet" in empty and "<polyline" not in empty
    for lo, hi in ((0, 487), (0, 7.5), (0, 1), (0, 1040), (3, 41)):
        ticks = charts.nice_ticks(lo, hi)
        steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:], strict=False)}
        assert ticks[0] <= lo and ticks[-1] >= hi and len(steps) == 1 and 2 <= len(ticks) <= 6, (lo, hi, ticks)


def test_every_time_a_page_shows_carries_its_zone(client: TestClient, fleet: Fleet) -> None:
    """A time copied out of a page keeps its meaning: each one carries the offset of the console's zone."""
    assert login(client, "a-admin").status_code == 303
    stamp = re.compile(r"\b\d{4}-\d\d-\d\d \d\d:\d\d\b")
    pages = ["/console/tickets", f"/console/tickets/{fleet.tickets['acme-xuhui-1']}", "/console/lines/acme-xuhui-1",
             "/console/agents"]
    seen = 0
    for page in pages:
        r = client.get(page)
        assert r.status_code == 200, page
        text = re.sub(r"<[^>]+>", " ", r.text)
        for m in stamp.finditer(text):
            seen += 1
            assert re.match(r" [+-]\d\d:\d\d", text[m.end():]), f"{page}: {text[m.start():m.end() + 12]!r}"
    assert seen >= 4
    svg = charts.render(charts.Chart("Throughput", "Mbit/s", [charts.Series("down", [
        (datetime(2024, 5, 1, 1, 30, tzinfo=UTC), 480.0)])]), ZoneInfo("Asia/Shanghai"))
    assert "2024-05-01 09:30 +08:00" in svg


def test_the_line_page_shows_the_outages_between_checks_on_a_timeline(client: TestClient, fleet: Fleet) -> None:
    """The heartbeat's outages (agent/heartbeat.py), as the next result carried them, drawn per local day:
    a bar per outage with its times in the console's zone; one across midnight on both days."""
    from linecheck.wire import CheckResult, Status
    from tests.factory import envelope

    now = datetime.now(UTC)
    # This test app shows UTC (a collector's http.timezone sets it): 09:00, and 23:58 for 4 minutes.
    start = now.replace(hour=9, minute=0, second=0, microsecond=0) - timedelta(days=1)
    late = (now - timedelta(days=3)).replace(hour=23, minute=58, second=0, microsecond=0)
    drops = [(start, 90.0, "gateway"), (late, 240.0, "link")]
    checks = [CheckResult(kind="heartbeat", status=Status.DEGRADED, duration_s=0, metrics={"outages_count": 2})]
    checks += [CheckResult(kind="outage", status=Status.DEGRADED, duration_s=0, target=where,
                           metrics={"started_unix_s": at.timestamp(), "ended_unix_s": at.timestamp() + s,
                                    "duration_s": s}) for at, s, where in drops]
    assert fleet.store.ingest([envelope("acme-gw", "acme-xuhui-1", checks, started_at=now, site_id="acme-xuhui")])
    assert login(client, "a-admin").status_code == 303
    page = client.get("/console/lines/acme-xuhui-1").text
    timeline = page[page.index("Outages between checks"):]
    timeline = timeline[:timeline.index("</svg>")]
    bars = re.findall(r"<rect [^>]*fill=\"#[0-9a-f]{6}\"><title>([^<]+)</title>", timeline)
    assert len(bars) == 3, bars  # the late one is drawn on both days it touches
    assert any("09:00 +00:00" in b and "90 s" in b and "first hop" in b for b in bars)
    assert sum("23:58 +00:00" in b and "WAN port" in b for b in bars) == 2
