"""linecheck-testserver's config file (YAML), as a typed model. See config/testserver.example.yaml.

Command-line options override the file; unknown keys are errors naming the file and the key.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from linecheck import stamp
from linecheck.configfile import Strict, load_model
from linecheck.throughput.protocol import DEFAULT_PORT
from linecheck.throughput.sessions import MAX_WORKERS, Limits

_D = Limits()


def split_host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT (e.g. 0.0.0.0:{DEFAULT_PORT}), got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class TestServerConfig(Strict):
    listen: str = Field(default=f"0.0.0.0:{DEFAULT_PORT}", description="HTTP address HOST:PORT (port 0: a free port)")
    stamp_listen: str | None = Field(default=None, description=f"STAMP reflector HOST:PORT; default: the HTTP host, "
                                                                f"port {stamp.DEFAULT_PORT}")
    stamp: bool = Field(default=True, description="run the STAMP reflector")
    workers: int | None = Field(default=None, ge=1, le=MAX_WORKERS,
                                description="server processes on the port; default: the number of cores")
    max_tests: int = Field(default=_D.max_tests, ge=1, le=10000)
    capacity_mbps: float | None = Field(default=None, gt=0, description="the server's link rate each way")
    max_connections: int = Field(default=_D.max_connections, ge=1, le=100000)
    max_test_s: float = Field(default=_D.max_test_s, gt=0, le=3600)
    max_test_bytes: int = Field(default=_D.max_test_bytes, ge=1)
    idle_s: float = Field(default=_D.idle_s, gt=0, le=3600)
    token_file: Path | None = None

    @field_validator("listen", "stamp_listen")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            split_host_port(value)
        return value


def load(path: Path | str) -> TestServerConfig:
    return load_model(path, TestServerConfig)
