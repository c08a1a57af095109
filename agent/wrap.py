"""Wrapping for the terminal report: between words and between Chinese characters, never inside a Latin word.

rich wraps at spaces and folds a run longer than the column anywhere. Chinese has no spaces, so a
Chinese clause glued to an English word ("超时：www.example.cn", "（FTTR", "不计入；down:") was one run,
and on a pipe (80 columns) rich cut it inside the English word ("www.examp" / "le.cn"; issue 23). Here
every Chinese character (and full-width punctuation) is a break opportunity of its own, a Latin word
moves to the next line whole, closing punctuation never starts a line and opening punctuation never
ends one. A word wider than the column is the only thing ever cut.
"""

from __future__ import annotations

import re

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style

_WIDE = "\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_TOKEN = re.compile(rf"\s+|[{_WIDE}]|[^\s{_WIDE}]+")
NO_LINE_START = frozenset("，。；：、！？）」』》〉】")
NO_LINE_END = frozenset("（「『《〈【")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _fold(word: str, width: int) -> list[str]:
    """A word wider than the column, in pieces that fit (the one case a word is cut)."""
    pieces, piece = [], ""
    for ch in word:
        if piece and cell_len(piece + ch) > width:
            pieces.append(piece)
            piece = ""
        piece += ch
    return [*pieces, piece] if piece else pieces


def wrap(text: str, width: int) -> list[str]:
    """Lines of at most `width` cells (a single character wider than the column excepted)."""
    width = max(width, 1)
    lines: list[list[str]] = [[]]
    for tok in tokens(text):
        line = lines[-1]
        if tok.isspace():
            if line and not line[-1].isspace():
                line.append(" ")
            continue
        if cell_len("".join(line)) + cell_len(tok) <= width:
            line.append(tok)
            continue
        while line and line[-1].isspace():
            line.pop()
        if cell_len(tok) > width:  # the one case a word is cut: it is wider than the column
            pieces = _fold(tok, width)
            if line:
                lines.append([])
            for piece in pieces[:-1]:
                lines[-1].append(piece)
                lines.append([])
            lines[-1].append(pieces[-1])
            continue
        carry: list[str] = []
        if tok in NO_LINE_START and len(line) > 1:  # the character before goes along: never "检测 / 。"
            carry.append(line.pop())
        while len(line) > 1 and line[-1] in NO_LINE_END:  # "（" goes with what it opens
            carry.insert(0, line.pop())
        while line and line[-1].isspace():
            line.pop()
        lines.append([*carry, tok])
    out = ["".join(line).rstrip() for line in lines]
    return [line for line in out if line] or [""]


class Wrapped:
    """A rich renderable: `text` wrapped by `wrap` to the width it is given (a table cell, the console)."""

    def __init__(self, text: str, style: str | Style = "") -> None:
        self.text = text
        self.style = style

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        words = [t for t in tokens(self.text) if not t.isspace()]
        narrowest = max((cell_len(w) for w in words), default=1)
        widest = cell_len(" ".join(self.text.split())) or 1
        return Measurement(min(narrowest, options.max_width), min(widest, options.max_width))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        style = console.get_style(self.style) if self.style else Style()
        for line in wrap(self.text, options.max_width):
            yield Segment(line, style)
            yield Segment.line()
