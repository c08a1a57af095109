"""The wifi check: documented metrics and findings from captured iw outputs, the real-subprocess
path through a stand-in `iw`, and a clean `skipped` on this machine (which has no WiFi)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.checks.base import CheckContext, LineInfo, Measurement
from agent.checks.wifi import WifiConfig, run
from agent.reasons import english
from agent.wifi.source import CapturedIw, IwCommand, sysfs_wireless_interfaces
from linecheck.catalogue import unlisted
from linecheck.wire import Status
from tests.fake_iw import fake_iw

IW = Path(__file__).parent / "data" / "iw"
ROOM = {"3c:22:fb:8e:41:07": "Meeting room 2"}


def ctx(state: dict | None = None) -> CheckContext:
    return CheckContext(LineInfo(None, [], 500, 300, None), state if state is not None else {}, time.monotonic() + 30)


def check(driver: str | Path, state: dict | None = None, **cfg: object) -> list[Measurement]:
    return run(WifiConfig(capture_dir=str(IW / driver if isinstance(driver, str) else driver), **cfg), ctx(state))


def by_target(results: list[Measurement]) -> dict[str, Measurement]:
    return {m.target or "": m for m in results}


@pytest.mark.parametrize("driver", ["ath9k", "ath10k", "mt76", "iwlwifi"])
def test_every_metric_is_catalogued(driver: str) -> None:
    results = check(driver)
    assert results and all(not unlisted("wifi", set(m.metrics)) for m in results)


def test_ath9k_weak_station_busy_channel_and_neighbours() -> None:
    r = by_target(check("ath9k", labels=ROOM))
    iface = r["wlan0 (Office-2.4G)"]
    assert iface.status is Status.DEGRADED
    assert iface.metrics["channel_busy_pct"] == 68.0 and iface.metrics["cochannel_networks_count"] == 3
    assert iface.metrics["cochannel_strongest_dbm"] == -58.0 and iface.metrics["neighbour_networks_count"] == 6
    assert iface.metrics["active_station_count"] == 2 and iface.metrics["station_count"] == 3
    assert iface.metrics["weakest_signal_dbm"] == -78  # the idle printer (-61) is not the weakest active
    assert {f.code for f in iface.findings} == {"wifi_channel_busy", "wifi_interference"}
    weak = r["wlan0 3c:22:fb:8e:41:07 (Meeting room 2)"]
    assert weak.status is Status.DEGRADED and weak.metrics["tx_bitrate_mbps"] == 39.0
    (finding,) = weak.findings
    assert finding.code == "wifi_weak" and finding.where == "wifi" and finding.detail["room"] == "Meeting room 2"
    assert "Meeting room 2" in finding.message and "-78 dBm" in finding.message
    printer = r["wlan0 00:e0:4c:68:01:9a"]
    assert printer.status is Status.OK and printer.metrics["tx_bitrate_mbps"] == 1.0  # idle: reported, not judged


def test_ath10k_healthy_5ghz_and_unknowns_stay_null() -> None:
    r = by_target(check("ath10k"))
    five = r["wlan1 (会议室-5G)"]
    assert five.status is Status.OK and five.findings == []
    assert (five.metrics["band_ghz"], five.metrics["width_mhz"], five.metrics["channel_num"]) == (5.0, 80, 36)
    assert five.metrics["channel_rx_pct"] is None  # ath10k has no receive time: null, not 0
    laptop = r["wlan1 a4:83:e7:12:9c:3e"]
    assert laptop.metrics["tx_retry_pct"] is None and laptop.metrics["expected_throughput_mbps"] is None
    assert r["wlan0 (Office-2.4G)"].metrics["channel_busy_pct"] == 25.9  # no [in use] mark: found by frequency


def test_mt76_low_rate_and_retries() -> None:
    r = by_target(check("mt76"))
    slow = r["phy0-ap0 d4:3b:04:77:a2:10"]
    assert [f.code for f in slow.findings] == ["wifi_low_rate"] and slow.status is Status.DEGRADED
    noisy = r["phy0-ap0 2e:5b:19:c4:06:8f"]
    assert [f.code for f in noisy.findings] == ["wifi_interference"] and noisy.metrics["tx_retry_pct"] == 41.0
    fast = r["phy1-ap0 6a:1f:c2:90:4e:d3"]
    assert fast.status is Status.OK and fast.metrics["tx_bitrate_mbps"] == 1201.0


def test_iwlwifi_client_uplink_no_survey_scan_fallback() -> None:
    r = by_target(check("iwlwifi"))
    iface = r["wlp3s0 (Office-5G)"]
    assert iface.metrics["ap_mode_flag"] == 0 and iface.metrics["channel_busy_pct"] is None  # -95: no survey
    # the triggered scan was refused (-1); the cached scan was used; our own AP is not a neighbour
    assert iface.metrics["neighbour_networks_count"] == 3 and iface.metrics["cochannel_networks_count"] == 1
    uplink = r["wlp3s0 60:38:e0:c4:52:1f"]
    assert uplink.status is Status.DEGRADED and [f.code for f in uplink.findings] == ["wifi_weak"]
    assert "uplink" in uplink.findings[0].message


def test_thresholds_are_configurable() -> None:
    r = by_target(check("ath9k", signal_degraded_dbm=-80, rate_degraded_mbps=30, busy_degraded_pct=70,
                         cochannel_degraded_count=4))
    assert r["wlan0 (Office-2.4G)"].status is Status.OK
    assert r["wlan0 3c:22:fb:8e:41:07"].status is Status.OK
    failed = by_target(check("ath9k", signal_failed_dbm=-75))["wlan0 3c:22:fb:8e:41:07"]
    assert failed.status is Status.FAILED and failed.findings[0].severity == "critical"


def test_counters_are_judged_over_the_interval_since_the_last_check(tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(IW / "ath9k", site)
    state: dict = {}
    first = by_target(check(site, state))["wlan0 (Office-2.4G)"]
    assert first.metrics["channel_busy_pct"] == 68.0
    # 60 s later: the channel was busy 15 s of 60 s, the weak laptop got 10000 frames, 500 retried
    survey = site / "dev_wlan0_survey_dump.txt"
    survey.write_text(survey.read_text().replace("2847261 ms", "2907261 ms").replace("1936138 ms", "1951138 ms"))
    dump = site / "dev_wlan0_station_dump.txt"
    dump.write_text(dump.read_text().replace("tx packets:\t288431", "tx packets:\t298431")
                    .replace("tx retries:\t61204", "tx retries:\t61704"))
    second = by_target(check(site, state))
    assert second["wlan0 (Office-2.4G)"].metrics["channel_busy_pct"] == 25.0
    assert second["wlan0 3c:22:fb:8e:41:07"].metrics["tx_retry_pct"] == 5.0
    assert set(state["stations"]) == {"3c:22:fb:8e:41:07", "f0:18:98:2c:5a:11", "00:e0:4c:68:01:9a"}


def test_max_stations_keeps_the_weakest() -> None:
    results = check("ath9k", max_stations=1)
    stations = [m for m in results if m.target and m.target.count(":") == 5]
    assert [m.target for m in stations] == ["wlan0 3c:22:fb:8e:41:07"]


def test_no_wireless_interface_is_skipped_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "dev.txt").write_text("")
    (m,) = check(tmp_path)
    assert m.status is Status.SKIPPED and "no wireless interface" in english(m.reason)


def test_this_machine_has_no_wifi_and_says_so() -> None:
    if sysfs_wireless_interfaces():
        pytest.skip("this machine has a wireless interface")
    (m,) = run(WifiConfig(iw_path="iw-not-installed"), ctx())
    assert m.status is Status.SKIPPED and "no wireless interface on this machine" in english(m.reason)


def test_wireless_without_iw_is_an_error_naming_the_package(tmp_path: Path) -> None:
    fake_sys = tmp_path / "sys"
    (fake_sys / "wlan0" / "phy80211").mkdir(parents=True)
    (fake_sys / "eth0").mkdir()
    assert sysfs_wireless_interfaces(fake_sys) == ["wlan0"]

    class NoIw(CapturedIw):
        def available(self) -> bool:
            return False

        def sysfs_wireless(self) -> list[str]:
            return sysfs_wireless_interfaces(fake_sys)

        def proc_net_wireless(self) -> str | None:
            return (IW / "iwlwifi" / "proc_net_wireless.txt").read_text().replace("wlp3s0", "wlan0")

    import agent.checks.wifi as wifi_check

    original = wifi_check.source_for
    wifi_check.source_for = lambda cfg: NoIw(tmp_path)
    try:
        (m,) = run(WifiConfig(), ctx())
    finally:
        wifi_check.source_for = original
    assert m.status is Status.ERROR and "'iw' package" in english(m.reason) and m.metrics["signal_dbm"] == -71.0


# --- the real subprocess path, through a stand-in iw that replays a capture (tests/fake_iw.py) -----

def test_iw_command_reports_iw_errors_in_its_own_words(tmp_path: Path) -> None:
    iw = IwCommand(str(fake_iw(tmp_path, "iwlwifi")))
    assert iw.available()
    ok = iw.run("dev", "wlp3s0", "link")
    assert ok.ok and ok.stdout.startswith("Connected to")
    bad = iw.run("dev", "wlp3s0", "survey", "dump")
    assert not bad.ok and bad.error == "command failed: Operation not supported (-95)"
    assert not IwCommand("/nonexistent/iw").available()


def test_cli_check_runs_the_real_iw_path(tmp_path: Path) -> None:
    iw = fake_iw(tmp_path, "ath9k")
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"agent_id: gw\nline_id: l\nsite_id: s\ndata_dir: {tmp_path}/data\n"
                   f"checks:\n  wifi:\n    iw_path: {iw}\n    labels: {{'3C:22:FB:8E:41:07': Meeting room 2}}\n")
    (tmp_path / "data").mkdir()
    proc = subprocess.run([sys.executable, "-m", "agent.cli", "check", "--config", str(cfg), "--json", "--no-spool"],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert proc.returncode == 1, proc.stderr
    env = json.loads(proc.stdout)
    codes = {(f["code"], f["detail"].get("room")) for f in env["findings"]}
    assert ("wifi_weak", "Meeting room 2") in codes and ("wifi_channel_busy", None) in codes


def test_cli_check_on_this_machine_says_no_wifi_cleanly(tmp_path: Path) -> None:
    if sysfs_wireless_interfaces():
        pytest.skip("this machine has a wireless interface")
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"agent_id: gw\nline_id: l\nsite_id: s\ndata_dir: {tmp_path}\nchecks:\n  wifi: {{}}\n")
    proc = subprocess.run([sys.executable, "-m", "agent.cli", "check", "--config", str(cfg), "--no-spool"],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ, COLUMNS="200"))
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "skipped" in proc.stdout and "no wireless interface on this machine" in proc.stdout
    assert "Could not tell" in proc.stdout and proc.returncode == 3  # nothing measured: not fully checked


def test_a_client_uplink_that_lost_its_access_point_is_not_connected(tmp_path: Path) -> None:
    """The iwlwifi capture with its link gone (`iw dev wlp3s0 link` says `Not connected.`, no station):
    the gateway's WiFi uplink is down, critical, at the wifi."""
    captured = tmp_path / "iwlwifi-down"
    shutil.copytree(IW / "iwlwifi", captured)
    (captured / "dev_wlp3s0_link.txt").write_text("Not connected.\n")
    (captured / "dev_wlp3s0_station_dump.txt").write_text("")
    [m] = check(captured)
    [f] = m.findings
    assert m.status is Status.FAILED and (f.code, f.severity, f.where) == ("wifi_not_connected", "critical", "wifi")
    assert f.detail == {"interface": "wlp3s0"} and "wlp3s0" in english(m.reason)
