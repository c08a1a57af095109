"""The self-check report on a pipe (no terminal: rich gives it 80 columns) wraps between words, never inside
one (issue 23 item 8). A Chinese clause glued to an English diagnostic ("不计入；down: byte cap ...") was one
run longer than the details column, and rich folded it inside "down"."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from agent.reasons import because, reason_fields
from agent.report import render
from linecheck.wire import CheckResult, ResultEnvelope, Status
from tests.test_report import healthy_envelope, problems_envelope


def _implausible(envelope: ResultEnvelope) -> ResultEnvelope:
    """The loopback case of issue 23: a long Chinese reason with English diagnostics glued to it."""
    reasons = [because("implausible_speed", direction="down", measured_mbps=14359.0, plan_mbps=500.0, times=28.7),
               because("implausible_speed", direction="up", measured_mbps=22621.0, plan_mbps=300.0, times=75.4),
               because("throughput_note", diagnostic="down: byte cap after 0.119 s with 4 streams (stopped before "
                                                     "the rate settled: a lower bound)")]
    check = CheckResult(kind="throughput", status=Status.ERROR, duration_s=1.0, target="linecheck://127.0.0.1:45953",
                        **reason_fields(reasons), metrics={"down_plan_pct": 2871.8, "up_plan_pct": 7540.4,
                                                           "down_mbps": 14358.9, "up_mbps": 22252.8})
    return envelope.model_copy(update={"checks": [*envelope.checks, check]})


def _cut_words(rendered: str, source: str) -> list[str]:
    """Latin words cut at a line end: a line ending in a letter or digit, the next starting with one, and the
    report unwrapped (`source`) holding the two joined as one word (a break between Chinese characters
    is a proper break, so only Latin on both sides counts)."""
    lines = [line.strip() for line in rendered.splitlines()]
    cut = []
    for a, b in zip(lines, lines[1:], strict=False):
        if not (a and b and re.search(r"[A-Za-z0-9]$", a) and re.match(r"[A-Za-z0-9]", b)):
            continue
        joined = a.split()[-1] + b.split()[0]
        if re.search(rf"(?<!\S){re.escape(joined)}(?!\S)", source) or re.search(
                rf"[^\x00-\x7f]{re.escape(joined)}(?!\S)", source):
            cut.append(f"{a.split()[-1]}|{b.split()[0]}")
    return cut


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
@pytest.mark.parametrize("width", [80, 100])
@pytest.mark.parametrize("make", [problems_envelope, healthy_envelope, lambda: _implausible(problems_envelope())],
                         ids=["problems", "healthy", "implausible"])
def test_no_word_is_cut_at_the_line_end(make, lang: str, width: int) -> None:  # type: ignore[no-untyped-def]
    envelope = make()
    wide = io.StringIO()  # the same report unwrapped: the words as they are
    render(envelope, Console(file=wide, width=1000, color_system=None, force_terminal=False), lang)
    narrow = io.StringIO()
    render(envelope, Console(file=narrow, width=width, color_system=None, force_terminal=False), lang)
    assert _cut_words(narrow.getvalue(), wide.getvalue()) == [], narrow.getvalue()
