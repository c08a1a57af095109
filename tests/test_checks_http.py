"""http and service_state against real HTTP(S) servers: phase timings, errors, and a suspended line."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.checks import http as http_check
from agent.checks import service_state
from agent.checks.http import HttpConfig
from agent.checks.service_state import ServiceStateConfig
from agent.reasons import english
from linecheck.catalogue import unlisted
from linecheck.wire import Status
from tests.checkctx import make_ctx
from tests.lab import SERVER_ADDR, LineLab
from tests.labhttp import LabHTTP, self_signed


def test_http_and_https_phases_on_loopback(tmp_path: Path) -> None:
    cert = self_signed(tmp_path, "127.0.0.1")
    with LabHTTP("127.0.0.1") as plain, LabHTTP("127.0.0.1", cert=cert) as tls:
        cfg = HttpConfig(urls=[f"http://127.0.0.1:{plain.port}/", f"https://127.0.0.1:{tls.port}/",
                               f"http://127.0.0.1:{plain.port}/status/503"], ca_file=str(cert[0]))
        ok, secure, broken = http_check.run(cfg, make_ctx())
    assert ok.status is Status.OK and ok.metrics["status_num"] == 200 and ok.metrics["tls_handshake_ms"] is None
    assert secure.status is Status.OK, secure.reason
    assert secure.metrics["tls_handshake_ms"] > 0 and secure.metrics["ttfb_ms"] > 0
    assert secure.metrics["body_bytes"] == len(b"<html><body>linecheck lab</body></html>")
    assert broken.status is Status.FAILED and broken.findings[0].code == "http_failure"
    assert broken.findings[0].detail["status_code"] == 503
    for m in (ok, secure, broken):
        assert unlisted("http", set(m.metrics)) == []


def test_untrusted_certificate_and_refused_connection_are_failures_with_the_phase(tmp_path: Path) -> None:
    cert = self_signed(tmp_path, "127.0.0.1")
    with LabHTTP("127.0.0.1", cert=cert) as tls:
        [m] = http_check.run(HttpConfig(urls=[f"https://127.0.0.1:{tls.port}/"]), make_ctx())
        port = tls.port
    assert m.status is Status.FAILED and english(m.reason).startswith(f"https://127.0.0.1:{port}/: tls:")
    assert m.findings[0].detail["error"] == "tls" and m.metrics["connect_ms"] is not None
    [m] = http_check.run(HttpConfig(urls=[f"http://127.0.0.1:{port}/"]), make_ctx())
    assert m.status is Status.FAILED and m.findings[0].detail["error"] == "connect"
    assert m.metrics["connect_ms"] is None and m.metrics["ttfb_ms"] is None


def test_service_state_ok_and_catalogued() -> None:
    with LabHTTP("127.0.0.1") as web:
        m = service_state.run(ServiceStateConfig(probe_url=f"http://127.0.0.1:{web.port}/generate_204"), make_ctx())
    assert m.status is Status.OK and m.metrics["suspended_flag"] == 0
    assert unlisted("service_state", set(m.metrics)) == []


def test_portal_page_in_place_of_the_known_answer_is_suspension() -> None:
    with LabHTTP("127.0.0.1", mode="page") as web:
        m = service_state.run(ServiceStateConfig(probe_url=f"http://127.0.0.1:{web.port}/generate_204"), make_ctx())
    assert m.status is Status.FAILED and m.findings[0].detail["mode"] == "http_content"


@pytest.mark.lab
def test_portal_redirect_is_service_suspended(lab: LineLab) -> None:
    portal_url = "http://198.18.1.80/suspended?account=demo"
    with lab.inside(lab.carrier):
        web = LabHTTP(SERVER_ADDR, 80, mode="portal", portal_url=portal_url).start()
    try:
        with lab.inside(lab.gw):
            m = service_state.run(ServiceStateConfig(probe_url=f"http://{SERVER_ADDR}/generate_204"), make_ctx())
    finally:
        web.stop()
    assert m.status is Status.FAILED
    [f] = m.findings
    assert (f.code, f.where, f.severity) == ("service_suspended", "service", "critical")
    assert f.detail == {"mode": "http_redirect", "portal": portal_url}
    assert m.metrics["suspended_flag"] == 1 and m.metrics["http_status_num"] == 302


@pytest.mark.lab
def test_only_the_portal_reachable_is_blocked_suspension(lab: LineLab) -> None:
    portal = lab.add_address(lab.carrier, "198.18.1.80")
    with lab.inside(lab.carrier):
        web = LabHTTP(portal, 80, mode="page").start()
    try:
        cfg = ServiceStateConfig(probe_url=f"http://{SERVER_ADDR}/generate_204", portal_url=f"http://{portal}/",
                                 request_timeout_s=1)
        with lab.inside(lab.gw):
            m = service_state.run(cfg, make_ctx())
        lab.sh(lab.carrier, f"ip addr del {portal}/32 dev lo")  # now nothing answers: not a suspension
        with lab.inside(lab.gw):
            down = service_state.run(cfg, make_ctx())
    finally:
        web.stop()
    assert m.findings[0].detail["mode"] == "blocked", m.reason
    assert down.status is Status.SKIPPED and not down.findings and english(down.reason).startswith("cannot tell")
    assert down.metrics["suspended_flag"] is None
