"""The contracts in linecheck/ (findings.csv, kinds.csv) hold on both sides: a code the agent emits is
catalogued, a code a rule or a translation names is emitted, kinds are imported rather than retyped,
check titles have one source, and the agent and the collector judge speed the same way."""

from __future__ import annotations

import ast
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from agent import localise
from agent.checks import REGISTRY
from agent.checks.base import CheckContext, LineInfo
from agent.checks.throughput import ThroughputConfig, judge
from collector.fleet import registry
from collector.rules.engine import DEFAULT_RULES, Plan, RuleEngine, RulesConfig
from collector.store import schema as t
from collector.store.database import Store
from linecheck import catalogue, speed
from linecheck.i18n import LANGUAGES, placeholders
from linecheck.i18n import catalogue as texts
from linecheck.wire import AGENT_CHECK, CheckResult, Status
from tests.factory import envelope, link_check, ping_check

ROOT = Path(__file__).resolve().parent.parent
AGENT_DIR = ROOT / "agent"
LINE, AGENT = "l-1", "gw-1"


# --- what the agent emits, read from its source --------------------------------------------------------
def _call_name(call: ast.Call) -> str | None:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


class _Module:
    """One agent module's syntax tree with parents, to follow a code from a call back to its literals."""

    def __init__(self, path: Path):
        self.path = path
        self.tree = ast.parse(path.read_text(encoding="utf-8"))
        self.parent: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parent[child] = node

    def function_of(self, node: ast.AST) -> ast.FunctionDef | None:
        while node in self.parent:
            node = self.parent[node]
            if isinstance(node, ast.FunctionDef):
                return node
        return None

    def calls(self) -> Iterator[ast.Call]:
        return (n for n in ast.walk(self.tree) if isinstance(n, ast.Call))

    def literals(self, expr: ast.AST | None, where: ast.AST, depth: int = 0) -> set[str] | None:
        """The string literals `expr` can be; None when it cannot be told from the source."""
        if expr is None or depth > 5:
            return None
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return {expr.value}
        if isinstance(expr, ast.IfExp):
            a, b = self.literals(expr.body, where, depth + 1), self.literals(expr.orelse, where, depth + 1)
            return None if a is None or b is None else a | b
        if not isinstance(expr, ast.Name):
            return None
        func = self.function_of(where)
        if func is None:
            return None
        for node in ast.walk(func):  # a local assignment: code = "a" if x else "b"
            if isinstance(node, ast.Assign) and any(isinstance(tg, ast.Name) and tg.id == expr.id
                                                    for tg in node.targets):
                return self.literals(node.value, node, depth + 1)
        params = [a.arg for a in func.args.args]
        if expr.id not in params:
            return None
        index, found = params.index(expr.id), set()  # a parameter: what every caller passes
        callers = [c for c in self.calls() if _call_name(c) == func.name]
        for c in callers:
            got = self.literals(c.args[index] if index < len(c.args) else None, c, depth + 1)
            if got is None:
                return None
            found |= got
        return found or None


def _builds_finding(call: ast.Call) -> bool:
    """finding(...) or findings.finding(...): agent.findings.finding (Texts.finding is another thing)."""
    f = call.func
    return (isinstance(f, ast.Name) and f.id == "finding") or (
        isinstance(f, ast.Attribute) and f.attr == "finding" and isinstance(f.value, ast.Name)
        and f.value.id == "findings")


def _arg(call: ast.Call, index: int, name: str) -> ast.AST | None:
    if index < len(call.args):
        return call.args[index]
    return next((k.value for k in call.keywords if k.arg == name), None)


def _agent_modules() -> list[_Module]:
    return [_Module(p) for p in sorted(AGENT_DIR.rglob("*.py"))]


def emitted() -> dict[str, set[str]]:
    """code -> the severities written out where it is emitted, over every finding() call in agent/."""
    codes: dict[str, set[str]] = {}
    unknown: list[str] = []
    for mod in _agent_modules():
        for call in mod.calls():
            if not _builds_finding(call):
                continue
            got = mod.literals(_arg(call, 0, "code"), call)
            if got is None:
                unknown.append(f"{mod.path.relative_to(ROOT)}:{call.lineno}")
                continue
            severities = mod.literals(_arg(call, 1, "severity"), call) or set()
            for code in got:
                codes.setdefault(code, set()).update(severities)
    assert not unknown, f"cannot tell which finding code these calls emit (pass a literal): {unknown}"
    return codes


def test_every_finding_is_built_by_the_one_helper() -> None:
    """agent.findings.finding() checks the code against the catalogue; a Finding built by hand would not."""
    direct = [f"{m.path.relative_to(ROOT)}:{c.lineno}" for m in _agent_modules() if m.path != AGENT_DIR / "findings.py"
              for c in m.calls() if _call_name(c) == "Finding"]
    assert direct == []


def test_every_emitted_code_is_catalogued_and_every_catalogued_code_is_emitted() -> None:
    codes = emitted()
    assert catalogue.unknown_codes(set(codes)) == [], "emitted but not in linecheck/findings.csv"
    assert sorted(set(catalogue.findings()) - set(codes)) == [], "catalogued but emitted by no check"
    for code, severities in codes.items():
        allowed = catalogue.findings()[code].severities
        assert severities <= set(allowed), f"{code} emitted as {sorted(severities)}, catalogued as {allowed}"


def test_an_unknown_code_is_refused_where_findings_are_built() -> None:
    from agent.findings import finding

    with pytest.raises(ValueError, match="speed_below_plan.*not in linecheck/findings.csv"):
        finding("speed_below_plan", "warning", "throughput", "slow")


def test_the_collectors_rules_match_only_emitted_codes_and_catalogued_kinds() -> None:
    codes = emitted()
    for name, rule in DEFAULT_RULES.items():
        assert set(rule.findings) <= set(codes), f"rule {name} matches {rule.findings}: no check emits that"
        assert catalogue.unknown_kinds(rule.observed_by) == [], name
    assert "throughput_below_plan" in DEFAULT_RULES["speed_below_plan"].findings


def test_rules_config_refuses_unknown_codes_and_kinds_at_load() -> None:
    with pytest.raises(ValueError, match=r"classes.slow.findings: unknown finding code\(s\) \['speed_below_plan'\]"):
        RulesConfig.model_validate({"classes": {"slow": {"findings": ["speed_below_plan"]}}})
    with pytest.raises(ValueError, match=r"classes.slow.observed_by: unknown check kind\(s\) \['speedtest'\]"):
        RulesConfig.model_validate({"classes": {"slow": {"findings": ["packet_loss"], "observed_by": ["speedtest"]}}})


def test_localisation_names_only_emitted_codes() -> None:
    codes = set(emitted())
    for table in ("SPEED_CODES", "ROOM_SLOW_CODES", "WIFI_CAUSES", "SUSPENSION_SYMPTOMS", "LINE_DOWN_SYMPTOMS"):
        assert getattr(localise, table) <= codes, f"agent/localise.py {table}: {getattr(localise, table) - codes}"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_translations_cover_exactly_the_catalogue(lang: str) -> None:
    keys = {spec.text_key for spec in catalogue.findings().values()}
    assert set(texts(lang).findings) == keys, f"linecheck/i18n/{lang}.toml [findings] vs linecheck/findings.csv"
    assert set(texts(lang).checks) == set(catalogue.kinds())


def test_translated_sentences_use_only_documented_detail_keys() -> None:
    """A placeholder the finding's detail never carries silently falls back to the plain sentence."""
    for spec in catalogue.findings().values():
        documented = set(re.findall(r"`([a-z0-9_]+)`", spec.detail))
        for lang in LANGUAGES:
            full = texts(lang).findings[spec.text_key].sentence
            assert placeholders(full) <= documented, f"{lang} {spec.code}: {placeholders(full) - documented}"


def test_every_finding_names_the_tests_that_prove_it_and_they_exist() -> None:
    """docs/findings.md lists, for every code, the test that makes it happen (issue 21): a code without one,
    or a test that was renamed or removed, fails here."""
    root = Path(__file__).resolve().parent.parent
    for spec in catalogue.findings().values():
        assert spec.proven_by, f"linecheck/findings.csv: {spec.code} names no test in proven_by"
        for node in spec.proven_by:
            path, _, name = node.partition("::")
            source = root / path
            assert source.is_file(), f"{spec.code}: {path} does not exist"
            assert re.search(rf"^def {re.escape(name)}\(", source.read_text(), re.M), f"{spec.code}: no {node}"
            assert spec.code in source.read_text(), f"{spec.code}: {node} never names the code"


def test_locations_are_known() -> None:
    where = texts("en").where
    assert {spec.where for spec in catalogue.findings().values()} <= set(where)


# --- kinds ---------------------------------------------------------------------------------------------
def test_registry_and_kind_catalogue_agree() -> None:
    checks = {k for k, spec in catalogue.kinds().items() if spec.source == "check"}
    assert set(REGISTRY) == checks
    assert AGENT_CHECK == catalogue.AGENT and catalogue.kinds()[AGENT_CHECK].source == "agent"
    from agent.lan.record import KIND

    assert catalogue.kinds()[KIND].source == "lan"


def test_the_sample_config_configures_every_catalogued_check() -> None:
    from agent import config as agent_config

    cfg = agent_config.load(ROOT / "config" / "agent.example.yaml")
    assert set(cfg.checks) == {k for k, spec in catalogue.kinds().items() if spec.source == "check"}


def test_a_catalogued_check_without_its_module_fails_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.checks

    rows = dict(catalogue.kinds())
    rows["speedtest"] = catalogue.KindSpec("speedtest", "check", "Speed", "a check nobody wrote")
    monkeypatch.setattr(agent.checks, "kinds", lambda: rows)
    with pytest.raises(ImportError, match="lists check kind 'speedtest' but agent/checks/speedtest.py does not exist"):
        agent.checks._load()


def test_check_titles_have_one_source() -> None:
    for kind, spec in REGISTRY.items():
        assert spec.title == catalogue.kinds()[kind].title == texts("en").checks[kind]
    # Check modules do not write a title of their own (it would be ignored, and drift).
    pending = {"http.py"}  # owned by the issue-16 helpers; drop its title= and then this entry
    written = {p.name for p in (AGENT_DIR / "checks").glob("*.py")
               if re.search(r"CheckSpec\([^)]*title=", p.read_text())}
    assert written == pending


KIND_FILES = [*sorted((ROOT / "collector" / "promises").glob("*.py")), *sorted((AGENT_DIR / "lan").glob("*.py")),
              AGENT_DIR / "localise.py"]


@pytest.mark.parametrize("path", KIND_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_kinds_are_imported_not_retyped(path: Path) -> None:
    named = {catalogue.AGENT, catalogue.LINK, catalogue.THROUGHPUT, catalogue.WIFI_THROUGHPUT}
    mod = _Module(path)
    docstrings = {id(n.body[0].value) for n in ast.walk(mod.tree)
                  if isinstance(n, ast.Module | ast.FunctionDef | ast.ClassDef) and n.body
                  and isinstance(n.body[0], ast.Expr)}
    retyped = [f"{n.lineno}: {n.value!r}" for n in ast.walk(mod.tree) if isinstance(n, ast.Constant)
               and n.value in named and id(n) not in docstrings]
    assert retyped == [], "import the kind from linecheck.catalogue"


# --- one speed judgement -------------------------------------------------------------------------------
def _throughput(down: float | None, up: float | None = 280.0, flag: int | None = 0, capacity: float | None = None
                ) -> CheckResult:
    return CheckResult(kind="throughput", status=Status.OK, duration_s=10,
                       metrics={"down_mbps": down, "up_mbps": up, "capacity_down_mbps": capacity,
                                "cross_traffic_high_flag": flag})


SPEED_CASES = [
    # (down, capacity_down, cross-traffic flag, slow?)  plan 500/300: the limit is 250 down, 150 up
    (100.0, None, 0, True),
    (100.0, None, 1, None),  # the office's own traffic shared the line: says nothing
    (100.0, 260.0, 0, False),  # the capacity estimate (test + cross-traffic) wins over the test's rate
    (240.0, None, None, True),  # an older agent without the flag: trusted
    (260.0, None, 0, False),
    (None, None, 0, None),
]


@pytest.mark.parametrize("down, capacity, flag, slow", SPEED_CASES)
def test_agent_and_collector_judge_speed_the_same_way(down: float | None, capacity: float | None,
                                                      flag: int | None, slow: bool | None) -> None:
    check = _throughput(down, capacity=capacity, flag=flag)
    j = speed.judge_speed(check.metrics, "down", 500.0)
    assert j.slow is slow
    ctx = CheckContext(line=LineInfo("wan0", [], 500.0, 300.0, None), state={}, deadline=time.monotonic() + 60)
    agent = judge(ThroughputConfig(), ctx, dict(check.metrics), "linecheck://x:1", [])
    assert ("throughput_below_plan" in {f.code for f in agent.findings}) is bool(slow)
    rules = RuleEngine(RulesConfig())
    seen = rules.observe("speed_below_plan", envelope(AGENT, LINE, [link_check(), check], agent.findings),
                         Plan(500.0, 300.0))
    if flag == 1:
        assert seen is None  # neither a breach nor healthy evidence
    else:
        assert seen is not None and seen.breach is bool(slow)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    with s.engine.begin() as conn:
        registry.import_registry(conn, registry.Registry.model_validate({
            "tenants": [{"tenant_id": "carrier", "name": "Carrier", "kind": "carrier"}],
            "sites": [{"site_id": "site-1", "tenant_id": "carrier"}],
            "lines": [{"line_id": LINE, "tenant_id": "carrier", "site_id": "site-1",
                       "plan_down_mbps": 500, "plan_up_mbps": 300}],
            "agents": [{"agent_id": AGENT, "line_id": LINE, "report_interval_s": 600}]}))
    yield s
    s.close()


def _tickets_and_commands(store: Store) -> tuple[list[tuple[str, str]], list[str]]:
    with store.engine.connect() as conn:
        ticket_rows = [(r.fault_class, r.state) for r in conn.execute(select(t.tickets))]
        commands = [r.fault_class for r in conn.execute(select(t.commands))]
    return ticket_rows, commands


def test_cross_traffic_flagged_speed_tests_neither_open_nor_resolve_a_ticket(store: Store) -> None:
    store.add_hook(RuleEngine(RulesConfig.model_validate(
        {"classes": {"speed_below_plan": {"retest": False, "breaches": 2, "window": 3, "heal_after": 2}}})).on_ingest)

    def result(down: float, flag: int) -> object:
        return envelope(AGENT, LINE, [link_check(), ping_check(), _throughput(down, flag=flag)])

    for _ in range(4):  # far below plan, but the office was downloading: no ticket, no re-test
        assert store.ingest([result(90.0, 1)])
    assert _tickets_and_commands(store) == ([], [])
    assert store.ingest([result(90.0, 0)]) and store.ingest([result(90.0, 0)])
    assert _tickets_and_commands(store)[0] == [("speed_below_plan", "open")]
    for _ in range(3):  # fast while flagged: not healthy evidence either
        assert store.ingest([result(480.0, 1)])
    assert _tickets_and_commands(store)[0] == [("speed_below_plan", "open")]
    assert store.ingest([result(480.0, 0)]) and store.ingest([result(480.0, 0)])
    assert _tickets_and_commands(store)[0] == [("speed_below_plan", "resolved")]
