"""The one translation catalogue (linecheck/i18n) both the agent's report and the console read.

Every key exists in every language with the same {placeholders}; the console names only keys the
catalogue has; one language-code scheme inside, the other spellings accepted at the edges (the
agent's `--lang`, the console's `?lang=`, its cookie, a user's stored language, Accept-Language).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from agent.cli import _parser
from linecheck import i18n
from linecheck.i18n import LANGUAGES, SECTIONS, catalogue, normalise, parse, placeholders
from tests.fleet_data import PASSWORD

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "collector" / "web"


def _texts(lang: str, section: str) -> dict[str, str]:
    """A section as key -> text; a finding's three texts as `<key>.sentence` etc."""
    table = getattr(catalogue(lang), section)
    if section != "findings":
        return dict(table)
    return {f"{key}.{part}": getattr(text, part) for key, text in table.items()
            for part in ("label", "sentence", "plain", "advice")}


@pytest.mark.parametrize("section", SECTIONS)
@pytest.mark.parametrize("lang", LANGUAGES[1:])
def test_every_key_exists_in_every_language_with_the_same_placeholders(lang: str, section: str) -> None:
    english, other = _texts("en", section), _texts(lang, section)
    assert sorted(english.keys() - other.keys()) == [], f"{lang} [{section}] lacks these English keys"
    assert sorted(other.keys() - english.keys()) == [], f"{lang} [{section}] has keys English lacks"
    for key, text in english.items():
        assert key == "sentence_gap" or (text.strip() and other[key].strip()), (section, key)  # "" in Chinese
        assert placeholders(text) == placeholders(other[key]), f"{lang} [{section}] {key}"


def test_every_language_has_a_file_and_nothing_else_does() -> None:
    files = {p.stem for p in (ROOT / "linecheck" / "i18n").glob("*.toml")}
    assert files == set(LANGUAGES)
    assert all(catalogue(lang).lang == lang for lang in LANGUAGES)


def _console_keys() -> set[str]:
    """The keys the console names: t("...") in its templates; tr("..."), message(..., "key"), message=/error=/msg=
    in its page modules (collector/web/*.py)."""
    keys: set[str] = set()
    for path in (WEB / "templates").glob("*.html"):
        keys |= set(re.findall(r"""\bt\(["']([a-z_0-9]+)["']\)""", path.read_text(encoding="utf-8")))
    code = "\n".join(path.read_text(encoding="utf-8") for path in sorted(WEB.glob("*.py")))
    keys |= set(re.findall(r"""\btr\(["']([a-z_0-9]+)["']\)""", code))
    keys |= set(re.findall(r"""\b(?:message|error)=["']([a-z_0-9]+)["']""", code))
    keys |= set(re.findall(r"""\bmessage\([^()]*?, \d{3}, ["']([a-z_0-9]+)["']\)""", code))
    keys |= set(re.findall(r"""["']((?:command|login)_[a-z_]+)["']""", code))
    return keys


def test_the_console_names_only_catalogued_keys() -> None:
    keys = _console_keys()
    # The scan works:
    assert {"no_chart_data", "not_found", "forbidden", "csrf", "login_throttled", "command_unavailable"} <= keys
    for lang in LANGUAGES:
        assert sorted(keys - catalogue(lang).console.keys()) == [], lang


@pytest.mark.parametrize("spelling, lang", [
    ("en", "en"), ("EN-us", "en"), ("en_GB.UTF-8", "en"), ("zh", "zh-CN"), ("zh-CN", "zh-CN"), ("zh-cn", "zh-CN"),
    ("zh_CN.UTF-8", "zh-CN"), ("zh-TW", "zh-CN"), ("zh-Hans-CN", "zh-CN"), (" zh ", "zh-CN"),
    ("fr", None), ("C", None), ("", None), (None, None), ("english", None),
])
def test_spellings_map_to_the_one_scheme(spelling: str | None, lang: str | None) -> None:
    assert normalise(spelling) == lang
    if lang is None:
        with pytest.raises(ValueError, match="expected one of en, zh-CN"):
            i18n.resolve(spelling or "")
    else:
        assert catalogue(spelling).lang == lang  # type: ignore[arg-type]


def test_the_agent_accepts_both_spellings_and_refuses_others(capsys: pytest.CaptureFixture[str]) -> None:
    for spelling, lang in (("zh", "zh-CN"), ("zh-CN", "zh-CN"), ("en", "en")):
        assert _parser().parse_args(["check", "--config", "a.yaml", "--lang", spelling]).lang == lang
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_args(["check", "--config", "a.yaml", "--lang", "fr"])
    assert exit_.value.code == 2 and "language 'fr': expected one of en, zh-CN" in capsys.readouterr().err


def test_the_console_accepts_the_short_code_and_keeps_the_tag(client: TestClient) -> None:
    assert client.post("/console/login", data={"user": "a-ent", "password": PASSWORD},
                       follow_redirects=False).status_code == 303
    r = client.get("/console/", params={"lang": "zh"}, headers={"Accept-Language": "en"})
    assert '<html lang="zh-CN">' in r.text and "线路总览" in r.text
    assert "lc_lang=zh-CN" in r.headers["set-cookie"]  # stored in the one scheme
    client.cookies.set("lc_lang", "zh")  # an older spelling in a cookie is honoured too
    assert '<html lang="zh-CN">' in client.get("/console/", headers={"Accept-Language": "en"}).text


@pytest.mark.parametrize("text, error", [
    ('[report]\ntitle = "x"\n[colours]\nred = "r"\n', r"unknown section\(s\) \['colours'\]"),
    ('[checks]\nping = "Ping"\n', "English check titles belong in linecheck/kinds.csv"),
    ('[findings.line_down]\nsentence = "a"\nplain = "b"\n', r"\[findings.line_down\]: expected label, sentence, plain"),
    ('[report]\ntitle = 3\n', r"\[report\]: expected key = \"text\" lines"),
    ('findings = "x"\n', r"\[findings\] holds one \[findings.<text_key>\] table"),
    ('[report\n', "linecheck/i18n/en.toml: "),
])
def test_a_malformed_language_file_is_refused_whole(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse("en", text)
