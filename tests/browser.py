"""Headless Chromium (Debian's chromium + chromedriver) driven by Selenium, for console tests."""

from __future__ import annotations

import shutil
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).parent / "artifacts"


def missing() -> str | None:
    """Why the browser cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists() and not shutil.which(Path(path).name):
            return f"{path} is not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


# Every request for a host other than loopback goes to a proxy that is not there and fails: a page
# that needs the internet (a CDN) breaks as it would on a carrier's closed network.
OFFLINE = ("--proxy-server=http://127.0.0.1:9",  # loopback itself bypasses a proxy (Chromium's implicit rule)
           "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")


def chromium(width: int = 1366, height: int = 900, lang: str = "en",  # type: ignore[no-untyped-def]
             extra_flags: tuple[str, ...] = (), console_log: bool = False):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 f"--window-size={width},{height}", f"--lang={lang}", "--disable-dev-shm-usage", *extra_flags):
        opts.add_argument(flag)
    opts.add_experimental_option("prefs", {"intl.accept_languages": lang})
    if console_log:  # driver.get_log("browser"): CSP violations and failed loads are SEVERE entries
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def screenshot(driver, name: str) -> Path:  # type: ignore[no-untyped-def]
    """Full-page screenshot into tests/artifacts/NAME.png (the page's whole height, not just the window)."""
    ARTIFACTS.mkdir(exist_ok=True)
    # The content's own height (the footer's bottom), not the viewport's: no empty band under short pages.
    height = driver.execute_script(
        "const f = document.querySelector('footer'); return f ? f.getBoundingClientRect().bottom + window.scrollY"
        " + 16 : document.body.scrollHeight")
    width = driver.get_window_size()["width"]
    # The window's outer size includes the browser's own bars: add what they take from the viewport.
    frame = driver.execute_script("return window.outerHeight - window.innerHeight")
    driver.set_window_size(width, min(max(int(height), 400), 4000) + max(0, int(frame)))
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def until_text(driver, element_id: str, text: str, timeout_s: float = 15):  # type: ignore[no-untyped-def]
    """Wait until element `element_id` shows `text`, across the navigation a form post starts.

    While the old page is torn down, Chromium may answer a read of one of its elements with "Node with
    given id does not belong to the document" (a plain WebDriverException, not a stale-element one):
    that is the page changing, so the wait asks again; any other error ends it.
    """
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def shows(d) -> bool:  # type: ignore[no-untyped-def]
        try:
            return text in d.find_element(By.ID, element_id).text
        except StaleElementReferenceException:
            return False
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc) or "no such element" in str(exc):
                return False
            raise

    return WebDriverWait(driver, timeout_s).until(shows)
