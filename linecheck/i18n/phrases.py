"""Phrases: what a part of linecheck says, kept as data and rendered in the reader's language.

A phrase is a catalogue key and its arguments - `{"key": "wan_down", "args": {"interface": "eth1"}}`.
The key names a template in one section of linecheck/i18n/<lang>.toml (`reasons`, `progress`, `tickets`,
`verdicts`); the arguments fill its {placeholders}. A check's reason, a progress step, a ticket's summary
and a promise verdict's explanation are phrases: the agent's report, the console and the CLI render them
in the reader's language, and the English text is rendered from the same phrase, so the languages never
say different things.

Rendering is defensive, because phrases cross trust boundaries (an agent's result, a stored row): an
unknown key, a missing argument or a malformed phrase renders as None and the caller falls back to the
sender's English text. Only plain {name} or {name:spec} placeholders are filled (no attribute or index
access, no conversions); a string argument ignores a numeric format spec; an argument may be a nested
phrase or a list of them (collector-side phrases; the wire carries flat ones). Argument values that are
codes with a catalogued wording (`[values]`, e.g. `direction.down`) are shown in that wording.

In HTML, the template's text is escaped and arguments are marked for what they are: strings (targets,
interfaces, rooms, names: data, not prose) in `<span translate="no">`, raw technical diagnostics (an
argument named `diagnostic`: an OS or library message kept verbatim) in `<code>`, and what a template quotes
in backticks (a config key, a command, a path) in `<code>` too; plain text keeps the backticks.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any, Union

Arg = Union[int, float, str, None, "Phrase", Sequence["Phrase"]]
MAX_DEPTH = 4  # nesting of phrases read from JSON (a stored verdict nests two levels)
DIAGNOSTIC = "diagnostic"  # the argument name of raw technical text, shown verbatim


@dataclass(frozen=True)
class Phrase:
    key: str
    args: Mapping[str, Arg] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        def plain(value: Arg) -> Any:
            if isinstance(value, Phrase):
                return value.as_json()
            if isinstance(value, list | tuple):
                return [plain(v) for v in value]
            return value

        return {"key": self.key, "args": {k: plain(v) for k, v in self.args.items()}}

    @classmethod
    def from_json(cls, data: object, depth: int = 0) -> Phrase | None:
        """A phrase from stored or received JSON; None for anything that is not one (never raises)."""
        if depth > MAX_DEPTH or not isinstance(data, dict) or not isinstance(data.get("key"), str):
            return None
        raw = data.get("args", {})
        if not isinstance(raw, dict):
            return None
        args: dict[str, Arg] = {}
        for name, value in raw.items():
            if isinstance(value, dict):
                value = cls.from_json(value, depth + 1)
                if value is None:
                    return None
            elif isinstance(value, list):
                parts = [cls.from_json(v, depth + 1) for v in value]
                if any(p is None for p in parts):
                    return None
                value = parts  # type: ignore[assignment]
            elif not isinstance(value, int | float | str | type(None)):
                return None
            args[str(name)] = value
        return cls(data["key"], args)


def phrases_from_json(data: object) -> list[Phrase] | None:
    """A list of phrases (or one) from JSON; None if any item is not a phrase."""
    items = data if isinstance(data, list) else [data]
    out = [Phrase.from_json(item) for item in items]
    return None if not out or any(p is None for p in out) else out  # type: ignore[return-value]


def number(value: float | int) -> str:
    """A number as a reader writes it: 3.5, 0.123, 480 (no float noise, no needless decimals)."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


_BACKTICKED = re.compile(r"`([^`]+)`")


def _code_spans(text: str) -> str:
    """`config.keys`, `commands` and `/paths` a template quotes in backticks, as <code> in HTML."""
    return _BACKTICKED.sub(r"<code>\1</code>", text)


class Unrenderable(Exception):  # noqa: N818 - internal signal: the caller falls back
    pass


@dataclass(frozen=True)
class Renderer:
    """Renders phrases with one language's templates of one section (and its nested phrases' sections)."""

    templates: Callable[[str, str], str | None]  # (section, key) -> template
    values: Mapping[str, str]  # "<arg>.<code>" -> wording
    item_sep: str  # between the phrases of a list argument
    html: bool = False

    def render(self, section: str, phrase: Phrase) -> str | None:
        try:
            return self._render(section, phrase, 0)
        except Unrenderable:
            return None

    def _render(self, section: str, phrase: Phrase, depth: int) -> str:
        template = self.templates(section, phrase.key)
        if template is None or depth > MAX_DEPTH:
            raise Unrenderable(phrase.key)
        out: list[str] = []
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError:
            raise Unrenderable(phrase.key) from None
        for literal, name, spec, conversion in parsed:
            out.append(_code_spans(escape(literal, quote=False)) if self.html else literal)
            if name is None:
                continue
            if not name.isidentifier() or conversion or name not in phrase.args:
                raise Unrenderable(phrase.key)
            out.append(self._arg(section, name, phrase.args[name], spec or "", depth))
        return "".join(out)

    def _arg(self, section: str, name: str, value: Arg, spec: str, depth: int) -> str:
        if isinstance(value, Phrase):
            return self._render(section, value, depth + 1)
        if isinstance(value, list | tuple):
            return self.item_sep.join(self._render(section, v, depth + 1) for v in value)
        if value is None:
            return "—"
        if isinstance(value, int | float):
            try:
                text = format(value, spec) if spec and not isinstance(value, bool) else number(value)
            except (ValueError, TypeError):
                text = number(value)
            return text
        if not isinstance(value, str):  # anything else (a mapping, a set) is not a phrase's argument
            raise Unrenderable(name)
        worded = self.values.get(f"{name}.{value}")
        if worded is not None:
            return escape(worded, quote=False) if self.html else worded
        if not self.html:
            return value
        if name == DIAGNOSTIC:
            return f"<code>{escape(value)}</code>"
        return f'<span translate="no">{escape(value)}</span>'
