"""The console's words, from the one catalogue both sides share (linecheck/i18n, section `console`).

The console speaks the catalogue's language tags (LANGUAGES: `en`, `zh-CN`); `?lang=`, the cookie,
a user's stored language and Accept-Language may spell them otherwise (`zh`, `zh-TW`, `en-US`) and are
mapped with `normalise`. A key no language has shows as itself, and tests/test_i18n.py fails on it.
"""

from __future__ import annotations

from collections.abc import Callable

from linecheck.i18n import LANGUAGES, catalogue, from_accept_language, normalise

__all__ = ["LANGUAGES", "normalise", "pick", "translator"]


def pick(accept_language: str | None) -> str:
    """The language from an Accept-Language header: the first one we have, else English."""
    return from_accept_language(accept_language)


def translator(lang: str) -> Callable[[str], str]:
    texts = catalogue(lang).console

    def t(key: str) -> str:
        return texts.get(key, key)

    return t
