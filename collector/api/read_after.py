"""Read-your-writes with a read replica: after a request writes, its caller's reads wait for the primary's
position of that write (collector/store/replica.py routes them).

A write request (any method but GET, HEAD, OPTIONS) that committed on the primary ends with the
primary's WAL position read after the commit. The caller gets it back three ways:
- remembered in this process for the caller's credential (API clients that send nothing back);
- a cookie, `lc_read_after` (the console: a form's POST, its redirect, the next page);
- a header, `Linecheck-Read-After`, for API clients behind several collectors to send back.
Cookie and header hold `<lsn>.<mac>`: the MAC is keyed by the caller's own credential (bearer token or
console session, as the console's CSRF token is), so another caller's token, or one from an earlier
session, is ignored. The position only routes reads: identity and scope still come from the
credential, so no token can show anything its bearer may not see. What a caller can forge with their
own credential is an LSN; one beyond the primary's WAL is ignored (collector/store/replica.py), one
below it sends their reads to the primary only until the replica has replayed it.

The response of a write is held until the app has returned: FastAPI commits a `yield` dependency's
transaction after the response is sent, and the position must be read after that commit. Without a
replica the middleware does that much too (routing=None): a client that got the answer to its write
could otherwise read before the write was committed, on the primary alone.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any

from anyio import to_thread

from collector.api.deps import SAFE_METHODS, SESSION_COOKIE
from collector.store.replica import ReadRouting, RequestRouting, request_context

COOKIE = "lc_read_after"
HEADER = "linecheck-read-after"
COOKIE_MAX_AGE_S = 86400
REMEMBERED_CALLERS = 10_000  # credentials whose last write this process keeps (least recent dropped)
_TOKEN = re.compile(r"([0-9a-f]{16})\.([0-9a-f]{32})")

Message = MutableMapping[str, Any]
ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Message]],
                    Callable[[Message], Awaitable[None]]], Awaitable[None]]


def sign(credential: str, lsn: int) -> str:
    body = f"{lsn:016x}"
    return f"{body}.{_mac(credential, body)}"


def verify(credential: str, token: str) -> int:
    """The LSN a token carries if it was made for this credential; else 0 (the token changes nothing)."""
    match = _TOKEN.fullmatch(token.strip()) if len(token) < 100 else None
    if match is None or not hmac.compare_digest(_mac(credential, match.group(1)), match.group(2)):
        return 0
    return int(match.group(1), 16)


def _mac(credential: str, body: str) -> str:
    return hmac.new(credential.encode(), b"linecheck-read-after|" + body.encode(), hashlib.sha256).hexdigest()[:32]


class RecentWrites:
    """The newest write position per caller in this process, keyed by a digest of the credential."""

    def __init__(self, limit: int = REMEMBERED_CALLERS):
        self.limit = limit
        self._lsn: OrderedDict[bytes, int] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, credential: str) -> int:
        with self._lock:
            return self._lsn.get(_digest(credential), 0)

    def remember(self, credential: str, lsn: int) -> None:
        key = _digest(credential)
        with self._lock:
            self._lsn[key] = max(lsn, self._lsn.get(key, 0))
            self._lsn.move_to_end(key)
            while len(self._lsn) > self.limit:
                self._lsn.popitem(last=False)


def _digest(credential: str) -> bytes:
    return hashlib.sha256(credential.encode()).digest()


class ReadAfterWrites:
    """ASGI middleware: sets each request's routing (collector/store/replica.py) and answers writes with
    their position (module doc)."""

    def __init__(self, app: ASGIApp, routing: ReadRouting | None, secure_cookies: bool = False,
                 recent: RecentWrites | None = None):
        self.app = app
        self.routing = routing
        self.secure = secure_cookies
        self.recent = recent or RecentWrites()

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        read = scope.get("method", "GET") in SAFE_METHODS
        if scope["type"] != "http" or (read and self.routing is None):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        cookies = _cookies(headers.get("cookie", ""))
        credential = _credential(headers, cookies) if self.routing is not None else ""
        ctx = RequestRouting(read=read)
        if credential:
            sent = headers.get(HEADER) or cookies.get(COOKIE) or ""
            ctx.min_lsn = max(self.recent.get(credential), verify(credential, sent) if sent else 0)
        token = request_context.set(ctx)
        try:
            if ctx.read:
                await self.app(scope, receive, send)
                return
            held: list[Message] = []

            async def hold(message: Message) -> None:
                held.append(message)

            await self.app(scope, receive, hold)
            if (self.routing is not None and ctx.committed and credential and held
                    and held[0]["type"] == "http.response.start"):
                lsn = await to_thread.run_sync(self.routing.current_lsn)
                self.recent.remember(credential, lsn)
                held[0]["headers"] = [*held[0].get("headers", []), *self._answer(sign(credential, lsn))]
            for message in held:
                await send(message)
        finally:
            request_context.reset(token)

    def _answer(self, token: str) -> list[tuple[bytes, bytes]]:
        cookie = f"{COOKIE}={token}; Max-Age={COOKIE_MAX_AGE_S}; Path=/; HttpOnly; SameSite=Lax"
        if self.secure:
            cookie += "; Secure"
        return [(b"set-cookie", cookie.encode()), (HEADER.encode(), token.encode())]


def _cookies(header: str) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except Exception:  # a malformed Cookie header carries no routing (the app answers it as it always has)
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


def _credential(headers: dict[str, str], cookies: dict[str, str]) -> str:
    """The caller's secret as the app reads it (collector/api/deps.token_of): bearer first, else the session."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return cookies.get(SESSION_COOKIE, "")
