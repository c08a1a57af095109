"""The API's reference pages, served whole by the collector: Swagger UI at /api/docs, ReDoc at /api/redoc.

FastAPI's own pages load Swagger UI from a CDN, so on a carrier's closed network /api/docs was a blank
page. The JavaScript and CSS come from the `fastapi-offline` package (it ships Swagger UI's and
ReDoc's release files) and are served from /api/docs/assets; the pages themselves have no inline
script, so their CSP allows scripts from the collector only (collector/api/headers.py DOCS_CSP).
/docs and /redoc, where FastAPI users look first, redirect here.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).parent / "static"  # swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js
INIT = Path(__file__).parent / "static" / "swagger-init.js"
DOCS, REDOC = "/api/docs", "/api/redoc"

# Relative links: /api/docs and /api/redoc sit beside /api/openapi.json, also behind a proxy's path prefix.
_SWAGGER = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} — Swagger UI</title>
<link rel="icon" href="docs/assets/favicon.png">
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
</head><body>
<div id="swagger-ui"></div>
<noscript>This page needs JavaScript. The API description itself: <a href="openapi.json">openapi.json</a>.</noscript>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/swagger-init.js"></script>
</body></html>
"""
_REDOC = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} — ReDoc</title>
<link rel="icon" href="docs/assets/favicon.png">
</head><body>
<noscript>This page needs JavaScript. The API description itself: <a href="openapi.json">openapi.json</a>.</noscript>
<redoc spec-url="openapi.json"></redoc>
<script src="docs/assets/redoc.standalone.js"></script>
</body></html>
"""


def add_docs(app: FastAPI) -> None:
    """Swagger UI, ReDoc and their files on `app` (created with docs_url=None, redoc_url=None)."""
    router = APIRouter(include_in_schema=False)
    title = escape(app.title)

    @router.get(DOCS)
    def swagger() -> HTMLResponse:
        return HTMLResponse(_SWAGGER.format(title=title))

    @router.get(REDOC)
    def redoc() -> HTMLResponse:
        return HTMLResponse(_REDOC.format(title=title))

    @router.get(DOCS + "/swagger-init.js")
    def swagger_init() -> FileResponse:
        return FileResponse(INIT, media_type="text/javascript")

    @router.get("/docs")
    def docs_elsewhere() -> RedirectResponse:
        return RedirectResponse(DOCS)

    @router.get("/redoc")
    def redoc_elsewhere() -> RedirectResponse:
        return RedirectResponse(REDOC)

    app.include_router(router)
    app.mount(DOCS + "/assets", StaticFiles(directory=ASSETS), name="api-docs-assets")
