"""A check's reason and progress steps are phrases the reader's language renders (agent/reasons.py,
linecheck/i18n/phrases.py): the zh-CN self-check translates the details column and the progress line of real
checks; every phrase the agent names is catalogued; a hostile or newer phrase falls back, never breaks.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent import config as agent_config
from agent.cli import progress_label
from agent.reasons import because, english, reason_fields, step
from agent.report import build
from agent.runner import run_line_check
from linecheck.i18n import Texts, catalogue
from linecheck.i18n.phrases import Phrase
from linecheck.wire import REASON_PARTS_MAX, CheckResult, ReasonPart, ResultEnvelope, Status, Trigger
from tests.labdns import LabDNS

ROOT = Path(__file__).resolve().parent.parent
AGENT = ROOT / "agent"

# What may stay in Latin letters in a Chinese details column or progress line: units, acronyms and names
# that Chinese technical text writes this way, and codes (config keys, capabilities).
ALLOWED_WORDS = {"Mbit", "kbit", "ms", "dBm", "MHz", "GHz", "RPM", "WAN", "LAN", "MTU", "IPv6", "IPv4", "DNS",
                 "TLS", "HTTP", "HTTPS", "ICMP", "UDP", "TCP", "MSS", "ONT", "FTTR", "STAMP", "ARP", "CPU", "AAAA",
                 "A", "MCS", "PPPoE", "WiFi", "iw", "linecheck", "NXDOMAIN", "SERVFAIL", "REFUSED", "ID", "Ping"}
# config keys, capabilities, `commands`, file paths
CODE = re.compile(r"\b(?:[a-z0-9_]+\.)+[a-z0-9_]+\b|\bCAP_[A-Z_]+\b|`[^`]*`|(?<![\w/])/(?:[\w.-]+/)*[\w.-]+")


def english_words(text: str, data: list[str]) -> list[str]:
    """Runs of Latin letters in `text` that are neither data the check reported nor allowed words."""
    for value in sorted(data, key=len, reverse=True):
        if value:  # as a whole token: the rdtype "A" is not the A of NXDOMAIN, test_server not line.test_server's
            text = re.sub(rf"(?<![\w.]){re.escape(value)}(?![\w])", " ", text)
    text = CODE.sub(" ", text)
    return [w for w in re.findall(r"[A-Za-z][A-Za-z0-9]*", text) if w not in ALLOWED_WORDS]


def string_args(check: CheckResult) -> list[str]:
    """The data in a check's reason: its string arguments (targets, names, raw diagnostics) and its target."""
    return [str(v) for p in check.reason_parts for v in p.args.values() if isinstance(v, str)] + [check.target or ""]


def failing_config(tmp_path: Path, dns_port: int) -> dict:
    """Checks that fail or skip for reasons of every kind, all on this machine (loopback, missing interfaces,
    unset servers): nothing leaves the host."""
    return {
        "agent_id": "gw-zh", "line_id": "line-zh", "site_id": "site-zh", "data_dir": str(tmp_path),
        "line": {"wan_interface": "lcmissing0", "lan_interfaces": ["lcmissing1"]},
        "checks": {
            "link": {"window_s": 0.1},
            "ping": {"targets": ["127.0.0.1", "test_server"], "count": 2, "interval_s": 0.05},
            "udp_latency": {"server": "127.0.0.1", "port": 9, "count": 2, "interval_s": 0.05},
            "dns": {"resolvers": [f"127.0.0.1:{dns_port}", "127.0.0.1:9"], "names": ["nx.lab.test"],
                    "types": ["A"], "query_timeout_s": 0.5},
            "pmtu": {"target": "test_server"},
            "traceroute": {"target": "test_server"},
            "ipv6": {"expected": True, "target": None},
            "http": {"urls": ["http://127.0.0.1:9/", "ftp://127.0.0.1/"], "request_timeout_s": 1},
            "service_state": {"probe_url": "http://127.0.0.1:9/generate_204", "request_timeout_s": 1},
            "wifi": {"capture_dir": str(tmp_path)},
            "throughput": {},
        }}


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[ResultEnvelope, list[tuple[str, Phrase | str]]]:
    """One real line check of the failing config: the envelope, and every progress step the CLI was given."""
    tmp = tmp_path_factory.mktemp("zh")
    steps: list[tuple[str, Phrase | str]] = []
    with LabDNS("127.0.0.1", 0, {}) as server:  # answers NXDOMAIN for everything
        cfg = agent_config.AgentConfig.model_validate(failing_config(tmp, server.port))
        envelope = run_line_check(cfg, Trigger.MANUAL, on_check=lambda kind, said: steps.append((kind, said)))
    return envelope, steps


def test_the_zh_details_of_real_failing_checks_are_translated(real_run: tuple) -> None:
    envelope, _ = real_run
    failing = [c for c in envelope.checks if c.status is not Status.OK]
    kinds = {c.kind for c in failing}
    assert {"link", "ping", "udp_latency", "dns", "pmtu", "traceroute", "ipv6", "http", "service_state", "wifi",
            "throughput"} <= kinds, kinds
    view = build(envelope, "zh-CN")
    rows = [r for r, c in zip(view.checks, envelope.checks, strict=True) if c.status is not Status.OK]
    for row, check in zip(rows, failing, strict=True):
        assert check.reason_parts, (check.kind, check.reason)  # every reason of ours is catalogued
        assert row.details and not english_words(row.details, string_args(check)), (check.kind, row.details)
        assert re.search(r"[\u4e00-\u9fff]", row.details), row.details  # and it says something in Chinese
    # The English text on the wire (what an older collector shows) is rendered from the same phrases.
    for check in failing:
        assert check.reason == english([Phrase(p.key, dict(p.args)) for p in check.reason_parts])


def test_the_zh_cli_prints_the_translated_details(tmp_path: Path) -> None:
    with LabDNS("127.0.0.1", 0, {}) as server:
        path = tmp_path / "agent.yaml"
        path.write_text(json.dumps(failing_config(tmp_path, server.port)))  # JSON is YAML
        env = {k: v for k, v in os.environ.items() if not k.startswith("LC_")} | {"LANG": "zh_CN.UTF-8",
                                                                                   "COLUMNS": "400"}
        out = subprocess.run([sys.executable, "-m", "agent.cli", "check", "--config", str(path), "--no-spool"],
                             capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 1, out.stderr
    table = out.stdout.split("检测项目", 1)[1]
    for english_reason in ("does not exist", "is not configured", "no STAMP reflector", "not an http(s) URL",
                           "cannot tell", "no wireless interface", "no throughput server"):
        assert english_reason not in table, english_reason
    for chinese in ("WAN 接口“lcmissing0”不存在", "未配置 `line.test_server`", "上没有 STAMP 反射器在监听",
                    "不是 HTTP 或 HTTPS 网址", "无法判断", "采集数据中没有无线接口", "没有测速服务器"):
        assert chinese in table, chinese


def test_the_zh_progress_line_is_translated(real_run: tuple) -> None:
    _, steps = real_run
    zh, en = Texts("zh-CN"), Texts("en")
    seen = {k for k, _ in steps}
    assert {"ping", "dns", "http", "udp_latency", "service_state"} <= seen, seen
    for kind, said in steps:
        assert isinstance(said, Phrase), (kind, said)  # no check gives an uncatalogued step
        label = progress_label(zh, kind, said)
        plain = re.sub(r"\[/?(?:bold)?\]", "", label)
        assert not english_words(plain, [str(v) for v in said.args.values()] + [kind]), plain
        assert progress_label(en, kind, said) != label  # the English line is another text
    # e.g. the first step of every check names it in Chinese
    assert progress_label(zh, "dns", step("start")) == "[bold]域名解析[/]: 开始"


def _calls(tree: ast.AST, names: set[str]) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and (
        (isinstance(n.func, ast.Name) and n.func.id in names)
        or (isinstance(n.func, ast.Attribute) and n.func.attr in names))]


def _is_text(node: ast.AST | None) -> bool:
    """A sentence written in the code: a str literal, an f-string or a concatenation of them."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return True
    if isinstance(node, ast.JoinedStr):
        return True
    return isinstance(node, ast.BinOp) and (_is_text(node.left) or _is_text(node.right))


def test_every_phrase_the_agent_names_is_catalogued_and_no_check_writes_a_sentence() -> None:
    en = catalogue("en")
    named = {"because": en.reasons, "step": en.progress, "NotFound": en.reasons, "NotPermitted": en.reasons,
             "Explained": en.reasons}
    found: dict[str, set[str]] = {k: set() for k in named}
    sentences: list[str] = []
    for path in sorted(AGENT.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(ROOT)
        for call in _calls(tree, set(named)):
            name = call.func.id if isinstance(call.func, ast.Name) else call.func.attr  # type: ignore[union-attr]
            first = call.args[0] if call.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                assert first.value in named[name], f"{where}:{call.lineno} {name}({first.value!r}) is not catalogued"
                found[name].add(first.value)
        for call in _calls(tree, {"Measurement"}):
            reason = call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "reason"),
                                                                   None)
            if _is_text(reason):
                sentences.append(f"{where}:{call.lineno} Measurement")
        for call in _calls(tree, {"CheckResult"}):
            if _is_text(next((k.value for k in call.keywords if k.arg == "reason"), None)):
                sentences.append(f"{where}:{call.lineno} CheckResult")
        for call in _calls(tree, {"progress"}):
            if call.args and _is_text(call.args[0]):
                sentences.append(f"{where}:{call.lineno} progress")
    assert sentences == [], "a reason or step written as a sentence cannot be translated: use because()/step()"
    assert len(found["because"]) > 60 and len(found["step"]) >= 10  # the scan works
    # Keys built at run time: every variant exists.
    for key in ("wan_interface_missing", "lan_interface_missing", "dns_nxdomain", "dns_servfail", "dns_refused",
                "wifi_channel_busy_own", "wifi_cochannel_own"):
        assert key in en.reasons, key


@pytest.mark.parametrize("part, why", [
    (ReasonPart(key="from_a_newer_agent", args={}), "unknown key"),
    (ReasonPart(key="wan_down", args={}), "missing argument"),
    (ReasonPart(key="gateway_slow", args={"gateway": "x", "rtt_avg_ms": "fast"}), "a string where a number goes"),
    (ReasonPart(key="wan_down", args={"interface": "{interface.__class__}<script>"}), "markup and format fields"),
])
def test_a_hostile_or_newer_reason_part_renders_safely(part: ReasonPart, why: str) -> None:
    check = CheckResult(kind="link", status=Status.FAILED, duration_s=0.0, reason="the agent's own <b>English</b>",
                        reason_parts=[part])
    for lang in ("en", "zh-CN"):
        t = Texts(lang)
        text, html = t.reason(check), t.reason(check, html=True)
        assert "<script>" not in html and "<b>" not in html, (why, html)
        if why in ("unknown key", "missing argument"):
            assert text == "the agent's own <b>English</b>"
            assert html == "the agent&#x27;s own &lt;b&gt;English&lt;/b&gt;"
        elif why == "a string where a number goes":
            assert "fast" in text  # shown as the text it is, the format spec ignored
        else:
            assert "{interface.__class__}&lt;script&gt;" in html  # a value is never formatted again


def test_the_wire_bounds_reason_parts() -> None:
    ok = {"kind": "link", "status": "failed", "duration_s": 0.0, "reason": "x"}
    for bad in ({"reason_parts": [{"key": "Not-A-Key", "args": {}}]},
                {"reason_parts": [{"key": "wan_down", "args": {"interface": {"nested": 1}}}]},
                {"reason_parts": [{"key": "wan_down", "args": {"interface": "x" * 1001}}]},
                {"reason_parts": [{"key": "wan_down", "args": {}}] * (REASON_PARTS_MAX + 1)},
                {"reason_parts": [{"key": "wan_down", "args": {f"a{i}": 1 for i in range(33)}}]},
                {"reason_parts": [{"key": "wan_down", "args": {}, "extra": 1}]}):
        with pytest.raises(ValidationError):
            CheckResult.model_validate(ok | bad)
    CheckResult.model_validate(ok | {"reason_parts": [{"key": "wan_down", "args": {"interface": "eth1"}}]})


def test_english_is_rendered_from_the_same_phrases() -> None:
    fields = reason_fields([because("wan_speed_below_plan", speed_mbps=100, plan_mbps=500.0),
                            because("wan_half_duplex")])
    assert fields["reason"] == "WAN port negotiated 100 Mbit/s, below the 500 Mbit/s plan; WAN port is in half duplex"
    assert [p.key for p in fields["reason_parts"]] == ["wan_speed_below_plan", "wan_half_duplex"]
    zh = Texts("zh-CN").reason(CheckResult(kind="link", status=Status.DEGRADED, duration_s=0.0, **fields))
    assert zh == "WAN 口协商速率 100 Mbit/s，低于 500 Mbit/s 的套餐；WAN 口工作在半双工"
    with pytest.raises(ValueError, match="not in linecheck/i18n/en.toml"):
        because("no_such_reason")
    with pytest.raises(ValueError, match="needs"):
        because("wan_down")


def test_every_catalogued_metric_has_a_label_in_every_language() -> None:
    """The details column and the console show a figure by its label (linecheck/i18n [metrics]): a metric
    added to linecheck/metrics.csv without one would show its code to every reader."""
    from linecheck.catalogue import catalogue as metric_catalogue
    from linecheck.i18n import LANGUAGES

    names = {spec.name for spec in metric_catalogue().values()}
    for lang in LANGUAGES:
        labels = catalogue(lang).metrics
        assert sorted(names - labels.keys()) == [], lang
        assert sorted(labels.keys() - names) == [], f"{lang}: labels of metrics no check emits"
    assert Texts("zh-CN").metric("wan_speed_mbps", 100) == "WAN 速率 100 Mbit/s"
    assert Texts("zh-CN").metric("wan_up_flag", 1) == "WAN 在线 是"
    assert Texts("en").metric("spool_bytes", 81920) == "spool size 81920 B"
    assert Texts("zh-CN").metric("rtt_avg_ms", None) == "平均往返时延 —"  # not measured: no figure, no unit
