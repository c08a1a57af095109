"""The LAN-side room test: neighbour lookup, judging and recording a client's figures, and the
server (the carrier test server's endpoints plus the agent's page and API) on loopback."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest

from agent.lan.neighbours import normalise, parse_ip_neigh, parse_proc_net_arp
from agent.lan.record import ClientResult, envelope, judge
from agent.lan.server import Identity, LanServer
from agent.lan.settings import LanTestConfig
from agent.lan.station import StationView
from agent.spool import Spool
from linecheck.configfile import ConfigError
from linecheck.wire import ResultEnvelope, Status

ARP = """IP address       HW type     Flags       HW address            Mask     Device
198.19.0.2       0x1         0x2         3c:22:fb:8e:41:07     *        lan0
198.19.0.9       0x1         0x0         00:00:00:00:00:00     *        lan0
192.168.1.20     0x1         0x2         F0:18:98:2C:5A:11     *        br-lan
"""
WEAK = StationView(ip="198.19.0.2", mac="3c:22:fb:8e:41:07", wifi_iface="wlan0", ssid="Office-2.4G", metrics={
    "station_found_flag": 1, "signal_dbm": -78, "signal_avg_dbm": -77, "tx_bitrate_mbps": 39.0,
    "rx_bitrate_mbps": 26.0, "tx_mcs_num": 4, "tx_nss_count": 1, "tx_width_mhz": 20, "tx_retry_pct": 21.2,
    "band_ghz": 2.4, "channel_num": 6, "channel_busy_pct": 68.0})
WIRED = StationView(ip="198.19.0.2", mac="3c:22:fb:8e:41:07", metrics={"station_found_flag": 0},
                    note="not a WiFi station of this gateway")


def test_neighbour_tables() -> None:
    arp = parse_proc_net_arp(ARP)
    assert [(n.ip, n.mac, n.iface) for n in arp] == [("198.19.0.2", "3c:22:fb:8e:41:07", "lan0"),
                                                      ("192.168.1.20", "f0:18:98:2c:5a:11", "br-lan")]
    v6 = parse_ip_neigh("fe80::3e22:fbff:fe8e:4107 dev br-lan lladdr 3c:22:fb:8e:41:07 router REACHABLE\n"
                        "fe80::9 dev br-lan lladdr 02:00:00:00:00:09 FAILED\nfe80::10 dev br-lan INCOMPLETE\n")
    assert [(n.ip, n.mac) for n in v6] == [("fe80::3e22:fbff:fe8e:4107", "3c:22:fb:8e:41:07")]
    assert normalise("::ffff:198.19.0.2") == "198.19.0.2" and normalise("fe80::1%br-lan") == "fe80::1"


def test_weak_room_is_degraded_and_localised_to_wifi() -> None:
    res = ClientResult(room="  Meeting   room 2 ", down_mbps=40.2, up_mbps=35.0, latency_ms=3.1, client="cli")
    check, (raw,) = judge(res, WEAK, 100.0)
    assert check.status is Status.DEGRADED and check.target == "Meeting room 2" and raw.code == "wifi_throughput_low"
    env = envelope("gw", "line", "site", res, WEAK, 100.0)
    ResultEnvelope.model_validate(env.model_dump(by_alias=True) | {"seq": 1})  # valid on the wire
    (f,) = env.findings
    assert (f.code, f.where, f.detail["room"], f.detail["explains"]) == ("wifi_weak", "wifi", "Meeting room 2",
                                                                          "wifi_throughput_low")
    assert env.trigger_info == {"source": "lan_test", "room": "Meeting room 2", "client": "cli"}
    assert env.checks[0].metrics["signal_dbm"] == -78 and env.checks[0].metrics["down_mbps"] == 40.2


def test_wired_room_goes_to_the_lan_and_a_fast_room_is_ok() -> None:
    slow = envelope("gw", "l", "s", ClientResult(room="Store", down_mbps=80, up_mbps=90), WIRED, 100.0)
    assert [(f.code, f.where) for f in slow.findings] == [("lan_throughput_low", "lan")]
    fast = envelope("gw", "l", "s", ClientResult(room="Store", down_mbps=930, up_mbps=910), WIRED, 900.0)
    assert fast.checks[0].status is Status.OK and fast.findings == [] and fast.verdict == "healthy"
    unjudged = envelope("gw", "l", "s", ClientResult(room="Store", down_mbps=5, up_mbps=5), WIRED, None)
    assert unjudged.checks[0].status is Status.OK  # no target anywhere: recorded, not judged


def test_failed_client_test_is_a_record_with_a_reason_and_null_figures() -> None:
    env = envelope("gw", "l", "s", ClientResult(room="Lab", down_mbps=0.0, error="upload: the gateway answered 503"),
                   WEAK, 100.0)
    (c,) = env.checks
    assert c.status is Status.FAILED and "503" in (c.reason or "")
    assert c.metrics["down_mbps"] is None and c.metrics["up_mbps"] is None  # never a zero


@pytest.mark.parametrize("body, field", [
    ({"room": "", "down_mbps": 1}, "room"), ({"room": "x" * 65}, "room"), ({"room": "A", "down_mbps": -1}, "down_mbps"),
    ({"room": "A", "down_mbps": "fast"}, "down_mbps"), ({"room": "A", "surprise": 1}, "surprise"),
])
def test_bad_client_results_are_refused_naming_the_field(body: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ClientResult.model_validate(body)


# --- the server on loopback ----------------------------------------------------------------------

class Recorder:
    def __init__(self, path: Path):
        self.spool = Spool(path)
        self.stored: list[ResultEnvelope] = []

    def __call__(self, env: ResultEnvelope) -> ResultEnvelope:
        stored = self.spool.enqueue(env)
        self.stored.append(stored)
        return stored


def serve(tmp_path: Path, view: StationView = WEAK, **cfg: object) -> tuple[LanServer, Recorder]:
    rec = Recorder(tmp_path / "spool.sqlite")
    settings = LanTestConfig(port=0, rooms={"Meeting room 2": 100}, **cfg)
    server = LanServer(settings, Identity("gw-1", "line-1", "site-1", 500.0), rec, "127.0.0.1",
                       lookup=lambda ip: view).start()
    return server, rec


def call(server: LanServer, method: str, path: str, body: object = None,
         headers: dict[str, str] | None = None) -> tuple[int, bytes, http.client.HTTPResponse]:
    host, port = server.http.address
    conn = http.client.HTTPConnection(host, port, timeout=10)
    data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
    conn.request(method, path, body=data, headers=headers or {})
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    return resp.status, raw, resp


def test_server_page_station_api_and_recording(tmp_path: Path) -> None:
    server, rec = serve(tmp_path)
    try:
        status, page, resp = call(server, "GET", "/")
        assert status == 200 and b"lantest.js" in page and resp.headers["Content-Type"].startswith("text/html")
        assert call(server, "GET", "/lantest.js")[0] == 200
        status, raw, _ = call(server, "GET", "/api/station")
        info = json.loads(raw)
        assert info["station"]["signal_dbm"] == -78 and info["rooms"] == {"Meeting room 2": 100}
        # the carrier test server's endpoints are the ones served (LibreSpeed and the engine's)
        status, garbage, _ = call(server, "GET", "/garbage.php?ckSize=1")
        assert status == 200 and len(garbage) == 1024 * 1024
        assert json.loads(call(server, "GET", "/getIP.php")[1])["processedString"] == "127.0.0.1"
        status, raw, _ = call(server, "POST", "/api/result", {"room": "Meeting room 2", "down_mbps": 41.5,
                                                               "up_mbps": 38.0, "client": "test"})
        answer = json.loads(raw)
        assert status == 200 and answer["status"] == "degraded" and answer["seq"] == 1
        assert [f["code"] for f in answer["findings"]] == ["wifi_weak"]
        (stored,) = rec.stored
        assert [(c.kind, c.target) for c in stored.checks if c.kind == "wifi_throughput"] == [
            ("wifi_throughput", "Meeting room 2")]
        assert [p.result_id for p in rec.spool.due(10, 60)] == [answer["result_id"]]  # durably queued
    finally:
        server.stop()


def test_server_refuses_bad_results_and_floods(tmp_path: Path) -> None:
    server, rec = serve(tmp_path, max_results_per_hour=2)
    try:
        status, raw, _ = call(server, "POST", "/api/result", {"room": "A", "down_mbps": "fast"})
        assert status == 400 and "down_mbps" in json.loads(raw)["detail"]
        assert call(server, "POST", "/api/result", b"not json", {"Content-Type": "application/json"})[0] == 400
        assert call(server, "POST", "/api/result", b"")[0] == 400
        for _ in range(2):
            assert call(server, "POST", "/api/result", {"room": "A", "down_mbps": 500, "up_mbps": 500})[0] == 200
        status, raw, _ = call(server, "POST", "/api/result", {"room": "A", "down_mbps": 500, "up_mbps": 500})
        assert status == 429 and "per hour" in json.loads(raw)["detail"]
        assert len(rec.stored) == 2
    finally:
        server.stop()


def test_token_is_required_when_set(tmp_path: Path) -> None:
    server, rec = serve(tmp_path, token="s3cret")
    try:
        assert call(server, "GET", "/api/station")[0] == 401
        assert call(server, "POST", "/api/result", {"room": "A", "down_mbps": 1})[0] == 401
        assert call(server, "GET", "/download?bytes=1000")[0] == 401
        assert call(server, "GET", "/api/station?token=s3cret")[0] == 200
        assert call(server, "POST", "/api/result", {"room": "A", "down_mbps": 500, "up_mbps": 500},
                    {"Authorization": "Bearer s3cret"})[0] == 200
        assert len(rec.stored) == 1
    finally:
        server.stop()


def test_lan_test_config_errors_name_the_key(tmp_path: Path) -> None:
    from agent import config as agent_config

    bad = tmp_path / "a.yaml"
    bad.write_text("agent_id: a\nline_id: l\nsite_id: s\nlan_test:\n  rooms: {'Meeting room 2': 0}\n")
    with pytest.raises(ConfigError, match=r"lan_test.rooms: room 'Meeting room 2': target must be above 0"):
        agent_config.load(bad)
    bad.write_text("agent_id: a\nline_id: l\nsite_id: s\nlan_test:\n  prot: 1\n")
    with pytest.raises(ConfigError, match="lan_test.prot: unknown key"):
        agent_config.load(bad)


@pytest.mark.broker
def test_daemon_serves_the_room_test_and_spools_results(tmp_path: Path, broker) -> None:  # noqa: ANN001
    import re

    from tests.helpers import start, stop, wait_for

    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"agent_id: lan-gw\nline_id: lan-line\nsite_id: lan-site\ndata_dir: {tmp_path}/data\n"
                   f"mqtt: {{host: 127.0.0.1, port: {broker.port}}}\n"
                   "schedule: {interval_s: 3600, jitter_s: 0, first_delay_s: 3600}\n"
                   "checks: {link: {window_s: 0.1}}\n"
                   "lan_test: {enabled: true, host: 127.0.0.1, port: 0, target_mbps: 100}\n")
    log = tmp_path / "agent.log"
    proc = start("agent.cli", "run", "--config", str(cfg), log=log)
    try:
        url = wait_for(lambda: re.search(r"LAN speed test served on http://127.0.0.1:(\d+)/", log.read_text()),
                       20, "the daemon's LAN server")
        conn = http.client.HTTPConnection("127.0.0.1", int(url.group(1)), timeout=10)
        conn.request("POST", "/api/result", body=json.dumps({"room": "Office", "down_mbps": 250.0, "up_mbps": 240.0}))
        answer = json.loads(conn.getresponse().read())
        assert answer["status"] == "ok" and answer["seq"] >= 1
    finally:
        stop(proc)
    spool = Spool(tmp_path / "data" / "spool.sqlite")
    try:
        stored = [ResultEnvelope.from_json(p.payload) for p in spool.due(100, 0)]
    finally:
        spool.close()
    assert [e.result_id for e in stored if any(c.kind == "wifi_throughput" for c in e.checks)] == [answer["result_id"]]
