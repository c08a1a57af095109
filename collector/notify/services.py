"""Chat and push services through Apprise: WeCom, DingTalk, Feishu/Lark, Telegram, ntfy, Slack, mail, ...

One Apprise URL per target (`notify.apprise` in the collector config), e.g. `wecombot://BOTKEY`,
`dingtalk://TOKEN/`, `feishu://TOKEN/`, `tgram://BOTTOKEN/CHAT_ID`, `ntfy://HOST/TOPIC`,
`slack://TOKEN_A/TOKEN_B/TOKEN_C/#channel`, `mailtos://USER:PASSWORD@HOST`, `json://HOST:PORT/PATH`.
Apprise keeps the services' APIs; the outbox (outbox.py) keeps the retries, the lease and the
delivery log, exactly as for webhooks and mail.

Those URLs carry the credentials (a bot token is the whole secret of a Telegram or WeCom bot), so
no URL is ever logged or stored: Apprise's own log lines (which print request paths and payload
topics) and urllib3's (request paths) are kept from the collector's logs, Apprise's warnings are
captured per delivery and every part of the URL that may be a secret is masked before the error
is logged or written to `notification_attempts` (`redact`).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from urllib.parse import parse_qsl, unquote, urlsplit

from collector.notify.webhook import Outcome

MASK = "****"
_QUIET = ("apprise", "urllib3")
_NULL = logging.NullHandler()
_SILENT = logging.CRITICAL + 10


def _apprise():  # type: ignore[no-untyped-def]
    """Apprise, with its loggers kept from the collector's handlers. Apprise logs every request's path
    and payload (tokens, topics) at DEBUG and failures at WARNING, urllib3 logs request paths: the
    warnings are captured per delivery (LogCapture) and logged by the outbox, redacted. Set on every
    use, not once: a logging.config call elsewhere (alembic's, at migration) resets `propagate`."""
    for name in _QUIET:
        logger = logging.getLogger(name)
        logger.propagate = False
        logger.setLevel(_SILENT)  # nothing is even emitted; LogCapture lowers it to WARNING while it listens
        if _NULL not in logger.handlers:
            logger.addHandler(_NULL)
    return _import_apprise()


@functools.cache
def _import_apprise():  # type: ignore[no-untyped-def]
    """Imported on first use: loading Apprise's ~190 service plugins takes about a second."""
    import apprise

    return apprise


def secrets_of(url: str) -> list[str]:
    """The parts of an Apprise URL that may be secret, longest first: user, password, every path
    segment and query value, and the host unless it is an address or a DNS name (wecombot://KEY and
    tgram://BOT:TOKEN put the secret where a host would be)."""
    found: set[str] = set()
    rest = url.split("://", 1)[-1]
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    netloc, after = rest[:end], rest[end:]
    userinfo, at, host = netloc.rpartition("@")
    if at:
        found.update(userinfo.split(":", 1))
    for part in host.split(":"):
        if not _public_host_part(part):
            found.add(part)
    parsed = urlsplit("x://h" + after)
    found.update(parsed.path.split("/"))
    found.update(v for _, v in parse_qsl(parsed.query, keep_blank_values=True))
    found.update(parsed.fragment.split("/"))
    found |= {unquote(s) for s in found}
    return sorted((s for s in found if len(s) >= 4), key=len, reverse=True)


def _public_host_part(part: str) -> bool:
    if part.isdigit() and len(part) <= 5:  # a port
        return True
    try:
        ipaddress.ip_address(part.strip("[]"))
        return True
    except ValueError:
        return "." in part or part == "localhost"


def redact(text: str, url: str) -> str:
    for secret in secrets_of(url):
        text = text.replace(secret, MASK)
    return text


def check_url(url: str) -> str | None:
    """None when Apprise can use the URL; else what is wrong, without repeating the URL."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if not scheme:
        return "expected an Apprise URL such as ntfy://HOST/TOPIC or wecombot://BOTKEY (SCHEME://...)"
    try:
        apprise = _apprise()
    except ImportError:
        return "needs Apprise, which is not installed: pip install 'linecheck[collector]'"
    if apprise.Apprise.instantiate(url) is not None:
        return None
    try:
        from apprise.manager_plugins import NotificationManager

        known = scheme in NotificationManager().schemas()
    except ImportError:  # an Apprise without the plugin manager module: say the general thing
        known = True
    if not known:
        return (f"'{scheme}://' is not a service Apprise knows (e.g. wecombot, dingtalk, feishu, tgram, ntfy, "
                "slack, mailto, json; see the Apprise wiki)")
    return (f"Apprise cannot use this {scheme}:// URL: a part it needs is missing or malformed (see the "
            f"{scheme} page of the Apprise wiki; the URL is not repeated here, it may hold a token)")


def send(url: str, title: str, body: str) -> Outcome:
    """Deliver one message; a failure is retryable (Apprise reports no status the outbox could judge)."""
    apprise = _apprise()
    service = apprise.Apprise()
    if not service.add(url):
        return Outcome(False, False, None, "Apprise cannot use the configured URL")
    with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
        ok = bool(service.notify(title=title, body=body, body_format=apprise.NotifyFormat.TEXT))
    if ok:
        return Outcome(True, False, None, None)
    said = " ".join(line.strip() for line in captured.getvalue().splitlines() if line.strip())
    return Outcome(False, True, None, redact(said or "the service did not accept the message", url)[:500])
