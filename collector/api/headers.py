"""Security headers on every HTTP response: no framing, no MIME sniffing, no referrer, and a CSP the
console actually satisfies.

The console is server-rendered HTML with one stylesheet, inline SVG charts (presentation attributes,
no style attributes) and no JavaScript at all, so its policy allows styles and images from itself
and nothing else: an injected <script> or inline style would not run even if escaping ever failed.
A route that needs another policy (the self-contained acceptance report) sets its own
Content-Security-Policy; this middleware only adds headers a response does not already carry.
The API's reference pages get theirs by path (DOCS_CSP).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

CONSOLE_CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
               "frame-ancestors 'none'; base-uri 'none'")
# JSON, CSV and plain text: nothing in them should ever be run or framed.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
# Swagger UI (/api/docs) and ReDoc (/api/redoc) run the collector's own copies of their scripts
# (collector/api/docs_pages.py) and nothing else: no CDN, no inline script. Both style their widgets
# with inline styles (ReDoc injects <style> elements), hence 'unsafe-inline' for styles only; ReDoc's
# search runs in a worker made from a blob.
DOCS_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "font-src 'self' data:; connect-src 'self'; worker-src blob:; form-action 'none'; "
            "frame-ancestors 'none'; base-uri 'none'")
# The acceptance report is one self-contained file (printed to PDF too): an inline <style>, and its
# signed JSON in a non-executed <script type="application/json">.
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'"

COMMON = {
    b"x-frame-options": b"DENY",
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
}

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def policy_for(path: str) -> str:
    if path.startswith("/console"):
        return CONSOLE_CSP
    if path.startswith(("/api/docs", "/api/redoc")):
        return DOCS_CSP
    return API_CSP


class SecurityHeaders:
    """Pure ASGI (not BaseHTTPMiddleware): streamed CSV exports pass through untouched and unbuffered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = policy_for(scope.get("path", "")).encode()

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                wanted = {**COMMON, b"content-security-policy": csp}
                headers += [(k, v) for k, v in wanted.items() if k not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
