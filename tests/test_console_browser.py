"""Headless Chromium against the console on a real HTTP server: sign in, fleet, a line, check now.

Screenshots go to tests/artifacts/ (kept by CI as artifacts). With LINECHECK_DOC_SCREENSHOTS=1 they
are also copied to docs/screenshots/, which is how the pictures in docs/console.md are made.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from collector.api.app import create_app
from collector.api.server import HTTPServer
from tests import browser
from tests.api_support import RecordingSender
from tests.fleet_data import PASSWORD, Fleet

pytestmark = pytest.mark.browser
DOCS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


@pytest.fixture
def console(fleet: Fleet, sender: RecordingSender) -> Iterator[str]:
    app = create_app(fleet.engine, commands=sender)
    app.state.timezone = ZoneInfo("Asia/Shanghai")
    server = HTTPServer(app, "127.0.0.1", 0)
    server.start()
    yield f"http://127.0.0.1:{server.port}"
    server.stop()


@pytest.fixture
def chrome() -> Iterator[object]:
    why = browser.missing()
    if why:
        pytest.skip(why)
    driver = browser.chromium()
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait_id(driver, element_id: str, text: str | None = None):  # type: ignore[no-untyped-def]
    """The element once the page that has it is loaded (and shows `text`): a click's navigation is async."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 15)
    if text is not None:
        wait.until(ec.text_to_be_present_in_element((By.ID, element_id), text))
    return wait.until(ec.presence_of_element_located((By.ID, element_id)))


def shoot(driver: object, name: str) -> None:
    path = browser.screenshot(driver, name)
    assert path.stat().st_size > 10_000  # a rendered page, not a blank
    if os.environ.get("LINECHECK_DOC_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS / path.name)


def test_sign_in_fleet_line_ticket_and_check_now(console: str, chrome, sender: RecordingSender,  # type: ignore[no-untyped-def]
                                                fleet: Fleet) -> None:
    from selenium.webdriver.common.by import By

    d = chrome
    d.get(console + "/console/")
    assert "/console/login" in d.current_url
    d.find_element(By.ID, "user").send_keys("a-admin")
    d.find_element(By.ID, "password").send_keys(PASSWORD)
    d.find_element(By.ID, "login-submit").click()
    table = wait_id(d, "fleet-table")
    links = [a.text for a in table.find_elements(By.CLASS_NAME, "line-link")]
    assert links == ["acme-xuhui-1", "acme-xuhui-2", "tel-jingan-1"]  # tenant A only
    assert "problems" in table.text
    shoot(d, "console-fleet")

    d.find_element(By.LINK_TEXT, "acme-xuhui-1").click()
    wait_id(d, "line-title", "acme-xuhui-1")
    svgs = d.find_elements(By.CSS_SELECTOR, "#charts svg")
    assert len(svgs) == 4  # three metric charts, then the outage timeline of the last seven days
    assert "outage" in svgs[3].get_attribute("aria-label").lower()
    assert svgs[0].find_elements(By.TAG_NAME, "polyline") and "plan down 500" in svgs[0].text
    assert "packet_loss" in d.find_element(By.ID, "findings").text
    shoot(d, "console-line")

    d.find_element(By.ID, "check-now").click()
    wait_id(d, "notice", "Check requested")
    assert sender.sent == [("acme-gw", "check_now")]

    # The line's open ticket, on the board, then moved along its lifecycle.
    d.find_element(By.ID, "nav-tickets").click()
    board = wait_id(d, "ticket-board")
    tid = fleet.tickets["acme-xuhui-1"]
    assert f"#{tid} packet_loss" in d.find_element(By.ID, "col-open").text
    assert "high_latency" in d.find_element(By.ID, "col-acknowledged").text
    assert "bravo" not in board.text
    shoot(d, "console-tickets")
    d.find_element(By.ID, f"ticket-{tid}").click()
    wait_id(d, "ticket-state", "open")
    d.find_element(By.NAME, "note").send_keys("customer called, on it")
    d.find_element(By.ID, "to-acknowledged").click()
    wait_id(d, "ticket-state", "acknowledged")
    events = d.find_element(By.ID, "events").text
    assert "customer called, on it" in events and "a-admin" in events
    d.find_element(By.ID, "to-dispatched").click()
    wait_id(d, "ticket-state", "dispatched")
    shoot(d, "console-ticket")
    d.find_element(By.ID, "nav-tickets").click()
    wait_id(d, "col-dispatched", f"#{tid}")

    d.get(console + "/console/promises")
    assert "Xuhui" in wait_id(d, "compliance-table").text
    assert "acme-xuhui-2" in d.find_element(By.ID, "verdicts-table").text
    shoot(d, "console-promises")

    d.get(console + "/console/agents")
    wait_id(d, "agents-table", "acme-gw")
    shoot(d, "console-agents")

    d.get(console + "/console/?lang=zh-CN")
    wait_id(d, "lang-switch", "English")
    assert d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-CN"
    assert "线路总览" in d.find_element(By.CSS_SELECTOR, "nav").text
    shoot(d, "console-fleet-zh")

    d.find_element(By.ID, "logout").click()
    wait_id(d, "login-form")
    assert "/console/login" in d.current_url
