"""The self-check report: plain-language texts in English and Chinese, snapshot-tested, and the CLI around it.

Snapshots live in tests/data/report/; after an intended change regenerate them with
`UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/test_report.py` and review the diff.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from agent.coverage import EXIT_NOT_FULLY_CHECKED, exit_code
from agent.findings import CODES
from agent.reasons import because, reason_fields
from agent.report import render, render_html
from linecheck.i18n import LANGUAGES, Texts, catalogue, from_locale, placeholders
from linecheck.wire import CheckResult, ClockState, Finding, ReasonPart, ResultEnvelope, Status, Trigger, Verdict

SNAPSHOTS = Path(__file__).parent / "data" / "report"
CONTRACT_CODES = ["line_down", "target_unreachable", "packet_loss", "high_latency", "high_jitter", "dns_failure",
                  "wan_link_degraded", "gateway_unreachable", "pmtu_blackhole", "pmtu_reduced", "ipv6_unavailable",
                  "http_failure", "service_suspended", "wifi_weak", "throughput_below_plan"]


def problems_envelope() -> ResultEnvelope:
    """The office came back after 62 days: the port runs at 100M, some loss, DNS broken, a weak room."""
    return ResultEnvelope(
        result_id="01900000-0000-7000-8000-000000000001", agent_id="gw-0421", seq=17, line_id="sh-pd-100234",
        site_id="pudong-office-3", trigger=Trigger.RESUME_AFTER_IDLE, trigger_info={"idle_s": 62 * 86400 + 3000},
        started_at=datetime(2022, 6, 1, 1, 30, tzinfo=UTC), ended_at=datetime(2022, 6, 1, 1, 31, tzinfo=UTC),
        clock=ClockState(synced=True, source="kernel", max_error_ms=12.0), agent_version="0.1.0",
        verdict=Verdict.PROBLEMS,
        checks=[
            # Reasons as a real agent sends them: phrases (reason_parts) and their English text (reason).
            CheckResult(kind="link", status=Status.DEGRADED, duration_s=2.0, target="eth1",
                        **reason_fields(because("wan_speed_below_plan", speed_mbps=100, plan_mbps=500.0)),
                        metrics={"wan_up_flag": 1, "wan_speed_mbps": 100, "wan_full_duplex_flag": 1,
                                 "wan_mtu_bytes": 1500, "wan_carrier_changes_count": None}),
            CheckResult(kind="ping", status=Status.DEGRADED, duration_s=3.1, target="gateway (100.64.0.1)",
                        **reason_fields(because("probe_loss", target="gateway (100.64.0.1)", loss_pct=3.5)),
                        metrics={"sent_count": 200, "received_count": 193, "loss_pct": 3.5, "rtt_avg_ms": 4.21,
                                 "jitter_ms": 0.8, "rtt_min_ms": None}),
            CheckResult(kind="dns", status=Status.FAILED, duration_s=5.0, target="100.64.0.53",
                        **reason_fields(because("dns_timeout", resolver="100.64.0.53", name="www.example.cn",
                                                rdtype="A", wait_s=2.0)), metrics={"answer_ms": None}),
            CheckResult(kind="throughput", status=Status.SKIPPED, duration_s=0.0,
                        **reason_fields(because("gate_gave_up", threshold_kbps=200.0, waited_s=600.0,
                                                last_kbps=48210.0))),
            # A newer agent's reason this version has no phrase for: its English text, in every language.
            CheckResult(kind="traceroute", status=Status.DEGRADED, duration_s=1.0, target="198.18.0.9",
                        reason="a newer agent's reason <b>in English</b>",
                        reason_parts=[ReasonPart(key="from_a_newer_agent", args={"target": "198.18.0.9"})]),
        ],
        findings=[
            Finding(code="wan_link_degraded", severity="warning", check="link", where="cpe",
                    message="The gateway's WAN port runs at 100 Mbit/s: the 500 Mbit/s plan cannot reach this "
                            "office until the cable or port is fixed.",
                    detail={"wan_speed_mbps": 100, "plan_down_mbps": 500.0}),
            Finding(code="packet_loss", severity="warning", check="ping", where="wan",
                    message="3.5% of packets to gateway (100.64.0.1) are lost.",
                    detail={"target": "gateway (100.64.0.1)", "loss_pct": 3.5}),
            Finding(code="dns_failure", severity="critical", check="dns", where="dns",
                    message="The resolver 100.64.0.53 does not answer.", detail={"resolver": "100.64.0.53"}),
            Finding(code="wifi_weak", severity="warning", check="wifi", where="wifi",
                    message="Meeting room 2: the signal is -78 dBm.",
                    detail={"room": "Meeting room 2", "signal_dbm": -78}),
            Finding(code="frobnication_detected", severity="warning", check="future", where="wan",
                    message="A check from a newer agent found <frobnication> & said so in English."),
        ])


def healthy_envelope() -> ResultEnvelope:
    return ResultEnvelope(
        result_id="01900000-0000-7000-8000-000000000002", agent_id="gw-0421", seq=18, line_id="sh-pd-100234",
        site_id="pudong-office-3", trigger=Trigger.MANUAL, started_at=datetime(2022, 6, 1, 2, 0, tzinfo=UTC),
        ended_at=datetime(2022, 6, 1, 2, 0, 30, tzinfo=UTC), clock=ClockState(synced=False), agent_version="0.1.0",
        verdict=Verdict.HEALTHY,
        checks=[CheckResult(kind="link", status=Status.OK, duration_s=2.0, target="eth1",
                            metrics={"wan_up_flag": 1, "wan_speed_mbps": 1000, "wan_full_duplex_flag": 1}),
                CheckResult(kind="ping", status=Status.OK, duration_s=3.0, target="gateway (100.64.0.1)",
                            metrics={"loss_pct": 0.0, "rtt_avg_ms": 3.2})])


def text_report(envelope: ResultEnvelope, lang: str, width: int = 100) -> str:
    buf = io.StringIO()
    render(envelope, Console(file=buf, width=width, color_system=None, force_terminal=False), lang)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


def check_snapshot(name: str, got: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("UPDATE_SNAPSHOTS") or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got, encoding="utf-8")
        if not os.environ.get("UPDATE_SNAPSHOTS"):
            pytest.fail(f"snapshot {path} was missing and has been written: review it and run again")
    assert got == path.read_text(encoding="utf-8"), f"report differs from {path} (UPDATE_SNAPSHOTS=1 to accept)"


# The snapshots keep their short names (problems.zh.txt is quoted in the README).
@pytest.mark.parametrize("lang, suffix", [("en", "en"), ("zh-CN", "zh")])
@pytest.mark.parametrize("case, make", [("problems", problems_envelope), ("healthy", healthy_envelope)])
def test_report_snapshots(lang: str, suffix: str, case: str, make: object) -> None:
    envelope = make()  # type: ignore[operator]
    check_snapshot(f"{case}.{suffix}.txt", text_report(envelope, lang))
    check_snapshot(f"{case}.{suffix}.html", render_html(envelope, lang))


def test_the_short_code_is_the_same_language() -> None:
    """`zh` (the agent's old spelling, still accepted) renders exactly the zh-CN report."""
    assert text_report(problems_envelope(), "zh") == text_report(problems_envelope(), "zh-CN")
    assert render_html(problems_envelope(), "zh") == render_html(problems_envelope(), "zh-CN")


def test_problems_report_says_what_and_what_to_do_in_both_languages() -> None:
    en = text_report(problems_envelope(), "en", width=250)  # wide: no wrapping inside the phrases below
    zh = text_report(problems_envelope(), "zh", width=250)
    assert en.index("Problems found: 5.") < en.index("What to do")  # verdict first
    assert "runs at 100 Mbit/s: the 500 Mbit/s you pay for cannot reach you" in en
    assert "first check after 62 days without traffic" in en
    assert "发现 5 个问题" in zh and "闲置 62 天后恢复使用的首次检测" in zh
    assert "网关的 WAN 口只跑在 100 Mbit/s" in zh and "处理办法" in zh
    # DNS finding without the `name` detail: the plain sentence, not a half-filled template.
    assert "Name resolution (DNS) fails" in en and "{" not in en
    # An unknown code: the finding's own English sentence, the advice in the reader's language.
    assert "A check from a newer agent found <frobnication>" in zh and "请将本报告出示给运营商客服" in zh
    # Where the fault is, localised, with the room.
    assert "WiFi (Meeting room 2)" in en and "域名解析（DNS）" in zh and "WiFi（Meeting room 2）" in zh


def test_a_check_that_could_not_run_is_never_counted_as_passed() -> None:
    """The issue's case: as a user without ICMP, ping is skipped; the rest is healthy. Before, the report
    said "Your line is healthy. Every check passed." and the exit code was 0."""
    envelope = healthy_envelope()
    envelope.checks[1] = CheckResult(kind="ping", status=Status.SKIPPED, duration_s=0.1, target="gateway",
                                     reason="ICMP not permitted: add the agent's group to "
                                            "net.ipv4.ping_group_range or grant CAP_NET_RAW")
    en = text_report(envelope, "en")
    assert "healthy" not in en.splitlines()[1] and "Every check passed" not in en
    assert "? Not fully checked: 1 of 2 checks could not run." in en
    assert "Could not run (1 of 2):" in en and "• Ping (loss, latency): ICMP not permitted" in en
    assert "未完成全部检测：2 项检测中有 1 项无法运行。" in text_report(envelope, "zh-CN")
    html = render_html(envelope, "en")
    assert 'class="verdict incomplete"' in html and "<li><b>Ping (loss, latency): </b>ICMP not permitted" in html
    assert exit_code(envelope) == EXIT_NOT_FULLY_CHECKED
    # A check that crashed did not pass either; with a problem found the verdict stays "problems" (exit 1),
    # and what could not run is still listed.
    envelope.checks[1] = CheckResult(kind="ping", status=Status.ERROR, duration_s=0.1, reason="timed out after 5 s")
    assert "Not fully checked" in text_report(envelope, "en") and exit_code(envelope) == EXIT_NOT_FULLY_CHECKED
    problems = problems_envelope()
    text = text_report(problems, "en")
    assert exit_code(problems) == 1 and "Could not run (1 of 5):" in text and "• Speed test:" in text
    assert exit_code(healthy_envelope()) == 0 and "Could not run" not in text_report(healthy_envelope(), "en")


def test_html_report_is_standalone_and_escaped() -> None:
    page = render_html(problems_envelope(), "zh")
    assert page.startswith("<!DOCTYPE html>") and '<html lang="zh-CN">' in page
    assert "&lt;frobnication&gt; &amp; said" in page and "<frobnication>" not in page
    assert "<script" not in page and "http" not in page.split("<body>")[1].split("<footer>")[0].lower() \
        .replace("http_", "").replace("(http)", "")  # no external resources
    assert "src=" not in page and "href=" not in page


# --- the texts (linecheck/i18n; tests/test_i18n.py checks the catalogue itself) ----------------------
@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_finding_code_has_a_sentence_and_advice(lang: str) -> None:
    texts = catalogue(lang).findings
    for code in [*CONTRACT_CODES, *CODES]:
        assert code in texts, f"{lang}: no text for finding code {code}"
        text = texts[code]
        assert text.sentence and text.plain and text.advice
        assert not placeholders(text.plain) and not placeholders(text.advice)


def test_languages_have_the_same_keys_and_placeholders() -> None:
    en, zh = catalogue("en"), catalogue("zh-CN")
    for table in ("report", "status", "trigger", "where", "checks", "findings"):
        assert getattr(en, table).keys() == getattr(zh, table).keys(), table
    for code, text in en.findings.items():
        assert placeholders(text.sentence) == placeholders(zh.findings[code].sentence), code
    for key, text in en.report.items():
        assert placeholders(text) == placeholders(zh.report[key]), key
    assert {s.value for s in Status} == en.status.keys()
    assert {t.value for t in Trigger} == en.trigger.keys()


@pytest.mark.parametrize("lang", LANGUAGES)
def test_templates_fill_from_detail_or_fall_back(lang: str) -> None:
    t = Texts(lang)
    full = Finding(code="packet_loss", severity="warning", message="x",
                   detail={"target": "198.18.1.1", "loss_pct": 12.5})
    sentence, advice = t.finding(full)
    assert "198.18.1.1" in sentence and "12.5" in sentence and advice
    bare = Finding(code="packet_loss", severity="warning", message="x")
    assert t.finding(bare)[0] == catalogue(lang).findings["packet_loss"].plain


@pytest.mark.parametrize("env, lang", [
    ({"LANG": "zh_CN.UTF-8"}, "zh-CN"), ({"LANG": "en_US.UTF-8"}, "en"), ({}, "en"), ({"LANG": "C.UTF-8"}, "en"),
    ({"LC_ALL": "zh_TW.UTF-8", "LANG": "en_GB.UTF-8"}, "zh-CN"), ({"LC_ALL": "", "LANGUAGE": "zh_CN:en"}, "zh-CN"),
])
def test_language_defaults_from_the_locale(env: dict[str, str], lang: str) -> None:
    assert from_locale(env) == lang


# --- the CLI -------------------------------------------------------------------------------------------
def agent_yaml(tmp_path: Path) -> Path:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"agent_id: gw-rep\nline_id: l1\nsite_id: s1\ndata_dir: {tmp_path}/data\n"
                   "checks:\n  link: {window_s: 0.1}\n  ping: {targets: [127.0.0.1], count: 2, interval_s: 0.05}\n")
    return cfg


def run_cli(*args: str, lang_env: str = "en_US.UTF-8") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LC_")} | {"LANG": lang_env}
    return subprocess.run([sys.executable, "-m", "agent.cli", "check", *args], capture_output=True, text=True,
                          timeout=60, env=env)


def test_cli_json_is_quiet_and_machine_readable(tmp_path: Path) -> None:
    report = tmp_path / "r.html"
    out = run_cli("--config", str(agent_yaml(tmp_path)), "--json", "--save-report", str(report))
    assert out.returncode in (0, 1, 3), out.stderr
    assert out.stderr == ""  # no progress bar, no "saved" line
    envelope = ResultEnvelope.from_json(out.stdout)
    assert envelope.trigger is Trigger.MANUAL and json.loads(out.stdout)["schema"] == 1
    assert report.read_text().startswith("<!DOCTYPE html>")


def test_cli_report_language_from_locale_and_flag(tmp_path: Path) -> None:
    cfg = str(agent_yaml(tmp_path))
    zh = run_cli("--config", cfg, "--no-spool", lang_env="zh_CN.UTF-8")
    assert zh.returncode in (0, 1, 3), zh.stderr
    assert "宽带线路自检" in zh.stdout and "WAN 链路" in zh.stdout
    report = tmp_path / "handover.html"
    en = run_cli("--config", cfg, "--no-spool", "--lang", "en", "--save-report", str(report), lang_env="zh_CN.UTF-8")
    assert "Line self-check" in en.stdout and f"Report saved to {report}" in en.stderr
    assert '<html lang="en">' in report.read_text()
    bad = run_cli("--config", cfg, "--no-spool", "--save-report", str(tmp_path / "missing" / "r.html"))
    assert bad.returncode == 2 and "cannot write the report" in bad.stderr


def test_readme_shows_the_current_sample_reports() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    for lang in ("en", "zh"):
        sample = (SNAPSHOTS / f"problems.{lang}.txt").read_text(encoding="utf-8")
        assert sample in readme, f"README sample ({lang}) is out of date: copy {SNAPSHOTS}/problems.{lang}.txt"
