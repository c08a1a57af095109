"""service_state: is the line cut off at the carrier (suspended for arrears, captive)?

Carriers promised "no disconnection for arrears". A suspended line usually still has link, a
gateway and often DNS; what changes is what the carrier's network does with the office's traffic:
  - http_redirect: a plain-HTTP probe URL with a known answer is redirected to a portal;
  - http_content:  it answers, but not with the known answer (a portal page injected in place);
  - dns_hijack:    a name with known addresses resolves somewhere else (the portal);
  - blocked:       the probe URL is unreachable while the carrier's portal answers.
A probe URL that failed only because its name did not resolve is a DNS fault, never evidence of a
suspension: the check then cannot tell, and the dns check's dns_failure stands (tests/test_verdicts_lab.py).
"Cannot tell" (the probe's name does not resolve, or nothing answers at all) is `skipped` with the reason:
the question was not answerable, and a red `failed` row with no finding of its own was a problem the
report's count left out (issue 23); the checks that can see the fault (dns, link, ping) report it.
Any of these is `failed` with `service_suspended` (critical, where=service) and the evidence
(mode, portal address) in the finding, so an enterprise can show it was cut off.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field

from agent.checks.base import CheckConfig, CheckContext, CheckSpec, Measurement
from agent.checks.http import Fetch, fetch, getaddrinfo
from agent.findings import finding
from agent.reasons import because, step
from linecheck.i18n.phrases import Phrase
from linecheck.wire import MetricValue, Status


class ServiceStateConfig(CheckConfig):
    probe_url: str = Field(default="http://connect.rom.miui.com/generate_204",
                           description="Plain-HTTP URL with a known answer (captive-portal probe style)")
    expect_status: int = Field(default=204, ge=100, le=599)
    expect_body_contains: str | None = Field(default=None, description="Text the known answer contains")
    portal_url: str | None = Field(default=None, description="The carrier's portal, to tell 'blocked' from 'down'")
    dns_name: str | None = Field(default=None, description="A name whose addresses are known (dns_expect)")
    dns_expect: list[str] = Field(default_factory=list, description="Addresses dns_name must resolve to")
    request_timeout_s: float = Field(default=5.0, gt=0, le=60)
    timeout_s: float = 30.0


def _suspended(mode: str, portal: str | None, evidence: Phrase, metrics: dict[str, MetricValue],
               target: str) -> Measurement:
    detail: dict[str, MetricValue | str] = {"mode": mode}
    if portal:
        detail["portal"] = portal[:200]
    sentence = {
        "http_redirect": f"The carrier redirects this office's web traffic to {portal}: the line looks suspended.",
        "http_content": "The carrier replaces web pages with its own page: the line looks suspended.",
        "dns_hijack": f"The carrier's DNS sends every name to {portal}: the line looks suspended.",
        "blocked": "Only the carrier's portal can be reached from this office: the line looks suspended.",
    }[mode]
    metrics["suspended_flag"] = 1
    return Measurement(Status.FAILED, [because("suspended", mode=mode), evidence], metrics, target,
                       [finding("service_suspended", "critical", "service_state", sentence, detail)])


def _resolve(name: str, timeout_s: float) -> list[str]:
    return sorted({info[4][0] for info in getaddrinfo(name, None, timeout_s)})


def run(cfg: ServiceStateConfig, ctx: CheckContext) -> Measurement:
    metrics: dict[str, MetricValue] = {"suspended_flag": None, "http_status_num": None, "redirect_flag": None,
                                       "dns_hijack_flag": None}
    target = cfg.probe_url
    ctx.progress(step("http_get", url=cfg.probe_url))
    probe: Fetch = fetch(cfg.probe_url, min(cfg.request_timeout_s, max(0.1, ctx.remaining())), max_body=65536)
    metrics["http_status_num"] = probe.status_code
    if probe.status_code is not None:
        redirected = 300 <= probe.status_code < 400 and bool(probe.location)
        metrics["redirect_flag"] = int(redirected)
        if redirected and probe.status_code != cfg.expect_status:
            return _suspended("http_redirect", probe.location,
                              because("probe_redirected", url=cfg.probe_url, status=probe.status_code,
                                      location=probe.location or ""), metrics, target)
        expected_body = cfg.expect_body_contains is None or cfg.expect_body_contains.encode() in probe.body
        if probe.status_code != cfg.expect_status or not expected_body:
            answer = "probe_unexpected" if expected_body else "probe_unexpected_content"
            return _suspended("http_content", None, because(answer, url=cfg.probe_url, status=probe.status_code,
                                                            expected=cfg.expect_status), metrics, target)
    if cfg.dns_name and cfg.dns_expect:
        ctx.progress(step("resolve_name", name=cfg.dns_name))
        try:
            got = _resolve(cfg.dns_name, min(cfg.request_timeout_s, max(0.1, ctx.remaining())))
        except OSError:
            got = []  # a resolution failure is the dns check's business, not a hijack
        hijacked = bool(got) and not set(got) & set(cfg.dns_expect)
        metrics["dns_hijack_flag"] = int(hijacked) if got else None
        if hijacked:
            return _suspended("dns_hijack", got[0], because("dns_hijacked", name=cfg.dns_name, addresses=", ".join(got),
                                                            expected=", ".join(cfg.dns_expect)), metrics, target)
    if probe.status_code is None:
        if probe.failed_phase == "dns":
            # The probe never left the office: its name did not resolve. That is a DNS fault (the dns
            # check reports it), and says nothing about whether the carrier blocks the line — a DNS
            # outage read as "only the portal answers" opened critical service tickets (issue 21).
            return Measurement(Status.SKIPPED, because("cannot_tell_dns", name=urlsplit(cfg.probe_url).hostname or "",
                                                      diagnostic=probe.error or ""), metrics, target)
        if cfg.portal_url:
            portal = fetch(cfg.portal_url, min(cfg.request_timeout_s, max(0.1, ctx.remaining())), max_body=65536)
            if portal.status_code is not None:
                return _suspended("blocked", cfg.portal_url,
                                  because("probe_blocked", url=cfg.probe_url, diagnostic=probe.error or "",
                                          status=portal.status_code), metrics, target)
        # Nothing answers at all: a line fault the link/ping/dns checks explain, not a suspension.
        return Measurement(Status.SKIPPED, because("cannot_tell_unreachable", url=cfg.probe_url,
                                                  diagnostic=probe.error or ""), metrics, target)
    metrics["suspended_flag"] = 0
    return Measurement(Status.OK, None, metrics, target)


SPEC = CheckSpec(kind="service_state", config=ServiceStateConfig, run=run)
