"""The line emulator (tests/lineemu.c, driven by tests/lineemu.py): each impairment it claims,
measured through it from the gateway namespace — delay and jitter by ping, loss, bursts and
reordering by numbered UDP datagrams, the rate cap by iperf3, the buffer by the RTT under load —
TCP data intact through its cut and merged frames, its config validation, and hostile frames."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import socket
import statistics
import struct
import subprocess
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from tests.helpers import wait_for
from tests.lab import SERVER_ADDR, LineLab
from tests.lineemu import Impairment, LineConfigError, configure_line, impairment

lab_test = pytest.mark.lab
SO_RCVBUFFORCE = 33
END = 0xFFFFFFFF  # the closing datagram's number


# --- configuration (no root needed) ---------------------------------------------------------------
BAD = [
    ({"rate_mbit": -5}, "rate_mbit must be a number > 0 and <= 100000, got -5"),
    ({"rate_mbit": float("inf")}, "rate_mbit must be a number > 0 and <= 100000, got inf"),
    ({"loss": 1.5}, "loss must be a number >= 0 and <= 1, got 1.5"),
    ({"loss": float("nan")}, "loss must be a number >= 0 and <= 1, got nan"),
    ({"loss": True}, "loss must be a number >= 0 and <= 1, got True"),
    ({"delay_ms": "10"}, "delay_ms must be a number >= 0 and <= 60000, got '10'"),
    ({"delay_ms": 1e9}, "delay_ms must be a number >= 0 and <= 60000, got 1000000000.0"),
    ({"jitter_reorders": 1}, "jitter_reorders must be true or false, got 1"),
    ({"buffer_ms": 50}, "a buffer needs rate_mbit (it is the queue in front of the rate cap)"),
    ({"rate_mbit": 10, "buffer_ms": 5, "buffer_bytes": 1000}, "give buffer_ms or buffer_bytes, not both"),
    ({"rate_mbit": 10, "buffer_bytes": 1500.5}, "buffer_bytes must be a whole number, got 1500.5"),
    ({"rate_mbit": 10, "buffer_ms": 0}, "buffer_ms must be a number > 0 and <= 60000, got 0"),
    ({"burst_loss": {"rate": 0.05}}, "burst_loss has missing ['mean_burst'] keys; expected ['mean_burst', 'rate']"),
    ({"burst_loss": 0.05}, "burst_loss must be a mapping with keys ['mean_burst', 'rate'], got 0.05"),
    ({"burst_loss": {"rate": 0.9, "mean_burst": 1}},
     "burst_loss.rate 0.9 cannot come in bursts of 1 (lower the rate or lengthen the bursts)"),
    ({"burst_loss": {"rate": 0.05, "mean_burst": 0.5}},
     "burst_loss.mean_burst must be a number >= 1 and <= 1000000, got 0.5"),
    ({"gilbert": {"p": 0.1, "r": 0}}, "gilbert.r must be a number > 0 and <= 1, got 0"),
    ({"gilbert": {"p": 0.1, "r": 0.5, "h": 1}},
     "gilbert has unknown ['h'] keys; expected ['loss_bad', 'loss_good', 'p', 'r']"),
    ({"gilbert": {"p": 0.1, "r": 0.5}, "burst_loss": {"rate": 0.1, "mean_burst": 2}},
     "give burst_loss or gilbert, not both"),
    ({"reorder_ms": 5}, "reorder_ms needs reorder (the share of frames held back)"),
    ({"reorder": 0.1, "reorder_ms": 0}, "reorder_ms must be a number > 0 and <= 60000, got 0"),
    ({"seed": -1}, "seed must be a whole number 0..2^64-1, got -1"),
    ({"seed": 1.5}, "seed must be a whole number 0..2^64-1, got 1.5"),
    ({"delai_ms": 5}, "unknown key 'delai_ms'; expected some of rate_mbit, buffer_ms, buffer_bytes, delay_ms, "
                      "jitter_ms, jitter_reorders, loss, burst_loss, gilbert, reorder, reorder_ms, seed"),
    ([1, 2], "expected a mapping of impairments, got [1, 2]"),
]


@pytest.mark.parametrize(("spec", "message"), BAD)
def test_a_bad_config_names_the_key_and_what_is_expected(spec: Any, message: str) -> None:
    with pytest.raises(LineConfigError) as exc:
        impairment(spec, "line(down=...)", 2)
    assert str(exc.value) == f"line(down=...): {message}"


def _args(imp: Impairment) -> dict[str, float]:
    return {k: float(v) for k, v in (kv.split("=") for kv in imp.helper_args().split())}


def test_units_reach_the_helper_as_bits_and_nanoseconds() -> None:
    imp = impairment({"rate_mbit": 20, "buffer_bytes": 250_000, "delay_ms": 5, "jitter_ms": 0.5,
                      "reorder": 0.01}, "line(up=...)", 7)
    args = _args(imp)
    assert args["rate_bps"] == 20e6
    assert args["buffer_ns"] == pytest.approx(100e6)  # 250 kB drain in 100 ms at 20 Mbit/s
    assert (args["delay_ns"], args["jitter_ns"], args["reorder_ns"]) == (5e6, 5e5, 1e6)  # reorder_ms: 1 by default
    assert (args["reorder"], args["seed"], args["loss"]) == (0.01, 7, 0)
    assert _args(impairment({"rate_mbit": 100}, "x", 1))["buffer_ns"] == 50e6  # a cap gets a 50 ms queue
    assert set(_args(impairment(None, "x", 1)).values()) <= {0.0, 1.0}  # nothing impaired (ge_loss_bad 1 is idle)


def test_burst_loss_is_gilbert_elliott_with_that_rate_and_burst_length() -> None:
    imp = impairment({"burst_loss": {"rate": 0.05, "mean_burst": 4}}, "x", 1)
    assert imp.ge_r == 0.25  # a burst ends with probability 1/4 per frame: 4 frames on average
    assert imp.ge_p / (imp.ge_p + imp.ge_r) == pytest.approx(0.05)  # time in the bad state = the loss rate
    assert (imp.ge_loss_good, imp.ge_loss_bad) == (0.0, 1.0)
    raw = impairment({"gilbert": {"p": 0.01, "r": 0.5, "loss_bad": 0.8, "loss_good": 0.001}}, "x", 1)
    assert (raw.ge_p, raw.ge_r, raw.ge_loss_bad, raw.ge_loss_good) == (0.01, 0.5, 0.8, 0.001)


def test_one_bad_direction_changes_neither() -> None:
    class Recorder:
        calls: list[str] = []

        def configure(self, direction: str, imp: Impairment) -> None:
            self.calls.append(direction)

    rec = Recorder()
    with pytest.raises(LineConfigError, match=r"line\(up=\.\.\.\): loss"):
        configure_line(rec, down={"delay_ms": 5}, up={"loss": 2})  # type: ignore[arg-type]
    assert rec.calls == []
    configure_line(rec, down={"delay_ms": 5}, up=None)  # type: ignore[arg-type]
    assert rec.calls == ["up", "down"]


# --- measuring through the emulator ---------------------------------------------------------------
def _need(tool: str) -> None:
    if not shutil.which(tool):
        pytest.skip(f"{tool} is not installed (scripts/setup.sh --test installs it)")


def ping_rtts(lab: LineLab, count: int, interval: float) -> list[float]:
    _need("ping")
    out = lab.run(lab.gw, ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", "2", SERVER_ADDR], timeout=60)
    return [float(t) for t in re.findall(r"time=([\d.]+) ms", out.stdout)]


def udp_sequence(lab: LineLab, n: int, up: Mapping[str, Any]) -> list[int]:
    """Sends datagrams 0..n-1 up through the line impaired by `up`; returns the numbers that
    arrived, in arrival order. Synchronised on the emulator's counters: every datagram passed it,
    then one closing datagram on a clean line marks the end."""
    emu = lab.emulator
    assert emu is not None
    lab.line()
    assert ping_rtts(lab, 1, 0.2), "no clean line"  # neighbours resolved before anything is lost
    with lab.inside(lab.carrier):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with lab.inside(lab.gw):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with rx, tx:
        rx.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
        rx.bind((SERVER_ADDR, 0))
        tx.connect(rx.getsockname())
        lab.line(up=up)
        before = emu.stats()["up"]["rx"]
        pad = bytes(60)
        for i in range(n):
            tx.send(struct.pack("!I", i) + pad)
        wait_for(lambda: (s := emu.stats()["up"])["rx"] - before >= n and s["held"] == 0, 30,
                 "every datagram through the emulator")
        lab.line()
        tx.send(struct.pack("!I", END))
        rx.settimeout(10)
        seqs = []
        while (seq := struct.unpack("!I", rx.recv(2048)[:4])[0]) != END:
            seqs.append(seq)
    assert emu.stats()["up"]["drop_kernel"] == 0  # every loss below is the model's, not a full socket
    return seqs


def late(seqs: list[int]) -> int:
    """Datagrams that arrived after one with a higher number (each overtaken datagram once)."""
    count, top = 0, -1
    for s in seqs:
        if s < top:
            count += 1
        top = max(top, s)
    return count


def bursts(seqs: list[int], n: int) -> list[int]:
    """Lengths of the runs of consecutive missing numbers."""
    got = set(seqs)
    runs, run = [], 0
    for i in range(n):
        if i in got:
            if run:
                runs.append(run)
            run = 0
        else:
            run += 1
    return runs + ([run] if run else [])


def binomial_bounds(n: int, p: float, sigmas: float = 4.0) -> tuple[float, float]:
    sd = math.sqrt(n * p * (1 - p))
    return n * p - sigmas * sd, n * p + sigmas * sd


@lab_test
def test_delay_sets_the_round_trip_time(line_lab: LineLab) -> None:
    clean = ping_rtts(line_lab, 10, 0.02)
    assert len(clean) == 10 and statistics.median(clean) < 1.5  # the emulator itself adds ~nothing
    line_lab.line(down=dict(delay_ms=15), up=dict(delay_ms=5))
    rtts = ping_rtts(line_lab, 20, 0.02)
    assert len(rtts) == 20
    assert min(rtts) >= 20.0  # never early
    assert statistics.median(rtts) < 21.5, rtts


@lab_test
def test_jitter_gives_the_configured_spread(line_lab: LineLab) -> None:
    assert ping_rtts(line_lab, 1, 0.2)  # the neighbours resolved on a clean line
    line_lab.line(down=dict(delay_ms=20, jitter_ms=3, jitter_reorders=True))
    rtts = ping_rtts(line_lab, 100, 0.01)
    assert len(rtts) == 100
    assert 18.8 <= statistics.mean(rtts) <= 21.5, rtts  # standard error of the mean: 0.3 ms
    assert 2.25 <= statistics.pstdev(rtts) <= 3.75, rtts  # of the sd: 7 % at 100 samples


@lab_test
def test_jitter_keeps_the_order_unless_told_to_reorder(line_lab: LineLab) -> None:
    ordered = udp_sequence(line_lab, 2000, up=dict(delay_ms=5, jitter_ms=1))
    assert ordered == list(range(2000))  # jitter from queues never reorders
    mixed = udp_sequence(line_lab, 2000, up=dict(delay_ms=5, jitter_ms=1, jitter_reorders=True))
    assert sorted(mixed) == list(range(2000))
    assert late(mixed) > 200  # 1 ms of spread against microseconds between datagrams


@lab_test
def test_random_loss_within_binomial_bounds_and_replayed_by_seed(line_lab: LineLab) -> None:
    # The gateway's own IPv6 chatter (router solicitations, MLD) would take random draws too.
    line_lab.sh(line_lab.gw, "sysctl -qw net.ipv6.conf.all.disable_ipv6=1")
    emu = line_lab.emulator
    assert emu is not None
    n, p = 5000, 0.02
    before = emu.stats()["up"]["drop_loss"]
    first = udp_sequence(line_lab, n, up=dict(loss=p, seed=11))
    lost = n - len(first)
    lo, hi = binomial_bounds(n, p)
    assert lo <= lost <= hi, lost
    assert emu.stats()["up"]["drop_loss"] - before == lost  # the receiver misses exactly what it dropped
    assert len(set(first)) == len(first) and late(first) == 0
    again = udp_sequence(line_lab, n, up=dict(loss=p, seed=11))
    other = udp_sequence(line_lab, n, up=dict(loss=p, seed=12))
    assert again == first  # the same seed loses the same datagrams
    assert other != first


@lab_test
def test_burst_loss_comes_in_bursts_of_the_configured_length(line_lab: LineLab) -> None:
    n = 8000
    random_runs = bursts(udp_sequence(line_lab, n, up=dict(loss=0.05)), n)
    assert statistics.mean(random_runs) < 1.3  # independent losses: 1/(1-0.05) on average
    runs = bursts(udp_sequence(line_lab, n, up=dict(burst_loss=dict(rate=0.05, mean_burst=4))), n)
    assert 0.025 <= sum(runs) / n <= 0.08, sum(runs)
    assert 2.8 <= statistics.mean(runs) <= 5.5, runs  # ~100 bursts: standard error ~0.35


@lab_test
def test_reordering_seen_in_a_udp_sequence(line_lab: LineLab) -> None:
    emu = line_lab.emulator
    assert emu is not None
    n, p = 4000, 0.03
    before = emu.stats()["up"]["reordered"]
    seqs = udp_sequence(line_lab, n, up=dict(reorder=p, reorder_ms=2))
    held_back = emu.stats()["up"]["reordered"] - before
    assert sorted(seqs) == list(range(n))  # reordered, none lost
    lo, hi = binomial_bounds(n, p)
    assert lo <= held_back <= hi, held_back
    # Each held-back datagram is overtaken, except at the very end of the stream.
    assert 0.8 * held_back <= late(seqs) <= held_back, (late(seqs), held_back)


@pytest.fixture
def iperf3_server(line_lab: LineLab) -> Iterator[int]:
    _need("iperf3")
    port = 5201
    line_lab.popen(line_lab.carrier, ["iperf3", "-s", "-B", SERVER_ADDR, "-p", str(port)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: f":{port}" in line_lab.run(line_lab.carrier, ["ss", "-ltn"]).stdout, 10, "iperf3 to listen")
    yield port


def iperf3_mbps(lab: LineLab, port: int, down: bool, seconds: int = 2) -> float:
    """Goodput of a cubic flow: it keeps the buffer full, so the link never idles even while the
    busy machine keeps iperf3 off the CPU (BBR, this machine's default, keeps almost no queue)."""
    argv = ["iperf3", "-c", SERVER_ADDR, "-p", str(port), "-t", str(seconds), "-O", "1", "-J", "-C", "cubic"]
    argv += ["-R"] if down else []
    out = lab.run(lab.gw, argv, timeout=30)
    return float(json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"]) / 1e6


TCP_GOODPUT = 1448 / 1514  # payload per Ethernet frame with TCP timestamps: what iperf3 counts


@lab_test
def test_rate_cap_measured_by_iperf3(line_lab: LineLab, iperf3_server: int) -> None:
    line_lab.line(down=dict(rate_mbit=80), up=dict(rate_mbit=30))
    down = iperf3_mbps(line_lab, iperf3_server, down=True)
    up = iperf3_mbps(line_lab, iperf3_server, down=False)
    assert down == pytest.approx(80 * TCP_GOODPUT, rel=0.03)
    assert up == pytest.approx(30 * TCP_GOODPUT, rel=0.03)


@lab_test
@pytest.mark.parametrize(("buffer", "queue_ms"), [({"buffer_ms": 100}, 100), ({"buffer_bytes": 125_000}, 50)])
def test_the_buffer_sets_the_queueing_delay_under_load(line_lab: LineLab, iperf3_server: int,
                                                        buffer: dict[str, int], queue_ms: float) -> None:
    emu = line_lab.emulator
    assert emu is not None
    assert ping_rtts(line_lab, 1, 0.2)  # the neighbours resolved on a clean line
    line_lab.line(down=dict(rate_mbit=20, delay_ms=5, **buffer), up=dict(delay_ms=5))
    idle = ping_rtts(line_lab, 5, 0.02)
    assert max(idle) < 15
    # Cubic, as most servers run: loss-based congestion control fills whatever buffer there is
    # (this machine defaults to BBR, which keeps the queue short and would hide the bloat).
    load = line_lab.popen(line_lab.gw, ["iperf3", "-c", SERVER_ADDR, "-p", str(iperf3_server), "-R", "-t", "10",
                                        "-C", "cubic"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: emu.stats()["down"]["drop_queue"] > 0, 10, "the download to fill the buffer")
        loaded = ping_rtts(line_lab, 20, 0.05)
    finally:
        load.kill()
        load.wait(5)
    assert len(loaded) >= 18  # ping's own replies may meet a full queue
    # Cubic fills the buffer to the brim, then backs off by 30 %: the queue stays deep.
    assert statistics.median(loaded) >= 10 + 0.5 * queue_ms, loaded
    assert max(loaded) <= 10 + queue_ms + 3, loaded  # never beyond what the buffer holds
    assert emu.stats()["down"]["max_backlog_ns"] <= queue_ms * 1e6


def _transfer(lab: LineLab, address: str, family: int, size: int) -> tuple[bytes, bytes, bytes, bytes]:
    """`size` random bytes each way over one TCP connection; the digests sent and received both ways."""
    up_data, down_data = os.urandom(size), os.urandom(size)
    with lab.inside(lab.carrier):
        server = socket.socket(family, socket.SOCK_STREAM)
    with lab.inside(lab.gw):
        client = socket.socket(family, socket.SOCK_STREAM)
    got: dict[str, bytes] = {}

    def recv_all(sock: socket.socket) -> bytes:
        digest = hashlib.sha256()
        while chunk := sock.recv(1 << 20):
            digest.update(chunk)
        return digest.digest()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(30)
            got["up"] = recv_all(conn)
            conn.sendall(down_data)

    with server, client:
        server.bind((address, 0))
        server.listen(1)
        thread = threading.Thread(target=serve)
        thread.start()
        client.settimeout(30)
        client.connect(server.getsockname()[:2])
        client.sendall(up_data)
        client.shutdown(socket.SHUT_WR)
        got["down"] = recv_all(client)
        thread.join(30)
    return (hashlib.sha256(up_data).digest(), got["up"], hashlib.sha256(down_data).digest(), got["down"])


@lab_test
def test_tcp_data_arrives_intact_through_cut_and_merged_frames(line_lab: LineLab) -> None:
    """Offloads stay on at the endpoints: the emulator cuts their 64 kB super-frames into frames
    and hands consecutive ones over merged. Bytes must survive both, over IPv4 and IPv6, with
    losses and reordering making TCP retransmit and reassemble."""
    emu = line_lab.emulator
    assert emu is not None
    _, server6 = line_lab.enable_ipv6()
    rough = dict(loss=0.002, reorder=0.01, reorder_ms=1)
    line_lab.line(down=rough, up=rough)
    for address, family in ((SERVER_ADDR, socket.AF_INET), (server6, socket.AF_INET6)):
        sent_up, got_up, sent_down, got_down = _transfer(line_lab, address, family, 16 << 20)
        assert got_up == sent_up and got_down == sent_down, address
    stats = emu.stats()
    for direction in ("up", "down"):
        s = stats[direction]
        assert s["superframes"] > 0 and s["merged"] > 0, s  # both paths were exercised
        assert s["drop_bad"] == 0 and s["drop_tx"] == 0, s


def _frames() -> list[bytes]:
    """Frames no stack would send: runts, IPv4 header lengths below 20 or past the frame, TCP data
    offsets below 5 or past the frame, a truncated IPv6 header, and a run of "mergeable" TCP
    segments with consecutive sequence numbers whose headers lie about their lengths."""
    eth = bytes.fromhex("ffffffffffff020000000001")
    v4 = eth + b"\x08\x00"
    v6 = eth + b"\x86\xdd"

    def ip4(ihl: int, proto: int, body: bytes, total: int = 0) -> bytes:
        return v4 + bytes([0x40 | ihl, 0]) + struct.pack("!HHHBBH", total or 20 + len(body), 1, 0x4000, 64, proto, 0) \
            + bytes([198, 18, 0, 2, 198, 18, 1, 1]) + body

    def tcp(doff: int, seq: int, payload: bytes = b"x" * 100) -> bytes:
        return struct.pack("!HHIIBBHHH", 1234, 80, seq, 1, doff << 4, 0x10, 512, 0, 0) + payload

    frames = [eth[:6], v4, v6, v4 + b"\x45", v6 + b"\x60" + bytes(10)]
    frames += [ip4(ihl, 6, tcp(5, 1)) for ihl in range(0, 5)]
    frames += [ip4(15, 6, b"")]  # header length past the frame
    frames += [ip4(5, 6, tcp(doff, 1)) for doff in (0, 1, 4, 15)]
    frames += [ip4(5, 6, tcp(5, 1000 + 100 * i), total=40000) for i in range(40)]  # lies about its length
    frames += [v6 + bytes.fromhex("6000000000140640") + bytes(32) + tcp(0, 5)[:8]]
    return frames


@lab_test
def test_hostile_frames_and_commands_do_not_stop_the_emulator(line_lab: LineLab) -> None:
    emu = line_lab.emulator
    assert emu is not None
    line_lab.line(up=dict(delay_ms=2, reorder=0.1))  # hold them a while: the merge path sees them
    frames = _frames()
    before = emu.stats()["up"]["rx"]
    with line_lab.inside(line_lab.gw):
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    with raw:
        raw.bind((line_lab.gw_if, 0))
        for _ in range(20):
            for frame in frames:
                with contextlib.suppress(OSError):  # the kernel refuses the shortest runts itself
                    raw.send(frame)
    wait_for(lambda: (s := emu.stats()["up"])["rx"] - before >= 20 * (len(frames) - 5) and s["held"] == 0,
             10, "the hostile frames through the emulator")
    for command, answer in (("set up loss=2", "error: bad value for loss: '2'"),
                            ("set sideways loss=0", "error: set needs a direction, up or down"),
                            ("set up loss", "error: expected key=value, got 'loss'"),
                            ("set up delay_ns=-1", "error: bad value for delay_ns: '-1'"),
                            ("set up rate_bps=1000", "error: rate_bps needs buffer_ns > 0"),
                            ("set up colour=red", "error: unknown key 'colour'"),
                            ("frobnicate", "error: unknown command 'frobnicate'")):
        assert emu._ask(command) == answer
    assert emu.proc.poll() is None
    line_lab.line()
    assert len(ping_rtts(line_lab, 3, 0.05)) == 3  # still carrying the line


@lab_test
def test_the_bench_prints_throughput_ratios_and_the_target(capsys: pytest.CaptureFixture[str]) -> None:
    """bench/lineemu.py in its shortest form, so it cannot rot (its figures: docs/lab.md)."""
    if os.geteuid() != 0:
        pytest.skip("the line lab needs root to create network namespaces")
    _need("iperf3")
    _need("gcc")
    from bench import lineemu as bench

    assert bench.main(["--quick", "--seconds", "1"]) == 0
    out = capsys.readouterr().out
    for case, *_ in bench.CASES:
        assert re.search(rf"^{re.escape(case)} +up +4 +[\d.]+ +[\d.]+ ", out, re.M), out
    rtt_row = r"^emulator, 1 Gbit/s, 20 ms RTT +up +4 +(19|20|21)\.\d\d +[\d.]+ +[\d.]+ +[01]\.\d{3} "
    assert re.search(rtt_row, out, re.M), out
    assert "target >= 1000 Mbit/s through the emulator with 20 ms RTT: " in out
