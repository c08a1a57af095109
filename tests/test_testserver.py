"""linecheck-testserver's HTTP endpoints, limits and CLI, on a real server on a free port."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from linecheck import stamp
from linecheck.throughput.sessions import Limits, Refused, Sessions
from tests.helpers import wait_for
from testserver.cli import byte_size
from testserver.http import ThroughputServer, ookla_image_bytes


@pytest.fixture
def server() -> Iterator[ThroughputServer]:
    with ThroughputServer("127.0.0.1", 0, Limits(max_tests=2, idle_s=30)) as srv:
        yield srv


def request(srv: ThroughputServer, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(*srv.address, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_engine_endpoints(server: ThroughputServer) -> None:
    status, headers, body = request(server, "GET", "/download?bytes=3000001&test=t1")
    assert status == 200 and len(body) == 3000001 and headers["cache-control"].startswith("no-store")
    # Generated payload, not a constant fill: the bytes differ across the body.
    assert len(set(body[:4096])) > 200
    status, _, body = request(server, "POST", "/upload?test=t1", body=b"x" * 2_500_000)
    assert status == 200 and json.loads(body) == {"received_bytes": 2_500_000}
    assert request(server, "GET", "/latency")[:3:2] == (200, b"ok")
    assert request(server, "GET", "/download?bytes=-5")[0] == 400
    assert request(server, "GET", "/nope")[0] == 404


def test_keepalive_serves_many_requests_on_one_connection(server: ThroughputServer) -> None:
    conn = http.client.HTTPConnection(*server.address, timeout=10)
    for _ in range(5):
        conn.request("GET", "/download?bytes=100000&test=ka")
        assert len(conn.getresponse().read()) == 100000
        conn.request("POST", "/upload?test=ka", body=b"y" * 70000)
        assert json.loads(conn.getresponse().read())["received_bytes"] == 70000
    conn.close()


def test_chunked_upload_is_drained(server: ThroughputServer) -> None:
    conn = http.client.HTTPConnection(*server.address, timeout=10)
    conn.request("POST", "/upload?test=ch", body=iter([b"a" * 1000, b"b" * 5000]), encode_chunked=True,
                 headers={"Transfer-Encoding": "chunked"})
    assert json.loads(conn.getresponse().read())["received_bytes"] == 6000
    conn.request("GET", "/latency")  # the connection is still in sync after the chunked body
    assert conn.getresponse().read() == b"ok"


def test_librespeed_endpoints(server: ThroughputServer) -> None:
    for prefix in ("", "/backend"):
        status, headers, body = request(server, "GET", f"{prefix}/garbage.php?ckSize=3&r=0.5")
        assert status == 200 and len(body) == 3 * 1024 * 1024
        assert headers["content-disposition"] == "attachment; filename=random.dat"
        assert headers["access-control-allow-origin"] == "*"
        assert request(server, "POST", f"{prefix}/empty.php", body=b"z" * 100_000)[:3:2] == (200, b"")
        assert request(server, "GET", f"{prefix}/empty.php")[0] == 200
        status, _, body = request(server, "GET", f"{prefix}/getIP.php?isp=true")
        assert json.loads(body)["processedString"] == "127.0.0.1"
    # LibreSpeed caps ckSize at 1024 chunks; HEAD shows the length without moving a GiB.
    assert request(server, "HEAD", "/garbage.php?ckSize=99999")[1]["content-length"] == str(1024**3)
    status, headers, _ = request(server, "OPTIONS", "/empty.php")
    assert status == 204 and "POST" in headers["access-control-allow-methods"]


def test_ookla_legacy_endpoints(server: ThroughputServer) -> None:
    status, headers, body = request(server, "GET", "/speedtest/random500x500.jpg?x=1.0")
    assert status == 200 and len(body) == ookla_image_bytes(500) and headers["content-type"] == "image/jpeg"
    assert request(server, "GET", "/speedtest/latency.txt")[2] == b"test=test\n"
    assert request(server, "GET", "/speedtest/upload.php")[2] == b"size=0"
    assert request(server, "POST", "/speedtest/upload.php", body=b"content1=" + b"0" * 32759)[2] == b"size=32768"
    assert b'upload_extension: "php"' in request(server, "GET", "/")[2]
    assert request(server, "GET", "/speedtest/random500x400.jpg")[0] == 400


def test_busy_server_refuses_a_new_test_with_a_clear_reason(server: ThroughputServer) -> None:
    assert request(server, "GET", "/download?bytes=10&test=a")[0] == 200
    assert request(server, "GET", "/download?bytes=10&test=b")[0] == 200
    status, headers, body = request(server, "GET", "/download?bytes=10&test=c")
    assert status == 503 and headers["retry-after"] == "31"
    refusal = json.loads(body)
    assert refusal["error"] == "server busy" and "limit is 2" in refusal["detail"]
    # Running tests go on; latency probes are never refused.
    assert request(server, "POST", "/upload?test=a", body=b"1" * 10)[0] == 200
    assert request(server, "GET", "/latency")[0] == 200
    assert server.status()["refused_busy"] == 1


def test_sessions_expire_and_caps_apply() -> None:
    now = [0.0]
    s = Sessions(Limits(max_tests=1, idle_s=2, max_test_s=10, max_test_bytes=1000), clock=lambda: now[0])
    a = s.begin("a")
    with pytest.raises(Refused, match="server busy"):
        s.begin("b")
    s.end(a)
    now[0] = 1.0
    with pytest.raises(Refused):  # idle for 1 s only: still running
        s.begin("b")
    now[0] = 3.5
    b = s.begin("b")  # "a" idled out
    assert s.budget(b, 5000) == 1000
    b.add(1000)
    s.end(b)
    with pytest.raises(Refused, match="byte cap") as info:
        s.begin("b")
    assert info.value.status == 429
    now[0] = 20.0
    c = s.begin("c")
    now[0] = 31.0
    assert s.expired(c)


def test_byte_cap_clamps_a_download() -> None:
    with ThroughputServer("127.0.0.1", 0, Limits(max_test_bytes=1_000_000, idle_s=30)) as srv:
        status, headers, body = request(srv, "GET", "/download?bytes=5000000&test=cap")
        assert status == 200 and len(body) == 1_000_000 and headers["connection"] == "close"
        status, _, body = request(srv, "GET", "/download?bytes=10&test=cap")
        assert status == 429 and json.loads(body)["error"] == "test too large"


def test_token_is_required_when_configured() -> None:
    with ThroughputServer("127.0.0.1", 0, Limits(token="s3cret")) as srv:
        status, _, body = request(srv, "GET", "/download?bytes=10")
        assert status == 401 and json.loads(body)["error"] == "unauthorised"
        assert request(srv, "GET", "/download?bytes=10&token=wrong")[0] == 401
        assert request(srv, "GET", "/download?bytes=10", headers={"Authorization": "Bearer s3cret"})[0] == 200
        assert request(srv, "GET", "/download?bytes=10&token=s3cret")[0] == 200


def test_connection_limit_answers_busy() -> None:
    with ThroughputServer("127.0.0.1", 0, Limits(max_connections=1)) as srv:
        holder = socket.create_connection(srv.address)
        wait_for(lambda: srv.status()["connections"] == 1, 5, "the first connection to be accepted")
        status, _, body = request(srv, "GET", "/latency")
        assert status == 503 and b"too many connections" in body
        holder.close()
        wait_for(lambda: request(srv, "GET", "/latency")[0] == 200, 5, "the slot to free up")


def test_byte_size_parser() -> None:
    assert byte_size("500M") == 500 * 1024**2 and byte_size("2G") == 2 * 1024**3 and byte_size("123") == 123
    with pytest.raises(Exception, match="expected a size"):
        byte_size("lots")


def test_cli_serves_and_rejects_bad_arguments(tmp_path) -> None:
    bad = subprocess.run([sys.executable, "-m", "testserver.cli", "--listen", "nowhere"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "expected HOST:PORT" in bad.stderr
    empty = tmp_path / "token"
    empty.write_text("\n")
    bad = subprocess.run([sys.executable, "-m", "testserver.cli", "--listen", "127.0.0.1:0", "--token-file",
                          str(empty)], capture_output=True, text=True)
    assert bad.returncode == 2 and "empty" in bad.stderr
    proc = subprocess.Popen([sys.executable, "-m", "testserver.cli", "--listen", "127.0.0.1:0",
                             "--stamp-listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "http listening on 127.0.0.1:" in line
        port = int(line.split("127.0.0.1:")[1].split()[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/speedtest/latency.txt")
        assert conn.getresponse().read() == b"test=test\n"
        conn.close()
        # The same process reflects STAMP probes (testserver/reflector.py).
        line = proc.stdout.readline()
        assert "stamp reflector on udp 127.0.0.1:" in line
        udp_port = int(line.rsplit(":", 1)[1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(5)
            udp.sendto(stamp.pack_sender(7, stamp.ntp_now()), ("127.0.0.1", udp_port))
            reply = stamp.unpack_reflected(udp.recv(2048))
        assert reply.sender_seq == 7
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def test_example_config_loads_and_bad_keys_are_named(tmp_path) -> None:
    from pathlib import Path

    from linecheck.configfile import ConfigError
    from testserver import config

    example = config.load(Path(__file__).resolve().parent.parent / "config" / "testserver.example.yaml")
    assert example.listen == "0.0.0.0:8070" and example.stamp_listen == "0.0.0.0:8620" and example.max_tests == 4
    for body, message in (("max_testz: 3\n", "max_testz: unknown key"),
                          ("listen: nowhere\n", "listen: expected HOST:PORT"),
                          ("idle_s: 0\n", "idle_s: Input should be greater than 0")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(body)
        with pytest.raises(ConfigError, match=message):
            config.load(bad)
    out = subprocess.run([sys.executable, "-m", "testserver.cli", "--max-tests", "0"], capture_output=True, text=True)
    assert out.returncode == 2 and "command line: max_tests: Input should be greater than or equal to 1" in out.stderr


def test_download_payload_lives_in_the_page_cache_not_a_memfd(tmp_path) -> None:
    """sendfile from page-cache pages costs less CPU per byte than from a memfd's shmem (payload.py):
    the server's payload is an unlinked file in the temp directory; a memfd where that cannot be made."""
    import os

    from linecheck.throughput.payload import Payload

    p = Payload(size=3 * 1024 * 1024 + 5, directory=str(tmp_path))
    try:
        link = os.readlink(f"/proc/self/fd/{p.fd}")
        assert link.startswith(str(tmp_path)) and link.endswith("(deleted)") and not list(tmp_path.iterdir())
        assert os.fstat(p.fd).st_size == 3 * 1024 * 1024 + 5
    finally:
        p.close()
    fallback = Payload(size=1024, directory=str(tmp_path / "missing"))
    try:
        assert os.readlink(f"/proc/self/fd/{fallback.fd}").startswith("/memfd:")
    finally:
        fallback.close()
    with ThroughputServer("127.0.0.1", 0) as srv:
        assert not os.readlink(f"/proc/self/fd/{srv._server.payload.fd}").startswith("/memfd:")
