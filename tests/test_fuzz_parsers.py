"""The agent's parsers of command output and /proc files never raise, whatever a driver prints.

A parser that raises turns a check into an `error` and hides the line's state; a firmware
update that changes `iw` output must degrade to "not reported", not to a crash. Inputs: arbitrary
text, and the real captures in tests/data/ mutated (lines dropped, duplicated, truncated, bytes
replaced).
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.checks.dns import parse_resolv_conf
from agent.netinfo import parse_proc_net_route
from agent.wifi.iw import parse_bitrate, parse_dev, parse_info, parse_link, parse_station_dump, parse_survey_dump
from agent.wifi.proc import parse_proc_net_wireless
from agent.wifi.scan import parse_scan

DATA = Path(__file__).parent / "data"
PARSERS: dict[str, Callable[[str], Any]] = {
    "proc_net_route": parse_proc_net_route, "resolv_conf": parse_resolv_conf, "iw_dev": parse_dev,
    "iw_info": parse_info, "iw_link": parse_link, "iw_station_dump": parse_station_dump,
    "iw_survey_dump": parse_survey_dump, "iw_scan": parse_scan, "iw_bitrate": parse_bitrate,
    "proc_net_wireless": parse_proc_net_wireless,
}
CAPTURES = sorted(p for p in DATA.rglob("*") if p.is_file() and p.parent.name != "config"
                  and p.suffix not in (".yaml", ".csv"))
ROUTE = ("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
         "eth0\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n")


def mutations(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    for _ in range(rng.randint(1, 6)):
        if not lines:
            break
        i = rng.randrange(len(lines))
        op = rng.randrange(5)
        if op == 0:
            del lines[i]
        elif op == 1:
            lines.insert(i, lines[i])
        elif op == 2:
            lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)]
        elif op == 3 and lines[i]:
            j = rng.randrange(len(lines[i]))
            lines[i] = lines[i][:j] + rng.choice(["\t", ":", "-", "x", "999999999999999999999", "", "\u00a0", "nan"]) \
                + lines[i][j + 1:]
        else:
            lines[i] = lines[i].replace(" ", rng.choice(["", "  ", "\t"]))
    return "\n".join(lines)


@pytest.mark.parametrize("name", sorted(PARSERS))
@given(text=st.text(alphabet=st.characters(codec="utf-8"), max_size=600))
@settings(max_examples=150, deadline=None)
def test_parsers_are_total_on_arbitrary_text(name: str, text: str) -> None:
    PARSERS[name](text)


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_parsers_survive_mutated_real_captures(name: str) -> None:
    rng = random.Random(zlib.crc32(name.encode()))  # deterministic: the same inputs on every run
    sources = [p.read_text(errors="replace") for p in CAPTURES] + [ROUTE]
    assert len(sources) > 5
    for _ in range(1000):
        PARSERS[name](mutations(rng.choice(sources), rng))
