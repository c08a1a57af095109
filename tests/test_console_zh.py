"""The Chinese console says everything in Chinese (issue 23 item 4): every page, served over real HTTP, for a
fleet with tickets, findings, promises with verdicts, checks of every status, every trigger and both
severities (tests/zh_fleet.py), has no run of Latin letters in what a reader sees except a short explicit
list — units, acronyms and names Chinese technical text writes this way, the language switch — and data:
ids, addresses, and what is marked as such (`<code>`: codes, config keys, raw diagnostics; `translate="no"`:
targets, names). Plus one page in a real Chromium with a Chinese browser, and the catalogue itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select

from collector.api.app import create_app
from collector.api.server import HTTPServer
from collector.store import schema as t
from linecheck.i18n import catalogue
from tests import browser
from tests.api_support import RecordingSender
from tests.zh_fleet import ADMIN, MAIN, PASSWORD, SHOP, SLOW, TECH, ZhFleet, seed

# Latin words a Chinese page may show: units and symbols, acronyms and names written this way in Chinese
# technical text, the product's name, and the language switch (which names English in English).
ALLOWED = {"Mbit", "kbit", "ms", "dBm", "MHz", "GHz", "RPM", "WAN", "LAN", "MTU", "IPv6", "IPv4", "DNS", "TLS",
           "HTTP", "HTTPS", "ICMP", "UDP", "TCP", "STAMP", "ARP", "CPU", "API", "CSV", "ID", "WiFi", "FTTR", "ONT",
           "PPPoE", "VPN", "MCS", "NXDOMAIN", "SERVFAIL", "REFUSED", "A", "AAAA", "Ping", "linecheck", "English"}
UNITS = ("Mbit/s", "kbit/s")
DOCS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
ADDRESS = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b|\b[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}\b", re.I)
WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")
DATA_ATTRS = ("title", "aria-label", "placeholder", "alt")
VOID = {"input", "meta", "link", "br", "img", "hr", "rect", "circle", "line", "polyline", "path"}


class Visible(HTMLParser):
    """The text a reader sees (text nodes, and title/aria-label/placeholder/alt), outside what is marked as
    code or data; and the texts marked translate="no" apart (data: they must not be sentences)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []
        self.seen: list[str] = []
        self.data: list[str] = []

    def _code(self) -> bool:
        return any(tag in ("code", "pre", "script", "style") for tag, _ in self.stack)

    def _data(self) -> bool:
        return self._code() or any(no for _, no in self.stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for name in DATA_ATTRS:
            if a.get(name) and not self._data():
                self.seen.append(a[name] or "")
        if tag not in VOID:
            self.stack.append((tag, a.get("translate") == "no"))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        while self.stack and self.stack.pop()[0] != tag:
            pass

    def handle_data(self, text: str) -> None:
        if text.strip() and not self._code():
            (self.data if self._data() else self.seen).append(text.strip())


def untranslated(html: str, ids: set[str]) -> list[str]:
    page = Visible()
    page.feed(html)
    found = []
    for text in page.seen:
        rest = text
        for value in sorted(ids, key=len, reverse=True):
            rest = rest.replace(value, " ")
        for unit in UNITS:
            rest = rest.replace(unit, " ")
        rest = ADDRESS.sub(" ", rest)
        words = [w for w in WORD.findall(rest) if w not in ALLOWED]
        if words:
            found.append(f"{words} in {text[:120]!r}")
    # What is marked as data must be data: a name, an address, a code — never an untranslated sentence.
    found += [f"a sentence marked as data: {text[:120]!r}" for text in page.data
              if len(re.findall(r"\b[A-Za-z]{2,}\b", text)) >= 4]
    return found


@pytest.fixture(scope="module")
def zh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ZhFleet]]:
    """The zh fleet served by the collector's own HTTP server on a free port (Asia/Shanghai times)."""
    path = tmp_path_factory.mktemp("zh") / "fleet.db"
    fleet = seed(f"sqlite:///{path}")
    app = create_app(fleet.store.engine, commands=RecordingSender())
    app.state.timezone = ZoneInfo("Asia/Shanghai")
    server = HTTPServer(app, "127.0.0.1", 0)
    server.start()
    yield f"http://127.0.0.1:{server.port}", fleet
    server.stop()
    fleet.store.close()


def signed_in(base: str, user: str = ADMIN) -> httpx.Client:
    client = httpx.Client(base_url=base, headers={"Accept-Language": "zh-CN,zh;q=0.9"}, follow_redirects=True,
                          timeout=30)
    r = client.post("/console/login", data={"user": user, "password": PASSWORD, "next": "/console/"})
    assert r.status_code == 200 and '<html lang="zh-CN">' in r.text, r.status_code
    return client


def csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert match
    return match.group(1)


def test_every_console_page_is_chinese(zh: tuple[str, ZhFleet]) -> None:
    base, fleet = zh
    ids = fleet.ids
    pages: dict[str, str] = {}

    def visit(client: httpx.Client, url: str, status: int = 200, **form: str) -> str:
        r = client.post(url, data=form) if form else client.get(url)
        assert r.status_code == status, (url, r.status_code)
        assert '<html lang="zh-CN">' in r.text, url
        pages[f"{'POST ' if form else ''}{url} ({len(pages)})"] = r.text
        return r.text

    anonymous = httpx.Client(base_url=base, headers={"Accept-Language": "zh-CN"}, timeout=30)
    visit(anonymous, "/console/login")
    assert anonymous.post("/console/login", data={"user": ADMIN, "password": "wrong-password-x"}).status_code == 401
    admin = signed_in(base)
    shown = [f"/console/quarantine?show={q}" for q in fleet.quarantine_ids]
    for url in ("/console/", "/console/?status=problems", "/console/agents", "/console/quarantine", *shown,
                "/console/tickets", "/console/tickets?fault_class=packet_loss", "/console/account",
                "/console/promises", "/console/promises?by=segment&outcome=delivered",
                "/console/promises?by=tenant&outcome=inconclusive",
                "/console/promises?outcome=limited_by_local_equipment"):
        visit(admin, url)
    for line in (MAIN, SLOW, SHOP):
        visit(admin, f"/console/lines/{line}")
    for ticket in fleet.tickets:
        visit(admin, f"/console/tickets/{ticket}")
        visit(admin, f"/console/dispatch/{ticket}")  # the work order of each job
    visit(admin, "/console/dispatch")
    visit(admin, "/console/lines/no-such-line", 404)
    for msg in ("command_sent", "command_unavailable", "no_agent", "command_rate_limited"):
        visit(admin, f"/console/lines/{MAIN}?msg={msg}")
    page = pages[next(k for k in pages if k.startswith(f"/console/lines/{MAIN}"))]
    # Forms that answer with a page: a refused enrolment, an issued one, a refused ticket move, a new token.
    visit(admin, f"/console/lines/{MAIN}/enrolment-token", 409, csrf=csrf(page), agent_id="tel-gw")
    visit(admin, f"/console/lines/{MAIN}/enrolment-token", 409, csrf=csrf(page), agent_id="bad id!")
    issued = visit(admin, f"/console/lines/{MAIN}/enrolment-token", csrf=csrf(page), agent_id="jx-gw9")
    ids |= set(re.findall(r"jx-gw9\.[A-Za-z0-9_-]+", issued)) | {"jx-gw9"}
    verified = fleet.tickets[0]
    visit(admin, f"/console/tickets/{verified}/transition", csrf=csrf(page), to_state="dispatched")
    assert 'id="ticket-error"' in pages[list(pages)[-1]]
    visit(admin, "/console/account/tokens", csrf=csrf(page), name="值班脚本")
    # A crew's steps on a work order: arriving (with a note in Chinese), and a refused step.
    with fleet.store.engine.connect() as conn:
        state = dict(conn.execute(select(t.tickets.c.ticket_id, t.tickets.c.state)).all())
    dispatched = next(k for k in fleet.tickets if state[k] == "dispatched")
    visit(admin, f"/console/dispatch/{dispatched}/arrive", csrf=csrf(page), note="已到楼下机房")
    visit(admin, f"/console/dispatch/{next(k for k in fleet.tickets if state[k] == 'open')}/arrive", csrf=csrf(page))
    assert "请先派遣维修人员" in re.findall(r'id="order-error">(.*?)</p>', pages[list(pages)[-1]])[0]
    technician = signed_in(base, TECH)
    visit(technician, f"/console/lines/{MAIN}")
    visit(technician, "/console/tickets")

    bad = {url: found for url, html in pages.items() if (found := untranslated(html, ids))}
    assert bad == {}, json.dumps(bad, ensure_ascii=False, indent=1)

    # And what was translated is there: every status, trigger and severity, the findings' sentences from their
    # codes and detail, the verdicts and the tickets in Chinese.
    line = next(html for url, html in pages.items() if url.startswith(f"/console/lines/{MAIN} "))
    for text in ("正常", "降级", "失败", "无法运行", "已跳过",  # check statuses
                 "手动", "定时", "闲置后恢复", "闲置巡检", "远程", "复测",  # triggers
                 "严重", "警告",  # severities
                 "丢包</", "域名服务器", "超时", "会议室 2", "的 WiFi 信号弱",  # finding labels and sentences
                 "WAN 速率 1000 Mbit/s", "流量闸门", "反射器在监听", "证据尚不足", "WiFi 测速还不够",
                 "资费下调了 15.0%"):
        assert text in line, text
    assert "<code>packet_loss</code>" in line and "<code>line.test_server</code>" in line
    shop = next(html for url, html in pages.items() if url.startswith(f"/console/lines/{SHOP} "))
    assert "承诺的速率未兑现" in shop and "在 95% 置信度下，最多 18% 的测速达标" in shop
    board = next(html for url, html in pages.items() if url.startswith("/console/tickets "))
    for label in ("丢包", "探针离线", "提速承诺未兑现", "费用减免承诺未兑现", "受本地设备限制"):
        assert label in board, label
    tickets_text = "".join(html for url, html in pages.items() if "/console/tickets/" in url)
    for text in ("复测已确认", "已指派给", "客户来电，已受理", "规则引擎", "承诺台账", "小时未上报", "已附加证据",
                 "只能转为", "请检查光猫与网关之间的网线"):
        assert text in tickets_text, text
    orders = "".join(html for url, html in pages.items() if "/console/dispatch/" in url)
    for text in ("已到现场：", "已到楼下机房", "域名服务器"):
        assert text in orders, text
    promises = next(html for url, html in pages.items() if url.startswith("/console/promises "))
    assert "费用减免" in promises and "承诺 3 个月中的 1.50 个月" in promises


def test_a_chinese_browser_sees_the_line_page_in_chinese(zh: tuple[str, ZhFleet]) -> None:
    why = browser.missing()
    if why:
        pytest.skip(why)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    base, fleet = zh
    driver = browser.chromium(lang="zh-CN")
    try:
        driver.set_page_load_timeout(30)
        driver.get(base + f"/console/lines/{MAIN}")  # to the sign-in form first, in the browser's language
        WebDriverWait(driver, 15).until(ec.presence_of_element_located((By.ID, "login-form")))
        assert driver.execute_script("return document.documentElement.lang") == "zh-CN"
        driver.find_element(By.ID, "user").send_keys(ADMIN)
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.ID, "login-submit").click()
        WebDriverWait(driver, 15).until(ec.presence_of_element_located((By.ID, "latest-checks")))
        # What the browser renders, walked in the page: visible text outside <code>/<pre>/translate="no".
        texts = driver.execute_script("""
            const out = [];
            const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
            for (let n = walker.nextNode(); n; n = walker.nextNode()) {
              const el = n.parentElement;
              if (!el || el.closest('code, pre, script, style, [translate="no"]')) continue;
              const style = getComputedStyle(el);
              if (style.display === 'none' || style.visibility === 'hidden') continue;
              if (n.textContent.trim()) out.push(n.textContent.trim());
            }
            return out;""")
        html = "".join(f"<p>{t}</p>" for t in texts)
        assert untranslated(html, fleet.ids) == []
        findings = driver.find_element(By.ID, "findings").text
        assert "域名服务器" in findings and "严重" in findings, findings
        assert "降级" in driver.find_element(By.ID, "latest-checks").text
        path = browser.screenshot(driver, "console-line-zh")
        if os.environ.get("LINECHECK_DOC_SCREENSHOTS") == "1":  # how docs/console.md's picture is made
            shutil.copyfile(path, DOCS / path.name)
    finally:
        driver.quit()


def test_every_key_exists_in_both_languages() -> None:
    """Key for key, en.toml and zh-CN.toml hold the same texts (every section, the findings' four texts too)."""
    en, zh_cn = catalogue("en"), catalogue("zh-CN")
    for section in ("report", "status", "trigger", "where", "checks", "metrics", "values", "reasons", "progress",
                    "tickets", "verdicts", "console"):
        assert getattr(en, section).keys() == getattr(zh_cn, section).keys(), section
    assert en.findings.keys() == zh_cn.findings.keys()
    assert catalogue("zh-CN").console["agent"] == "探针" and "代理" not in json.dumps(
        {s: dict(getattr(zh_cn, s)) for s in ("report", "where", "checks", "reasons", "console", "tickets")},
        ensure_ascii=False)


def test_words_fall_back_to_what_was_said_and_never_show_arbitrary_text() -> None:
    """A finding code this version does not know shows the agent's own sentence; stored phrases that do not
    render (a newer collector's key, a missing value) show the stored English; a refusal passed back in the
    address renders only as a catalogued ticket error — never as the text someone put there."""
    from collector.web.words import Words

    w = Words("zh-CN")
    newer = {"code": "frobnication_detected", "severity": "warning", "message": "Found <b>frobs</b>.", "detail": {}}
    assert w.finding(newer) == "Found &lt;b&gt;frobs&lt;/b&gt;."
    known = {"code": "packet_loss", "severity": "warning", "message": "English", "detail": {"target": "<x>",
                                                                                              "loss_pct": 3.5}}
    assert w.finding(known) == '发往 <span translate="no">&lt;x&gt;</span> 的测试包有 3.5% 丢失。'
    hostile = {"code": "packet_loss", "severity": "warning", "message": "m", "detail": {"target": {"nested": 1}}}
    assert w.finding(hostile) == "m"  # not a finding the wire accepts: its text, escaped
    assert w.ticket_summary({"summary": "plain <i>English</i>", "detail": json.dumps(
        {"said": [{"key": "from_a_newer_collector", "args": {}}]})}) == "plain &lt;i&gt;English&lt;/i&gt;"
    assert w.ticket_summary({"summary": "s", "detail": "{not json"}) == "s"
    assert w.event_note({"note": "客户来电", "said": None}) == "客户来电"  # a person's words, as written
    assert w.event_note({"note": "unassigned", "said": json.dumps([{"key": "unassigned", "args": {}}])}) == "已取消指派"
    assert w.error("ticket closed, call 400-000-0000 <script>") is None
    assert w.error(json.dumps({"key": "console_secret", "args": {}})) is None  # only error_* keys
    assert w.error(json.dumps({"key": "error_no_ticket", "args": {"ticket": "<b>7</b>"}})) == \
        '没有 #<span translate="no">&lt;b&gt;7&lt;/b&gt;</span> 号工单'
    assert w.fault("agent_offline") == "探针离线" and w.fault("packet_loss") == "丢包" and w.fault("custom") is None
