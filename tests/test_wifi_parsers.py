"""The iw and /proc/net/wireless parsers, on captured outputs from four drivers (tests/data/iw/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.wifi.iw import (
    in_use_survey,
    parse_bitrate,
    parse_dev,
    parse_info,
    parse_link,
    parse_station_dump,
    parse_survey_dump,
    unescape_ssid,
)
from agent.wifi.model import band_of, channel_of
from agent.wifi.proc import parse_proc_net_wireless
from agent.wifi.scan import parse_scan

IW = Path(__file__).parent / "data" / "iw"


def read(driver: str, name: str) -> str:
    return (IW / driver / name).read_text()


# --- iw dev / info --------------------------------------------------------------------------------

def test_iw_dev_ath9k_single_ap() -> None:
    (wlan0,) = parse_dev(read("ath9k", "dev.txt"))
    assert (wlan0.name, wlan0.phy, wlan0.type, wlan0.ssid) == ("wlan0", 0, "AP", "Office-2.4G")
    assert (wlan0.channel, wlan0.freq_mhz, wlan0.width_mhz, wlan0.center1_mhz) == (6, 2437, 20, 2437)
    assert wlan0.txpower_dbm == 20.0 and wlan0.addr == "14:cc:20:5a:3c:71" and wlan0.is_ap


def test_iw_dev_ath10k_two_phys_and_utf8_ssid() -> None:
    wlan1, wlan0 = parse_dev(read("ath10k", "dev.txt"))
    assert wlan1.ssid == "会议室-5G"  # iw printed \xe4\xbc\x9a...
    assert (wlan1.phy, wlan1.channel, wlan1.width_mhz, wlan1.center1_mhz) == (1, 36, 80, 5210)
    assert (wlan0.phy, wlan0.channel, wlan0.freq_mhz) == (0, 11, 2462)
    assert wlan1.ifindex == 12  # the multicast TXQ table is not mistaken for fields


def test_iw_dev_skips_the_p2p_device_without_netdev() -> None:
    (iface,) = parse_dev(read("iwlwifi", "dev.txt"))
    assert (iface.name, iface.type, iface.is_ap, iface.channel) == ("wlp3s0", "managed", False, 44)


def test_iw_dev_info() -> None:
    info = parse_info(read("ath9k", "dev_wlan0_info.txt"))
    assert info is not None and (info.name, info.phy, info.type, info.freq_mhz) == ("wlan0", 0, "AP", 2437)


@pytest.mark.parametrize("line, width", [
    ("\tchannel 36 (5180 MHz), width: 80+80 MHz, center1: 5210 MHz, center2: 5530 MHz", 160),
    ("\tchannel 6 (2437 MHz) HT40+", 40), ("\tchannel 1 (2412 MHz) NO HT", 20),
    ("\tchannel 37 (6135 MHz), width: 320 MHz, center1: 6265 MHz", 320),
])
def test_channel_line_variants(line: str, width: int) -> None:
    info = parse_info(f"Interface x\n{line}\n")
    assert info is not None and info.width_mhz == width


# --- bitrates -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("39.0 MBit/s MCS 4", (39.0, "HT", 4, 1, 20, False)),
    ("144.4 MBit/s MCS 15 short GI", (144.4, "HT", 15, 2, 20, True)),
    ("300.0 MBit/s MCS 15 40MHz short GI", (300.0, "HT", 15, 2, 40, True)),
    ("866.7 MBit/s VHT-MCS 9 80MHz short GI VHT-NSS 2", (866.7, "VHT", 9, 2, 80, True)),
    ("1201.0 MBit/s 80MHz HE-MCS 11 HE-NSS 2 HE-GI 0 HE-DCM 0", (1201.0, "HE", 11, 2, 80, False)),
    ("86.0 MBit/s HE-MCS 7 HE-NSS 1 HE-GI 0 HE-DCM 0", (86.0, "HE", 7, 1, 20, False)),
    ("2882.4 MBit/s 160MHz EHT-MCS 13 EHT-NSS 2 EHT-GI 0", (2882.4, "EHT", 13, 2, 160, False)),
    ("1733.3 MBit/s VHT-MCS 9 80P80MHz short GI VHT-NSS 2", (1733.3, "VHT", 9, 2, 160, True)),
    ("54.0 MBit/s", (54.0, "legacy", None, None, None, False)),
])
def test_bitrate_formats(text: str, expected: tuple) -> None:
    b = parse_bitrate(text)
    assert b is not None and (b.mbps, b.phy, b.mcs, b.nss, b.width_mhz, b.short_gi) == expected


def test_empty_bitrate_is_unknown_not_zero() -> None:
    assert parse_bitrate("") is None


# --- station dump ---------------------------------------------------------------------------------

def test_station_dump_ath9k_old_field_order() -> None:
    weak, phone, printer = parse_station_dump(read("ath9k", "dev_wlan0_station_dump.txt"))
    assert (weak.mac, weak.iface, weak.signal_dbm, weak.signal_chains_dbm, weak.signal_avg_dbm) == (
        "3c:22:fb:8e:41:07", "wlan0", -78, [-80, -81], -77)
    assert weak.tx_bitrate and (weak.tx_bitrate.mbps, weak.tx_bitrate.mcs) == (39.0, 4)
    assert (weak.tx_packets, weak.tx_retries, weak.tx_failed, weak.inactive_ms) == (288431, 61204, 1893, 340)
    assert weak.expected_throughput_mbps == 21.972 and weak.connected_s == 5421 and weak.authorized is True
    assert phone.tx_bitrate and phone.tx_bitrate.nss == 2
    assert printer.inactive_ms == 84210 and printer.tx_bitrate and printer.tx_bitrate.phy == "legacy"


def test_station_dump_ath10k_lacks_retries_and_expected_throughput() -> None:
    laptop, phone = parse_station_dump(read("ath10k", "dev_wlan1_station_dump.txt"))
    assert laptop.signal_chains_dbm == [-52, -55, -51, -58]
    assert laptop.tx_retries is None and laptop.expected_throughput_mbps is None  # unknown, not 0
    assert laptop.tx_bitrate and laptop.tx_bitrate.phy == "VHT" and laptop.tx_bitrate.mbps == 866.7
    assert phone.rx_bitrate and phone.rx_bitrate.nss == 1
    assert parse_station_dump(read("ath10k", "dev_wlan0_station_dump.txt")) == []


def test_station_dump_mt76_iw6_flags_first() -> None:
    (laptop,) = parse_station_dump(read("mt76", "dev_phy1-ap0_station_dump.txt"))
    assert laptop.authorized is True and laptop.associated is True
    assert (laptop.signal_dbm, laptop.inactive_ms, laptop.connected_s) == (-44, 8, 2291)
    assert laptop.tx_bitrate and (laptop.tx_bitrate.phy, laptop.tx_bitrate.mcs, laptop.tx_bitrate.nss) == ("HE", 11, 2)
    slow, noisy = parse_station_dump(read("mt76", "dev_phy0-ap0_station_dump.txt"))
    assert slow.tx_bitrate and slow.tx_bitrate.mbps == 86.0
    assert (noisy.tx_retries, noisy.tx_packets) == (360886, 880210)


def test_station_dump_iwlwifi_client_sees_its_ap() -> None:
    (ap,) = parse_station_dump(read("iwlwifi", "dev_wlp3s0_station_dump.txt"))
    assert (ap.mac, ap.signal_dbm, ap.beacon_signal_avg_dbm, ap.beacon_loss) == ("60:38:e0:c4:52:1f", -71, -69, 3)


def test_station_dump_mlo_link_sections_do_not_override_totals() -> None:
    text = ("Station 02:00:00:00:00:01 (on wlan0)\n\tinactive time:\t10 ms\n\tsignal:  \t-50 dBm\n"
            "\ttx bitrate:\t2000.0 MBit/s 160MHz EHT-MCS 11 EHT-NSS 2 EHT-GI 0\n\tcurrent time:\t1 ms\n"
            "\tLink 0:\n\t\taddress: 02:00:00:00:00:02\n\t\tsignal:  \t-60 dBm\n"
            "\t\ttx bitrate:\t600.0 MBit/s 80MHz EHT-MCS 7 EHT-NSS 1 EHT-GI 0\n")
    (st,) = parse_station_dump(text)
    assert st.signal_dbm == -50 and st.tx_bitrate and st.tx_bitrate.mbps == 2000.0


# --- link, survey, scan, proc ---------------------------------------------------------------------

def test_link_connected_and_not() -> None:
    link = parse_link(read("iwlwifi", "dev_wlp3s0_link.txt"))
    assert (link.connected, link.bssid, link.ssid, link.freq_mhz, link.signal_dbm) == (
        True, "60:38:e0:c4:52:1f", "Office-5G", 5220, -71)
    assert link.tx_bitrate and link.tx_bitrate.mbps == 288.2
    assert (link.rx_bytes, link.rx_packets) == (1831022193, 1420213)
    assert parse_link("Not connected.\n").connected is False


def test_survey_ath9k_in_use_channel() -> None:
    surveys = parse_survey_dump(read("ath9k", "dev_wlan0_survey_dump.txt"))
    assert len(surveys) == 13
    used = in_use_survey(surveys)
    assert used and (used.freq_mhz, used.noise_dbm, used.active_ms, used.busy_ms, used.tx_ms) == (
        2437, -95, 2847261, 1936138, 140233)
    assert used.busy_pct is not None and round(used.busy_pct) == 68


def test_survey_ath10k_partial_records_and_no_in_use_marker() -> None:
    surveys = parse_survey_dump(read("ath10k", "dev_wlan1_survey_dump.txt"))
    unscanned = [s for s in surveys if s.freq_mhz == 5260][0]
    assert unscanned.noise_dbm is None and unscanned.active_ms is None and unscanned.busy_pct is None
    used = in_use_survey(surveys)
    assert used and used.rx_ms is None  # ath10k gives active/busy only
    wlan0 = parse_survey_dump(read("ath10k", "dev_wlan0_survey_dump.txt"))
    assert in_use_survey(wlan0) is None  # nothing marked [in use] ...
    fallback = in_use_survey(wlan0, 2462)
    assert fallback and fallback.busy_ms == 498211  # ... so the operating frequency is used


def test_scan_ath9k_cached_results() -> None:
    bsses = parse_scan(read("ath9k", "dev_wlan0_scan_dump.txt"))
    assert [b.ssid for b in bsses] == ["TP-LINK_5A3C", "ChinaNet-xK2p", "CMCC-8f2A", "财务部", "HUAWEI-B311",
                                       "Xiaomi_8A20"]
    first = bsses[0]
    assert (first.bssid, first.freq_mhz, first.signal_dbm, first.primary_channel, first.last_seen_ms) == (
        "7c:8b:ca:5a:3c:02", 2437, -58.0, 6, 4120)
    assert bsses[-1].primary_channel == 11  # no HT operation element: DS Parameter set


def test_scan_iwlwifi_marks_the_associated_bss() -> None:
    bsses = parse_scan(read("iwlwifi", "dev_wlp3s0_scan_dump.txt"))
    assert [b.associated for b in bsses] == [True, False, False, False]
    assert bsses[0].last_seen_ms == 36 and bsses[3].primary_channel == 149


def test_proc_net_wireless() -> None:
    (p,) = parse_proc_net_wireless(read("iwlwifi", "proc_net_wireless.txt"))
    assert (p.iface, p.link_quality, p.level_dbm, p.noise_dbm, p.missed_beacon) == ("wlp3s0", 39.0, -71.0, None, 0)
    assert parse_proc_net_wireless("Inter-| sta-|\n face | tus |\n") == []


def test_ssid_escapes() -> None:
    assert unescape_ssid("\\xe8\\xb4\\xa2\\xe5\\x8a\\xa1\\xe9\\x83\\xa8") == "财务部"
    assert unescape_ssid("\\x20lead") == " lead" and unescape_ssid("plain") == "plain"


@pytest.mark.parametrize("freq, channel, band", [
    (2412, 1, 2.4), (2484, 14, 2.4), (5180, 36, 5.0), (5825, 165, 5.0), (5955, 1, 6.0), (5935, 2, 6.0),
    (7115, 233, 6.0), (58320, 1, 60.0),
])
def test_channel_and_band(freq: int, channel: int, band: float) -> None:
    assert channel_of(freq) == channel and band_of(freq) == band


# --- robustness: output cut short or garbled gives fewer fields, never an exception --------------
# (random text is fuzzed for every agent parser in tests/test_fuzz_parsers.py)

PARSERS = [parse_dev, parse_info, parse_link, parse_station_dump, parse_survey_dump, parse_scan,
           parse_proc_net_wireless]
CAPTURES = sorted(p for p in IW.rglob("*.txt"))


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_truncated_captures_never_raise(capture: Path) -> None:
    text = capture.read_text()
    for cut in range(0, len(text), max(1, len(text) // 40)):  # output cut anywhere (a killed iw)
        for parse in PARSERS:
            parse(text[:cut])


@pytest.mark.parametrize("line", ["\tDS Parameter set: channel ?", "\t\t * primary channel: x", "\tfreq: ?",
                                  "\tsignal: dBm", "\tlast seen: ms ago"])
def test_scan_lines_with_garbage_values(line: str) -> None:
    (bss,) = parse_scan(f"BSS 02:00:00:00:00:01(on wlan0)\n{line}\n")
    assert bss.bssid == "02:00:00:00:00:01"
