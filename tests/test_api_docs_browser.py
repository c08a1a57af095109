"""The API's reference pages work on a closed network (issue 23 item 3): headless Chromium with every
host but loopback unreachable opens /api/docs and /api/redoc on a real collector HTTP server, sees the
operations of the OpenAPI document rendered, loads nothing from anywhere but the server, and logs no
CSP violation. /docs and /redoc lead there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from collector.api.app import create_app
from collector.api.server import HTTPServer
from collector.store.database import Store
from tests import browser

pytestmark = pytest.mark.browser


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    store = Store(f"sqlite:///{tmp_path}/c.db")
    http = HTTPServer(create_app(store.engine), "127.0.0.1", 0)
    http.start()
    yield f"http://127.0.0.1:{http.port}"
    http.stop()
    store.close()


@pytest.fixture
def offline_chrome() -> Iterator[object]:
    why = browser.missing()
    if why:
        pytest.skip(why)
    driver = browser.chromium(extra_flags=browser.OFFLINE, console_log=True)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _loaded_from(driver: object) -> list[str]:
    return driver.execute_script(  # type: ignore[attr-defined,no-any-return]
        "return [location.href].concat(performance.getEntriesByType('resource').map(e => e.name))")


def _severe(driver: object) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]  # type: ignore[attr-defined]


def _operations(base: str) -> list[tuple[str, str]]:
    spec = httpx.get(base + "/api/openapi.json").json()
    return [(method.upper(), path) for path, ops in spec["paths"].items() for method in ops]


def test_swagger_ui_renders_every_operation_offline(server: str, offline_chrome) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    d = offline_chrome
    expected = _operations(server)
    assert len(expected) > 30
    d.get(server + "/docs")  # where FastAPI users look first
    assert d.current_url == server + "/api/docs"
    WebDriverWait(d, 30).until(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, ".opblock")) >= len(expected))
    shown = {(b.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text,
              b.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute("data-path"))
             for b in d.find_elements(By.CSS_SELECTOR, ".opblock")}
    assert shown == set(expected)
    assert "linecheck collector API" in d.find_element(By.CSS_SELECTOR, ".info .title").text
    assert [u for u in _loaded_from(d) if not u.startswith(server + "/")] == []
    assert _severe(d) == []
    browser.screenshot(d, "api-docs-swagger")


def test_redoc_renders_the_operations_offline(server: str, offline_chrome) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    d = offline_chrome
    expected = _operations(server)
    d.get(server + "/redoc")
    assert d.current_url == server + "/api/redoc"
    # ReDoc puts each operation's method and path in a panel beside its description.
    WebDriverWait(d, 30).until(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, "[data-section-id^='tag/']"))
                               >= len(expected))
    text = d.find_element(By.TAG_NAME, "body").text
    assert "linecheck collector API" in text and "/api/v1/lines" in text
    # ReDoc always asks for its maker's logo from their CDN (no option turns it off); the page's CSP
    # refuses it before any request leaves (img-src 'self' data:), and that refusal is all the log holds.
    logo = "https://cdn.redoc.ly/redoc/logo-mini.svg"
    assert [u for u in _loaded_from(d) if not u.startswith(server + "/")] in ([], [logo])
    severe = _severe(d)
    assert all(f"Loading the image '{logo}' violates the following Content Security Policy directive" in m
               for m in severe), severe


def test_the_docs_pages_name_no_other_host(server: str) -> None:
    """What the browser test proves, without a browser: the pages and the init script name no CDN."""
    for path in ("/api/docs", "/api/redoc", "/api/docs/swagger-init.js"):
        r = httpx.get(server + path)
        assert r.status_code == 200 and "http" not in r.text.replace("http-equiv", ""), path
    for path in ("/api/docs", "/api/redoc"):
        csp = httpx.get(server + path).headers["content-security-policy"]
        assert "script-src 'self';" in csp and "unsafe-inline'; img" in csp and "cdn" not in csp
        assert "'unsafe-eval'" not in csp and "script-src 'self' 'unsafe-inline'" not in csp
    assert httpx.get(server + "/api/docs/assets/redoc.standalone.js").status_code == 200
    assert httpx.get(server + "/api/docs/assets/%2e%2e/core.py").status_code == 404
