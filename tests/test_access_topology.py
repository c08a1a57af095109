"""Access topology in the registry (issue 24 item 1): a line's access path comes in with YAML and CSV,
is stored per node, exported again, refused with a message naming the entry when malformed."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from collector.fleet import registry
from collector.incidents import topology
from collector.store import schema as t
from collector.store.database import Store
from linecheck.configfile import ConfigError

BASE = {"tenants": [{"tenant_id": "c", "name": "C", "kind": "carrier"}],
        "sites": [{"site_id": "s", "tenant_id": "c"}]}


def line(line_id: str, path: str | None) -> dict[str, object]:
    return {"line_id": line_id, "tenant_id": "c", "site_id": "s", "access_path": path}


def test_yaml_import_stores_each_node_and_reimport_replaces(tmp_path: Path) -> None:
    s = Store(f"sqlite:///{tmp_path}/db.sqlite")
    try:
        with s.engine.begin() as conn:
            registry.import_registry(conn, registry.Registry.model_validate(
                BASE | {"lines": [line("l-1", "Xuhui/CO-1/OLT-3/PON-1-2/SPL-7"), line("l-2", None)]}))
            assert topology.path_of(conn, "l-1") == [
                ("district", "Xuhui"), ("central_office", "Xuhui/CO-1"), ("olt", "Xuhui/CO-1/OLT-3"),
                ("pon_port", "Xuhui/CO-1/OLT-3/PON-1-2"), ("splitter", "Xuhui/CO-1/OLT-3/PON-1-2/SPL-7")]
            assert topology.path_of(conn, "l-2") == []
            registry.import_registry(conn, registry.Registry.model_validate(
                BASE | {"lines": [line("l-1", "Xuhui/CO-2/OLT-1")]}))  # moved to another office
            assert [n for _, n in topology.path_of(conn, "l-1")] == ["Xuhui", "Xuhui/CO-2", "Xuhui/CO-2/OLT-1"]
            assert registry.export_registry(conn).lines[0].access_path == "Xuhui/CO-2/OLT-1"
            registry.remove_line(conn, "l-1")
            assert conn.execute(select(t.access_nodes)).all() == []
    finally:
        s.close()


def test_csv_carries_the_access_path_column(tmp_path: Path) -> None:
    f = tmp_path / "lines.csv"
    f.write_text("line_id,tenant_id,site_id,access_path\nl-9,c,s,Minhang/CO-7/OLT-1/PON-0-4\n")
    data = registry.load_csv(f)
    assert data.lines[0].access_path == "Minhang/CO-7/OLT-1/PON-0-4"


@pytest.mark.parametrize("path, says", [
    ("a/b/c/d/e/f/g", "at most 6 levels"),
    ("Xuhui//OLT-3", "level 2 (central_office) is empty"),
    ("Xuhui/CO\x01/OLT", "printable"),
    ("Xuhui/" + "x" * 65, "at most 64"),
])
def test_hostile_paths_are_refused_naming_the_entry(tmp_path: Path, path: str, says: str) -> None:
    s = Store(f"sqlite:///{tmp_path}/db.sqlite")
    try:
        with s.engine.begin() as conn, pytest.raises(ConfigError) as exc:
            registry.import_registry(conn, registry.Registry.model_validate(BASE | {"lines": [line("l-1", path)]}),
                                     source="fleet.yaml")
        text = str(exc.value)
        assert "fleet.yaml" in text and "lines[0].access_path" in text and says in text
        with s.engine.connect() as conn:
            assert conn.execute(select(t.access_nodes)).all() == []
    finally:
        s.close()
