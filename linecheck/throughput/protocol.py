"""The throughput protocol: what linecheck's engine asks and what a linecheck test server answers.

Both sides read this module — the carrier's server (testserver/, via linecheck/throughput/server.py),
the gateway's LAN test server (agent/lan/server.py, the same server), and the clients that load the
line (agent/throughput/streams.py, engine.py, probes.py, agent/lan/client.py) — so a path, a query
parameter or the shape of a refusal cannot drift between them. tests/test_throughput_protocol.py
checks that neither side spells a path of its own, and that the browser page's paths are these.

linecheck engine (HTTP/1.1, keep-alive; every answer carries CORS headers for browser clients):

    GET  /download?bytes=N&test=ID   N random bytes (application/octet-stream); a short body with
                                      `Connection: close` means the test's byte or time cap was hit
    POST /upload?test=ID             any body (Content-Length or chunked), read and discarded;
                                      answers {"received_bytes": n}
    GET  /latency                    "ok"; never admitted, so probing works while a test runs
    GET  /status                     the server's load and limits (JSON)

A test is named by `test=` or the X-Linecheck-Test header (at most TEST_ID_MAX characters; a
client that names none is grouped by its address). The engine asks for admission with a one-byte
download before loading the line. A server that wants a token takes `Authorization: Bearer <token>`
or `?token=`. A refusal is JSON {"error": ..., "detail": ...} with status 400, 401, 404 or 503
(server busy, with Retry-After).

Third-party clients: LibreSpeed's backend (garbage.php?ckSize=N chunks of 1 MiB, empty.php,
getIP.php, also under /backend/) and Ookla's legacy "mini" server (random{N}x{N}.jpg, upload.php,
latency.txt under /speedtest/).
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlencode

# --- linecheck engine -------------------------------------------------------------------------------
# The test server's HTTP port when a spec names none (agent) and when it is given none (server): not
# 8080, the collector's console and API, so both can run on one host with their defaults.
DEFAULT_PORT = 8070

DOWNLOAD = "/download"
UPLOAD = "/upload"
LATENCY = "/latency"
STATUS = "/status"

BYTES_PARAM = "bytes"
TEST_PARAM = "test"
TOKEN_PARAM = "token"
TEST_HEADER = "X-Linecheck-Test"
AUTH_HEADER = "Authorization"
BEARER = "Bearer "
TEST_ID_MAX = 64

LATENCY_ANSWER = b"ok"
RECEIVED_BYTES = "received_bytes"  # the key of an upload's answer
ADMISSION_BYTES = 1  # the admission request: a download this small loads nothing

# Payload sizes. The server sends slices of one random (incompressible) payload, and the engine
# uploads from one of the same size; each request asks for REQUEST_BYTES on a reused connection.
PAYLOAD_BYTES = 16 * 1024 * 1024
REQUEST_BYTES = 256 * 1024 * 1024
CONTENT_TYPE_BYTES = "application/octet-stream"

# --- refusals ---------------------------------------------------------------------------------------
OK = 200
BAD_REQUEST = 400
UNAUTHORISED = 401
NOT_FOUND = 404
BUSY = 503
BUSY_ERROR = "server busy"  # the `error` of a 503: the engine reports it as ServerBusy, not as a broken line


def error_body(error: str, detail: str) -> bytes:
    """A refusal's body: {"error": ..., "detail": ...}."""
    return json.dumps({"error": error, "detail": detail}).encode()


def error_text(body: bytes) -> str:
    """'error: detail' of a refusal, or the start of whatever else the server sent."""
    try:
        doc = json.loads(body)
        return f"{doc.get('error', '')}: {doc.get('detail', '')}".strip(": ")
    except (ValueError, AttributeError):
        return body[:200].decode(errors="replace")


# --- requests as the engine sends them --------------------------------------------------------------
def download_target(size: int, test_id: str | None = None) -> str:
    query = {BYTES_PARAM: size, **({TEST_PARAM: test_id} if test_id else {})}
    return f"{DOWNLOAD}?{urlencode(query)}"


def upload_target(test_id: str | None = None) -> str:
    return f"{UPLOAD}?{urlencode({TEST_PARAM: test_id})}" if test_id else UPLOAD


def auth_header(token: str | None) -> dict[str, str]:
    return {AUTH_HEADER: f"{BEARER}{token}"} if token else {}


def raw_request(method: str, target: str, host: str, headers: dict[str, str] | None = None) -> bytes:
    """An HTTP/1.1 request head, for the engine's hand-rolled keep-alive connections."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# --- LibreSpeed backend -----------------------------------------------------------------------------
LIBRESPEED_PREFIX = "/backend"  # LibreSpeed's default layout puts the backend there
LIBRESPEED_GARBAGE = "/garbage.php"
LIBRESPEED_EMPTY = "/empty.php"
LIBRESPEED_GET_IP = "/getIP.php"
LIBRESPEED_CHUNK_PARAM = "ckSize"
LIBRESPEED_CHUNK_BYTES = 1024 * 1024  # garbage.php sends ckSize chunks of 1 MiB
LIBRESPEED_MAX_CHUNKS = 1024

# --- Ookla legacy ("mini") server -------------------------------------------------------------------
OOKLA_LATENCY = "/speedtest/latency.txt"
OOKLA_UPLOAD = "/speedtest/upload.php"
OOKLA_IMAGE = re.compile(r"^/speedtest/random(\d{2,4})x(\d{2,4})\.jpg$")
OOKLA_LATENCY_ANSWER = b"test=test\n"


def ookla_image_bytes(side: int) -> int:
    """Size of `random{side}x{side}.jpg`: about what a mini server's JPEG of that side weighs."""
    return int(1.98 * side * side)


UPLOAD_PATHS = (UPLOAD, LIBRESPEED_EMPTY, OOKLA_UPLOAD)
ENGINE_PATHS = (DOWNLOAD, UPLOAD, LATENCY, STATUS)
