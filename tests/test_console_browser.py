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


def shoot(driver: object, name: str) -> None:
    path = browser.screenshot(driver, name)
    assert path.stat().st_size > 10_000  # a rendered page, not a blank
    if os.environ.get("LINECHECK_DOC_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS / path.name)


def test_sign_in_fleet_line_and_check_now(console: str, chrome, sender: RecordingSender) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    d = chrome
    d.get(console + "/console/")
    assert "/console/login" in d.current_url
    d.find_element(By.ID, "user").send_keys("a-admin")
    d.find_element(By.ID, "password").send_keys(PASSWORD)
    d.find_element(By.ID, "login-submit").click()
    table = d.find_element(By.ID, "fleet-table")
    links = [a.text for a in table.find_elements(By.CLASS_NAME, "line-link")]
    assert links == ["acme-xuhui-1", "acme-xuhui-2", "tel-jingan-1"]  # tenant A only
    assert "problems" in table.text
    shoot(d, "console-fleet")

    d.find_element(By.LINK_TEXT, "acme-xuhui-1").click()
    assert "acme-xuhui-1" in d.find_element(By.ID, "line-title").text
    svgs = d.find_elements(By.CSS_SELECTOR, "#charts svg")
    assert len(svgs) == 3
    assert svgs[0].find_elements(By.TAG_NAME, "polyline") and "plan down 500" in svgs[0].text
    assert "packet_loss" in d.find_element(By.ID, "findings").text
    shoot(d, "console-line")

    d.find_element(By.ID, "check-now").click()
    assert "Check requested" in d.find_element(By.ID, "notice").text
    assert sender.sent == [("acme-gw", "check_now")]

    d.get(console + "/console/agents")
    assert "acme-gw" in d.find_element(By.ID, "agents-table").text
    shoot(d, "console-agents")

    d.get(console + "/console/?lang=zh-CN")
    assert d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-CN"
    assert "线路总览" in d.find_element(By.CSS_SELECTOR, "nav").text
    shoot(d, "console-fleet-zh")

    d.find_element(By.ID, "logout").click()
    assert "/console/login" in d.current_url
