"""A LibreSpeed-protocol client in a real browser completes against linecheck-testserver.

The LibreSpeed project's own JavaScript client is not packaged anywhere this project can install
from (PyPI's `librespeed` 1.0.0a1 is an empty placeholder), so the client is the speed test page
linecheck-testserver serves at `/`: it speaks LibreSpeed's protocol (getIP.php, empty.php pings,
parallel garbage.php downloads and empty.php uploads) from headless Chromium's real XHR stack.
The page is loaded from one server and tests against a second one, so CORS preflights are
exercised as in a LibreSpeed deployment whose page and backend live on different origins.
"""

from __future__ import annotations

import pytest

from tests import browser
from tests.helpers import wait_for
from testserver.http import Limits, ThroughputServer

pytestmark = pytest.mark.browser


def test_librespeed_protocol_client_in_chromium_completes() -> None:
    why = browser.missing()
    if why:
        pytest.skip(why)
    with ThroughputServer("127.0.0.1", 0) as page, ThroughputServer("127.0.0.1", 0, Limits(idle_s=30)) as backend:
        driver = browser.chromium()
        try:
            driver.get(f"{page.url}/?server={backend.url}&seconds=1.5&streams=4&autostart=1")
            result = wait_for(lambda: driver.execute_script("return window.speedResult"), 60,
                              "the browser speed test to finish")
            browser.screenshot(driver, "testserver-speedtest")
            assert result["status"] == "ok", result
            assert result["ip"] == "127.0.0.1"
            assert 0 < result["ping_ms"] < 1000
            assert result["down_mbps"] > 50 and result["bytes_down"] > 10 * 1024 * 1024
            assert result["up_mbps"] > 50 and result["bytes_up"] > 10 * 1024 * 1024
            assert driver.find_element("id", "state").text == "done"
            # The backend, not the page's server, carried the test (one test by the browser's address).
            assert backend.status()["tests_running"] == 1
        finally:
            driver.quit()
