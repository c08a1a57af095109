"""A tiny run of bench/storage_size.py (bytes on disk per result), so the script cannot rot."""

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
    rows = re.findall(r"^(full check|scheduled).*?(sqlite|postgresql)\s+(\d+)\s+([\d.]+)$", capsys.readouterr().out,
                      re.M)
    assert [(shape, backend) for shape, backend, _, _ in rows] == [
        ("full check", "sqlite"), ("full check", "postgresql"), ("scheduled", "sqlite"), ("scheduled", "postgresql")]
    # Stored results take room: more than nothing, and the normalised rows cost more than the JSON alone.
    assert all(int(disk) > 0 and float(ratio) > 1 for _, _, disk, ratio in rows)
