"""The fleet registry on SQLite and PostgreSQL: YAML/CSV import and export, validation, tenant scope."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

from collector.fleet import registry
from collector.store import schema as t
from collector.store.database import Store
from linecheck.configfile import ConfigError
from tests.factory import envelope

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "lines.example.yaml"
DATA = Path(__file__).parent / "data" / "registry"


@pytest.fixture
def store(db_url: str):  # type: ignore[no-untyped-def]
    s = Store(db_url)
    yield s
    s.close()


def _import(store: Store, data: registry.Registry, **kw: object) -> dict[str, int]:
    with store.engine.begin() as conn:
        return registry.import_registry(conn, data, **kw)  # type: ignore[arg-type]


def test_example_imports_and_round_trips_through_yaml_and_csv(store: Store, tmp_path: Path) -> None:
    data = registry.load_yaml(EXAMPLE)
    assert _import(store, data) == {"tenants": 3, "sites": 2, "lines": 2, "agents": 2}
    with store.engine.connect() as conn:
        line = conn.execute(select(t.lines).where(t.lines.c.line_id == "acme-xuhui-1")).one()
        agent = conn.execute(select(t.agents).where(t.agents.c.agent_id == "lotus-jingan-gw")).one()
        exported = registry.export_registry(conn)
    assert (line.plan_down_mbps, line.plan_up_mbps, line.account_since) == (500, 300, date(2014, 9, 1))
    assert (agent.line_id, agent.site_id, agent.first_seen) == ("lotus-jingan-1", "lotus-jingan", None)
    # The Jing'an line named no district: it inherits its site's.
    assert [x.district for x in exported.lines] == ["Xuhui", "Jing'an"]

    yaml_file = tmp_path / "export.yaml"
    yaml_file.write_text(registry.to_yaml(exported))
    assert registry.load_yaml(yaml_file) == exported
    for section in registry.SECTIONS:
        csv_file = tmp_path / f"{section}.csv"
        csv_file.write_text(registry.to_csv(exported, section))
        assert getattr(registry.load_csv(csv_file), section) == getattr(exported, section)


def test_import_is_an_upsert_and_keeps_what_ingest_learned(store: Store) -> None:
    data = registry.load_yaml(EXAMPLE)
    _import(store, data)
    store.ingest([envelope("acme-xuhui-gw", "acme-xuhui-1", site_id="acme-xuhui")])
    data.lines[0].plan_down_mbps = 1000
    data.agents[0].report_interval_s = 900
    _import(store, data)
    with store.engine.connect() as conn:
        plan = conn.execute(select(t.lines.c.plan_down_mbps).where(t.lines.c.line_id == "acme-xuhui-1")).scalar()
        assert plan == 1000
        agent = conn.execute(select(t.agents).where(t.agents.c.agent_id == "acme-xuhui-gw")).one()
    assert agent.report_interval_s == 900 and agent.result_count == 1 and agent.first_seen is not None


def test_bad_references_refuse_the_whole_import_naming_each_entry(store: Store) -> None:
    data = registry.load_yaml(DATA / "refs_bad.yaml")
    with pytest.raises(ConfigError) as exc:
        _import(store, data, source="refs_bad.yaml")
    problems = exc.value.problems
    assert "tenants[1].parent_id: unknown tenant 'nobody' (not in this file nor stored)" in problems
    assert "tenants[2].parent_id: 'shop' is an enterprise; expected a carrier" in problems
    assert "sites[0].tenant_id: unknown tenant 'ghost' (define it under tenants first)" in problems
    assert "lines[0].site_id: site 's2' belongs to tenant 'shop2', not 'big-carrier'" in problems
    assert "lines[1].site_id: unknown site 'nowhere' (define it under sites first)" in problems
    assert "lines[2].line_id: 'l1' appears twice" in problems
    assert "agents[0].line_id: unknown line 'l9' (define it under lines first)" in problems
    with store.engine.connect() as conn:
        assert conn.execute(select(t.tenants)).all() == []


def test_bad_csv_rows_are_named_by_row_and_column() -> None:
    with pytest.raises(ConfigError) as exc:
        registry.load_csv(DATA / "lines_bad.csv")
    text = str(exc.value)
    assert f"{DATA / 'lines_bad.csv'}: row 3: line_id: String should match pattern" in text
    assert "row 4: plan_down_mbps: Input should be a valid number" in text
    assert "row 4: account_since: Input should be a valid date" in text
    assert "row 2" not in text


def test_tenant_scope_limits_export_and_import(store: Store) -> None:
    data = registry.load_yaml(EXAMPLE)
    _import(store, data)
    with store.engine.begin() as conn:
        assert registry.tenant_scope(conn, "sh-telecom") == {"sh-telecom", "acme-trading", "lotus-design"}
        lotus = registry.tenant_scope(conn, "lotus-design")
        assert lotus == {"lotus-design"}
        assert [x.line_id for x in registry.export_registry(conn, lotus).lines] == ["lotus-jingan-1"]
        acme_only = registry.Registry(lines=[data.lines[0]])
        problems = registry.check(conn, acme_only, "api", scope=lotus)
    assert problems == ["api: lines[0].tenant_id: 'acme-trading' is outside your tenants"]


def test_cli_imports_csv_files_and_exports(tmp_path: Path) -> None:
    cfg = tmp_path / "collector.yaml"
    cfg.write_text(f"database: sqlite:///{tmp_path}/c.db\n")
    exported = registry.load_yaml(EXAMPLE)
    files = []
    for section in ("tenants", "sites", "lines", "agents"):
        f = tmp_path / f"{section}.csv"
        f.write_text(registry.to_csv(exported, section))
        files.append(str(f))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "collector.cli", "registry", *args, "--config", str(cfg)],
                              capture_output=True, text=True, cwd=ROOT)

    out = cli("import", *files)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "imported: 3 tenants, 2 sites, 2 lines, 2 agents"
    out = cli("export", "--format", "csv", "--section", "lines", "--tenant", "acme-trading")
    assert out.returncode == 0 and out.stdout.splitlines()[1].startswith("acme-xuhui-1,acme-trading,acme-xuhui,")
    assert len(out.stdout.splitlines()) == 2
    bad = cli("import", str(DATA / "lines_bad.csv"))
    assert bad.returncode == 2 and "row 3: line_id" in bad.stderr
