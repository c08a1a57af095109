"""The line emulator of the line lab: delay, jitter, loss, reordering and a rate cap, per direction.

This kernel has no netem, so the lab's access link can pass through a "wire" namespace where a
small C helper (tests/lineemu.c, built here with gcc into a cache outside the clone, keyed by the
source's hash) bridges its two veth ends with AF_PACKET and impairs each direction:

    [gw ns] wan0 ==== e0 [wire ns: lineemu] e1 ==== cr0 [carrier ns]
                  up: e0 -> e1, down: e1 -> e0

`LineLab(emulator=True)` builds it; `lab.line(down=dict(...), up=dict(...))` sets the impairments
(see `Impairment` for the keys) and can be called again at any time; the `line` fixture is that
method. Each configuration reseeds its random numbers, so a test sees the same losses every run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).with_name("lineemu.c")
CFLAGS = ["-O2", "-Wall", "-pthread"]
CACHE = Path(os.environ.get("LINECHECK_CACHE", "/var/cache/linecheck"))
GW_SIDE_IF, CARRIER_SIDE_IF = "e0", "e1"  # the wire namespace's ends: towards the gateway, the carrier
# Under load a frame leaves up to this late so one wake-up sends several (a NIC's interrupt
# moderation does the same; a lone frame leaves on time). The measured trade-off is in docs/lab.md.
SLACK_US = 100


class LineConfigError(ValueError):
    """A line(...) configuration the emulator cannot take; the message names the key."""


@dataclass(frozen=True)
class Impairment:
    """One direction of the emulated line. Every field defaults to "no impairment".

    rate_mbit      rate cap in Mbit/s, counting whole Ethernet frames (as tbf on the lab's veth)
    buffer_ms      queue in front of the cap, as time at the rate (default 50 ms with a cap) ...
    buffer_bytes   ... or in bytes; a frame that does not fit is dropped (drop-tail)
    delay_ms       one-way delay
    jitter_ms      standard deviation of a normal spread around delay_ms (clipped at 0)
    jitter_reorders  False (default): frames keep their order, as jitter from queues does;
                   True: each frame's delay is drawn alone, so jitter reorders them
    loss           probability that a frame is lost (independent losses)
    burst_loss     {"rate": r, "mean_burst": n}: Gilbert-Elliott losses with long-run rate r in
                   bursts of n frames on average (every frame in the bad state is lost) ...
    gilbert        ... or the model's own parameters {"p": good->bad, "r": bad->good,
                   "loss_good": 0, "loss_bad": 1} per frame
    reorder        probability that a frame is held back reorder_ms (default 1 ms) and overtaken
    seed           random seed (default: 1 up, 2 down)
    """

    rate_mbit: float = 0.0
    buffer_ms: float = 0.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    jitter_reorders: bool = False
    loss: float = 0.0
    ge_p: float = 0.0
    ge_r: float = 0.0
    ge_loss_good: float = 0.0
    ge_loss_bad: float = 1.0
    reorder: float = 0.0
    reorder_ms: float = 0.0
    seed: int = 0

    def helper_args(self) -> str:
        """The `set` command's key=value list (the helper's units: bit/s and ns)."""
        ns = 1e6
        fields = {"rate_bps": self.rate_mbit * 1e6, "buffer_ns": self.buffer_ms * ns,
                  "delay_ns": self.delay_ms * ns, "jitter_ns": self.jitter_ms * ns,
                  "jitter_reorders": int(self.jitter_reorders), "loss": self.loss, "ge_p": self.ge_p,
                  "ge_r": self.ge_r, "ge_loss_good": self.ge_loss_good, "ge_loss_bad": self.ge_loss_bad,
                  "reorder": self.reorder, "reorder_ns": self.reorder_ms * ns, "seed": self.seed}
        return " ".join(f"{k}={v:.17g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())


KEYS = ("rate_mbit", "buffer_ms", "buffer_bytes", "delay_ms", "jitter_ms", "jitter_reorders", "loss",
        "burst_loss", "gilbert", "reorder", "reorder_ms", "seed")
MAX_MS = 60_000.0  # a minute of delay or buffer: anything longer is a mistake


def _show(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _number(where: str, key: str, value: object, lo: float, hi: float, lo_open: bool = False) -> float:
    """A real number in [lo, hi] (or (lo, hi]); bools are not numbers here."""
    bound = f"{'>' if lo_open else '>='} {_show(lo)} and <= {_show(hi)}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LineConfigError(f"{where}: {key} must be a number {bound}, got {value!r}")
    x = float(value)
    if not (x > lo if lo_open else x >= lo) or not x <= hi:  # also catches NaN
        raise LineConfigError(f"{where}: {key} must be a number {bound}, got {value!r}")
    return x


def _sub(where: str, key: str, value: object, allowed: set[str], required: set[str]) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise LineConfigError(f"{where}: {key} must be a mapping with keys {sorted(allowed)}, got {value!r}")
    unknown = set(value) - allowed
    missing = required - set(value)
    if unknown or missing:
        what = f"unknown {sorted(map(str, unknown))}" if unknown else f"missing {sorted(missing)}"
        raise LineConfigError(f"{where}: {key} has {what} keys; expected {sorted(allowed)}")
    return value


def impairment(spec: Mapping[str, Any] | None, where: str, default_seed: int) -> Impairment:
    """Validates one direction's mapping (`where` names it in errors, e.g. "line(down=...)")."""
    if spec is None:
        return Impairment(seed=default_seed)
    if not isinstance(spec, Mapping):
        raise LineConfigError(f"{where}: expected a mapping of impairments, got {spec!r}")
    unknown = sorted(map(str, set(spec) - set(KEYS)))
    if unknown:
        raise LineConfigError(f"{where}: unknown key {unknown[0]!r}; expected some of {', '.join(KEYS)}")
    n = lambda key, lo, hi, lo_open=False: _number(where, key, spec[key], lo, hi, lo_open)  # noqa: E731
    out: dict[str, Any] = {"seed": default_seed}
    if "rate_mbit" in spec:
        out["rate_mbit"] = n("rate_mbit", 0, 100_000, lo_open=True)
    if "buffer_ms" in spec and "buffer_bytes" in spec:
        raise LineConfigError(f"{where}: give buffer_ms or buffer_bytes, not both")
    if ("buffer_ms" in spec or "buffer_bytes" in spec) and "rate_mbit" not in spec:
        raise LineConfigError(f"{where}: a buffer needs rate_mbit (it is the queue in front of the rate cap)")
    if "rate_mbit" in spec:
        if "buffer_bytes" in spec:
            size = n("buffer_bytes", 0, 1 << 30, lo_open=True)
            if not float(size).is_integer():
                raise LineConfigError(f"{where}: buffer_bytes must be a whole number, got {spec['buffer_bytes']!r}")
            out["buffer_ms"] = size * 8 / (out["rate_mbit"] * 1e6) * 1e3
        else:
            out["buffer_ms"] = n("buffer_ms", 0, MAX_MS, lo_open=True) if "buffer_ms" in spec else 50.0
    for key in ("delay_ms", "jitter_ms"):
        if key in spec:
            out[key] = n(key, 0, MAX_MS)
    if "jitter_reorders" in spec:
        if not isinstance(spec["jitter_reorders"], bool):
            raise LineConfigError(f"{where}: jitter_reorders must be true or false, got {spec['jitter_reorders']!r}")
        out["jitter_reorders"] = spec["jitter_reorders"]
    if "loss" in spec:
        out["loss"] = n("loss", 0, 1)
    if "burst_loss" in spec and "gilbert" in spec:
        raise LineConfigError(f"{where}: give burst_loss or gilbert, not both")
    if "burst_loss" in spec:
        b = _sub(where, "burst_loss", spec["burst_loss"], {"rate", "mean_burst"}, {"rate", "mean_burst"})
        rate = _number(where, "burst_loss.rate", b["rate"], 0, 1, lo_open=True)
        if rate >= 1:
            raise LineConfigError(f"{where}: burst_loss.rate must be < 1 (a line losing everything is down)")
        mean = _number(where, "burst_loss.mean_burst", b["mean_burst"], 1, 1e6)
        # Bursts end with probability r per frame (mean length 1/r); the bad state's share
        # p / (p + r) is the loss rate.
        out["ge_r"] = 1 / mean
        out["ge_p"] = rate * out["ge_r"] / (1 - rate)
        if out["ge_p"] > 1:
            raise LineConfigError(f"{where}: burst_loss.rate {rate:g} cannot come in bursts of {mean:g} "
                                  "(lower the rate or lengthen the bursts)")
    if "gilbert" in spec:
        g = _sub(where, "gilbert", spec["gilbert"], {"p", "r", "loss_good", "loss_bad"}, {"p", "r"})
        out["ge_p"] = _number(where, "gilbert.p", g["p"], 0, 1)
        out["ge_r"] = _number(where, "gilbert.r", g["r"], 0, 1, lo_open=True)
        if "loss_good" in g:
            out["ge_loss_good"] = _number(where, "gilbert.loss_good", g["loss_good"], 0, 1)
        if "loss_bad" in g:
            out["ge_loss_bad"] = _number(where, "gilbert.loss_bad", g["loss_bad"], 0, 1)
    if "reorder_ms" in spec and "reorder" not in spec:
        raise LineConfigError(f"{where}: reorder_ms needs reorder (the share of frames held back)")
    if "reorder" in spec:
        out["reorder"] = n("reorder", 0, 1)
        out["reorder_ms"] = n("reorder_ms", 0, MAX_MS, lo_open=True) if "reorder_ms" in spec else 1.0
    if "seed" in spec:
        seed = spec["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
            raise LineConfigError(f"{where}: seed must be a whole number 0..2^64-1, got {seed!r}")
        out["seed"] = seed
    return Impairment(**out)


# --- the helper binary ----------------------------------------------------------------------------
_build_lock = threading.Lock()


def helper_binary() -> Path:
    """The compiled helper, built once per source version into CACHE (atomic rename, so parallel
    test runs never see half a binary)."""
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source + " ".join(CFLAGS).encode()).hexdigest()[:16]
    binary = CACHE / f"lineemu-{digest}"
    with _build_lock:
        if binary.exists():
            return binary
        gcc = shutil.which("gcc") or shutil.which("cc")
        if gcc is None:
            raise FileNotFoundError("the line emulator needs a C compiler (gcc) to build tests/lineemu.c")
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = binary.with_name(f"{binary.name}.{os.getpid()}.tmp")
        out = subprocess.run([gcc, *CFLAGS, "-o", str(tmp), str(SOURCE), "-lm"], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"building {SOURCE} failed:\n{out.stderr}")
        os.replace(tmp, binary)
    return binary


def command() -> list[str]:
    """The helper's command line in the wire namespace."""
    return [str(helper_binary()), GW_SIDE_IF, CARRIER_SIDE_IF, "--slack-us", str(SLACK_US)]


# --- the running emulator -------------------------------------------------------------------------
class LineEmulator:
    """The helper running in the wire namespace, driven over its stdin/stdout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self._lock = threading.Lock()
        first = self._readline()
        if first != "ready":
            raise RuntimeError(f"the line emulator did not start: {first or self._stderr()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return "(no answer)"
        return self.proc.stderr.read().strip() or f"exit code {self.proc.returncode}"

    def _readline(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def _ask(self, command: str) -> str:
        assert self.proc.stdin is not None
        with self._lock:
            try:
                self.proc.stdin.write(command + "\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                raise RuntimeError(f"the line emulator has exited: {self._stderr()}") from None
            answer = self._readline()
        if not answer:
            raise RuntimeError(f"the line emulator has exited: {self._stderr()}")
        return answer

    def configure(self, direction: str, imp: Impairment) -> None:
        answer = self._ask(f"set {direction} {imp.helper_args()}")
        if answer != "ok":  # the Python side validated already: this is a bug, say so loudly
            raise RuntimeError(f"the line emulator refused {direction}: {answer}")

    def stats(self) -> dict[str, dict[str, int]]:
        """Counters per direction ("up", "down"), in frames unless named otherwise:
        rx (as received: a segmentation-offload super-frame is one), rx_bytes, tx, tx_bytes,
        drop_loss (random and burst loss), drop_queue (buffer full), drop_pool (no free slot),
        drop_bad (too large, runt, or a super-frame it cannot cut), drop_tx (refused by the
        outgoing interface), drop_kernel (the receive socket overflowed), reordered (held back
        on purpose), held (waiting now), max_backlog_ns (deepest queue), superframes (cut into
        frames), merged (frames handed over as part of a larger one, as GRO would)."""
        stats: dict[str, dict[str, int]] = json.loads(self._ask("stats"))
        return stats

    def cpu_seconds(self) -> float:
        """User + system CPU of the helper so far (it also carries the kernel work of its sends)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def configure_line(emu: LineEmulator, down: Mapping[str, Any] | None, up: Mapping[str, Any] | None) -> None:
    """Both directions validated first, then applied: a bad key changes nothing."""
    imps = {"up": impairment(up, "line(up=...)", 1), "down": impairment(down, "line(down=...)", 2)}
    for direction, imp in imps.items():
        emu.configure(direction, imp)
