"""The dispatch console (issue 24 item 3): queue, work order, crew steps, the line's access path, in
English and Chinese; in a headless browser too. Forms need the session's CSRF token; other carriers'
jobs are 404."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from collector.api.app import create_app
from collector.api.server import HTTPServer
from collector.incidents import topology
from collector.incidents.correlate import Correlator
from collector.incidents.decide import IncidentConfig
from collector.store import schema as t
from collector.web.pages_dispatch import WORDS
from tests import browser
from tests.api_support import RecordingSender
from tests.fleet_data import PASSWORD, Fleet
from tests.test_console import csrf_of, login

CABINET = "Xuhui/CO-XH1/OLT-2/PON-0-1"
MEMBERS = ["acme-xuhui-1", "acme-xuhui-2", "tel-jingan-1"]


def incident(fleet: Fleet) -> int:
    """Carrier A's three lines behind one cabinet go down: one incident (its ticket id is returned)."""
    corr = Correlator(IncidentConfig())
    now = datetime.now(UTC)
    with fleet.engine.begin() as conn:
        topology.store_paths(conn, [(x, f"{CABINET}/SPL-{i}") for i, x in enumerate(MEMBERS)])
        for x in MEMBERS:
            assert corr.hold(conn, x, "line_down", {"summary": f"Line down on {x}"}, now)
        corr.run(conn, now + timedelta(seconds=IncidentConfig().hold_s + 1))
        return int(conn.execute(select(t.incidents.c.ticket_id)).scalar_one())


def test_every_word_in_both_languages() -> None:
    assert set(WORDS["en"]) == set(WORDS["zh-CN"])
    assert all(v.strip() for table in WORDS.values() for v in table.values())


@pytest.mark.parametrize("lang, queue, incident_word", [("en", "Dispatch queue", "Area incident"),
                                                        ("zh-CN", "派单队列", "区域故障")])
def test_queue_work_order_and_steps(client: TestClient, fleet: Fleet, lang: str, queue: str,
                                    incident_word: str) -> None:
    tid = incident(fleet)
    login(client, "a-admin")
    page = client.get(f"/console/dispatch?lang={lang}").text
    assert queue in page and f'id="job-{tid}"' in page and incident_word in page and "bravo" not in page
    assert page.index(f'id="job-{tid}"') < page.index(f'id="job-{fleet.tickets["acme-xuhui-1"]}"')  # impact
    assert f'id="job-{tid}"' not in client.get("/console/dispatch?district=Pudong").text
    order = client.get(f"/console/dispatch/{tid}").text
    assert "Xuhui › CO-XH1 › OLT-2 › PON-0-1" in order and all(x in order for x in MEMBERS)
    assert 'href="/console/static/console.css"' in order and 'id="print"' not in order  # printed by the browser
    assert "@media print" in client.get("/console/static/console.css").text  # the chrome hides in print
    line = client.get("/console/lines/acme-xuhui-1").text
    assert 'id="line-access"' in line and "PON-0-1" in line and f'href="/console/dispatch/{tid}"' in line

    assert client.post(f"/console/dispatch/{tid}/assign", data={"csrf": "0" * 32, "assignee": "a-tech"},
                       follow_redirects=False).status_code == 403
    r = client.post(f"/console/dispatch/{tid}/assign", data={"csrf": csrf_of(order), "assignee": "b-tech"},
                    follow_redirects=False)  # hostile: the other carrier's technician
    assert r.status_code == 303 and "error=" in r.headers["location"]
    r = client.post(f"/console/dispatch/{tid}/assign", data={"csrf": csrf_of(order), "assignee": "a-tech"},
                    follow_redirects=False)
    assert r.status_code == 303 and "error" not in r.headers["location"]
    client.post(f"/console/dispatch/{tid}/arrive", data={"csrf": csrf_of(order), "note": "cabinet door open"})
    done = client.post(f"/console/dispatch/{tid}/close", data={"csrf": csrf_of(order), "note": "fibre spliced"}).text
    assert "cabinet door open" in done and "fibre spliced" in done and "resolved" in done
    with fleet.engine.connect() as conn:
        assert conn.execute(select(t.incidents.c.state)).scalar_one() == "resolved"
        own = conn.execute(select(t.tickets.c.line_id).where(t.tickets.c.fault_class == "line_down",
                                                             t.tickets.c.line_id.in_(MEMBERS))).scalars().all()
    assert sorted(own) == MEMBERS  # nobody recovered: each line's fault outlasted the incident


def test_other_carrier_gets_404(client: TestClient, fleet: Fleet) -> None:
    tid = incident(fleet)
    login(client, "b-admin")
    assert f'id="job-{tid}"' not in client.get("/console/dispatch").text
    page = client.get("/console/dispatch")
    assert client.get(f"/console/dispatch/{tid}").status_code == 404
    r = client.post(f"/console/dispatch/{tid}/close", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert r.status_code == 404
    with fleet.engine.connect() as conn:
        assert conn.execute(select(t.incidents.c.state)).scalar_one() == "open"


@pytest.fixture
def console(fleet: Fleet, sender: RecordingSender) -> Iterator[str]:
    app = create_app(fleet.engine, commands=sender)
    app.state.timezone = ZoneInfo("Asia/Shanghai")
    server = HTTPServer(app, "127.0.0.1", 0)
    server.start()
    yield f"http://127.0.0.1:{server.port}"
    server.stop()


@pytest.mark.browser
@pytest.mark.parametrize("lang, arrive_word, dispatched, arrived, resolved", [
    ("en", "Crew on site", "dispatched", "arrived", "resolved"), ("zh-CN", "已到现场", "已派单", "到场", "已修复")])
def test_browser_dispatch_in_both_languages(console: str, fleet: Fleet, lang: str, arrive_word: str, dispatched: str,
                                           arrived: str, resolved: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    why = browser.missing()
    if why:
        pytest.skip(why)
    tid = incident(fleet)
    d = browser.chromium(lang=lang)
    try:
        d.set_page_load_timeout(30)
        wait = WebDriverWait(d, 15)
        d.get(console + f"/console/login?lang={lang}")
        d.find_element(By.ID, "user").send_keys("a-admin")
        d.find_element(By.ID, "password").send_keys(PASSWORD)
        d.find_element(By.ID, "login-submit").click()
        wait.until(ec.presence_of_element_located((By.ID, "nav-dispatch"))).click()
        wait.until(ec.presence_of_element_located((By.ID, f"job-{tid}")))
        browser.screenshot(d, f"console-dispatch-{lang}")
        d.find_element(By.LINK_TEXT, f"#{tid}").click()
        browser.until_text(d, "order-node", "PON-0-1")
        d.find_element(By.ID, "assign").click()
        browser.until_text(d, "order-state", dispatched)  # states in the page's words
        assert d.find_element(By.ID, "arrive").text == arrive_word
        d.find_element(By.ID, "arrive").click()
        browser.until_text(d, "order-trail", arrived)
        browser.screenshot(d, f"console-work-order-{lang}")
        d.find_element(By.ID, "close").click()
        browser.until_text(d, "order-state", resolved)
    finally:
        d.quit()
