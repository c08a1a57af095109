"""The HTTP half of linecheck-testserver: the shared measurement server (linecheck/throughput/server.py,
speaking linecheck/throughput/protocol.py) with the carrier's browser speed test page at `/`.

The page is a LibreSpeed-protocol client; it also names the upload extension, which is what
speedtest-cli's --mini mode looks for on the page it is pointed at.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from linecheck.throughput.protocol import DEFAULT_PORT, ookla_image_bytes
from linecheck.throughput.server import Limits, MeasurementHandler
from linecheck.throughput.server import ThroughputServer as _SharedServer
from linecheck.throughput.sessions import Sessions

__all__ = ["Limits", "ThroughputServer", "ookla_image_bytes"]

INDEX_PAGE = resources.files("testserver").joinpath("static/index.html").read_bytes()


class ThroughputServer(_SharedServer):
    """The measurement server with the carrier's speed test page."""

    def __init__(self, host: str = "0.0.0.0", port: int = DEFAULT_PORT, limits: Limits | None = None,
                 verbose: bool = False, handler: type[MeasurementHandler] = MeasurementHandler,
                 context: Any = None, sessions: Sessions | None = None, worker: int = 0,
                 reuse_port: bool = False) -> None:
        super().__init__(host, port, limits, verbose, handler, context, index=INDEX_PAGE, sessions=sessions,
                         worker=worker, reuse_port=reuse_port)
