"""A tiny run of bench/storage_size.py (bytes on disk per result, old layout vs new), so the script cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import storage_size
from tests.factory import envelope, link_check, ping_check, throughput_check


def test_storage_size_measures_both_backends(pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "envelope.json"
    saved.write_text(envelope("gw", "line", [link_check(), ping_check(), throughput_check(480.0, 290.0)])
                     .model_dump_json())
    assert storage_size.main(["--results", "200", "--envelope", str(saved)]) == 0
    rows = re.findall(r"^(full check|scheduled).*?(sqlite|postgresql)\s+(old|new)\s+(\d+)\s+([\d.]+)\s+([\d.]+)$",
                      capsys.readouterr().out, re.M)
    assert [(shape, backend, layout) for shape, backend, layout, *_ in rows] == [
        (shape, backend, layout) for shape in ("full check", "scheduled") for backend in ("sqlite", "postgresql")
        for layout in ("old", "new")]
    # Stored results take room; the old layout's normalised rows cost more than the JSON, the new layout less
    # than the old one (new/old is printed against the old layout of the same run).
    assert all(int(disk) > 0 for *_, disk, _, _ in rows)
    assert all(float(ratio) > 1 for _, _, layout, _, ratio, _ in rows if layout == "old")
    assert all(float(new_old) < 0.6 for _, _, layout, _, _, new_old in rows if layout == "new")
