"""Is the agent's clock synchronised? Asked of the kernel (adjtimex), so it works with any NTP daemon."""

from __future__ import annotations

import ctypes
import ctypes.util

from linecheck.wire import ClockState

TIME_ERROR = 5  # adjtimex() return value: clock not synchronised


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h> (x86_64/aarch64 layout); only the leading fields are read.
    _fields_ = [
        ("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
        ("constant", ctypes.c_long), ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long), ("time_usec", ctypes.c_long), ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long), ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
        ("_pad", ctypes.c_int * 11),
    ]


def state() -> ClockState:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        tx = _Timex()
        rc = libc.adjtimex(ctypes.byref(tx))  # modes=0: read only, needs no privilege
    except (OSError, AttributeError):
        return ClockState()
    if rc < 0:
        return ClockState()
    return ClockState(synced=rc != TIME_ERROR, source="kernel", max_error_ms=round(tx.maxerror / 1000.0, 3))
