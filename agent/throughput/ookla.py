"""The speedtest-cli backend: the real speedtest-cli package, against public or carrier servers.

speedtest-cli downloads its configuration from speedtest.net when it is constructed. For a
carrier's own Ookla-compatible server ("Speedtest Mini", or linecheck-testserver's legacy
endpoints) that is both unnecessary and impossible offline, so `LocalConfigSpeedtest` builds
the same configuration locally: the values speedtest.net's configuration carries (8 download
threads, 4 requests per image size, upload chunks of 512 KiB to 7 MiB x 17, 2 upload threads,
10 s per direction), which make speedtest-cli move its usual ~409 MB down and ~152 MB up.
"""

from __future__ import annotations

import math
from typing import Any

import speedtest

from agent.throughput.errors import BackendError, MeasurementFailed

# What speedtest.net's configuration says (the attributes speedtest-cli reads from it).
LOCAL_CONFIG = {"threadcount": 4, "threadsperurl": 4, "upload_ratio": 5, "upload_maxchunkcount": 50,
                "upload_threads": 2, "testlength": 10}


class LocalConfigSpeedtest(speedtest.Speedtest):
    """speedtest.Speedtest that never fetches speedtest.net's configuration."""

    def get_config(self) -> dict[str, Any]:
        c = LOCAL_CONFIG
        up_sizes = [32768, 65536, 131072, 262144, 524288, 1048576, 7340032][c["upload_ratio"] - 1:]
        upload_count = int(math.ceil(c["upload_maxchunkcount"] / len(up_sizes)))
        self.config.update({
            "client": {"ip": "", "lat": "0", "lon": "0", "isp": "", "country": ""},
            "ignore_servers": [],
            "sizes": {"upload": up_sizes, "download": [350, 500, 750, 1000, 1500, 2000, 2500, 3000, 3500, 4000]},
            "counts": {"upload": upload_count, "download": c["threadsperurl"]},
            "threads": {"upload": c["upload_threads"], "download": c["threadcount"] * 2},
            "length": {"upload": c["testlength"], "download": c["testlength"]},
            "upload_max": upload_count * len(up_sizes),
        })
        self.lat_lon = (0.0, 0.0)
        return self.config


def mini_url(host: str, port: int) -> str:
    return f"http://{host}:{port}/"


def run_speedtest(server: str | None, host: str | None, port: int | None, direction: str,
                  st: speedtest.Speedtest | None = None) -> tuple[speedtest.Speedtest, float, int]:
    """One direction with speedtest-cli; returns (instance for reuse, bit/s, bytes)."""
    try:
        if st is None:
            if host is not None and port is not None:
                st = LocalConfigSpeedtest(timeout=10)
                st.set_mini_server(mini_url(host, port))
            else:  # public speedtest.net: speedtest-cli's own configuration and server choice
                st = speedtest.Speedtest(timeout=10)
                st.get_servers([int(server)] if server and server.isdigit() else [])
            st.get_best_server(st.servers if isinstance(st.servers, list) else None)
        if direction == "down":
            bps = st.download()
            used = int(st.results.bytes_received)
        else:
            bps = st.upload()
            used = int(st.results.bytes_sent)
    except speedtest.SpeedtestBestServerFailure as exc:
        raise MeasurementFailed(f"speedtest-cli: server did not answer its latency test: {exc}") from exc
    except (speedtest.SpeedtestMiniConnectFailure, speedtest.InvalidSpeedtestMiniServer) as exc:
        raise MeasurementFailed(f"speedtest-cli: {exc}") from exc
    except speedtest.SpeedtestException as exc:
        raise BackendError(f"speedtest-cli: {type(exc).__name__}: {exc}") from exc
    if not bps or not used:
        raise MeasurementFailed(f"speedtest-cli moved no data {direction} (server refused or busy?)")
    return st, float(bps), used


def idle_ping_ms(st: speedtest.Speedtest) -> float | None:
    ping = getattr(st.results, "ping", None)
    return float(ping) if ping and ping < 3600 * 1000 else None
