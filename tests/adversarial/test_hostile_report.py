"""The HTML self-check report (`linecheck-agent check --save-report`) with hostile texts in the result.

A technician opens this file in a browser. Everything in it that came from the line - a probed
target, a check's reason, a newer agent's finding message, a room's name - is attacker-reachable
(a DNS answer, an HTTP status line, a room name typed into the LAN page). It must arrive as text,
never as markup, and the report carries no script and loads nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from agent import report
from linecheck.wire import CheckResult, ClockState, Finding, ResultEnvelope, Status, Trigger, Verdict

SCRIPT = '<script>alert("pwned")</script>'
ATTR = "\"' onmouseover='alert(1)' x=\""
HOSTILE = [f"{SCRIPT}{ATTR}", f"</td></tr></table>{SCRIPT}", '<img src=x onerror="alert(1)">&amp;']
# The only elements the report's own markup uses.
OWN_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "div", "strong", "p", "b", "ol", "li",
            "span", "table", "thead", "tbody", "tr", "th", "td", "dl", "dt", "dd", "footer"}


class Page(HTMLParser):
    """What a browser sees: the elements and attributes, and the text nodes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def hostile_envelope(text: str) -> ResultEnvelope:
    return ResultEnvelope(
        result_id="01900000-0000-7000-8000-00000000beef", agent_id="gw-0421", seq=3, line_id="sh-pd-100234",
        site_id="pudong-office-3", trigger=Trigger.MANUAL, started_at=datetime(2022, 6, 1, 1, 30, tzinfo=UTC),
        ended_at=datetime(2022, 6, 1, 1, 31, tzinfo=UTC), clock=ClockState(synced=True), agent_version=text[:32],
        verdict=Verdict.PROBLEMS,
        checks=[CheckResult(kind="http", status=Status.FAILED, duration_s=1.0, target=text, reason=text)],
        findings=[
            Finding(code="frobnication_detected", severity="critical", check="http", where="wan", message=text),
            Finding(code="http_failure", severity="warning", check="http", where="wan", message="x",
                    detail={"url": text}),
            Finding(code="wifi_weak", severity="warning", check="wifi", where="wifi", message="x",
                    detail={"room": text, "signal_dbm": -80}),
        ])


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_texts_arrive_as_text_not_markup(text: str, lang: str) -> None:
    page = report.render_html(hostile_envelope(text), lang)
    parsed = Page()
    parsed.feed(page)
    assert "<script" not in page.lower() and "<img" not in page.lower()
    assert {tag for tag, _ in parsed.tags} <= OWN_TAGS
    attributes = {name for _, attrs in parsed.tags for name, _ in attrs}
    assert attributes <= {"lang", "charset", "name", "content", "class"}, attributes  # no handler, no src/href
    # Every hostile value is there, whole, as text a reader can hand on (target, reason, message, url, room).
    shown = "".join(parsed.text)
    assert shown.count(text) >= 5, shown


def test_the_html_report_is_a_template_with_autoescape() -> None:
    """No hand escaping: the page comes from agent/templates/report.html.j2 through an autoescaping Jinja2."""
    env = report._templates()
    template = env.get_template("report.html.j2")
    assert env.autoescape is True and template.filename and template.filename.endswith("report.html.j2")
    assert "html.escape" not in Path(report.__file__).read_text(encoding="utf-8")
