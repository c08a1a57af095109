"""The link check without the ethtool ioctl: psutil.net_if_stats() fails outright (ENOSYS) under qemu-user,
where the arm64 package is tested (tests/test_package.py); the check reads /sys/class/net instead of
crashing, and the two sources agree on this machine's real interfaces."""

from __future__ import annotations

import errno

import psutil
import pytest

from agent.checks import link
from linecheck.wire import Status
from tests.checkctx import make_ctx


def test_sysfs_says_what_psutil_says_on_this_machine() -> None:
    real, ours = psutil.net_if_stats(), link.if_stats_from_sysfs()
    assert set(real) == set(ours) and "lo" in ours
    for name, stats in real.items():
        mine = ours[name]
        assert (mine.isup, mine.mtu) == (stats.isup, stats.mtu), name
        if stats.speed:
            assert (mine.speed, mine.duplex) == (stats.speed, stats.duplex), name


def test_link_check_survives_a_missing_ethtool_ioctl(monkeypatch: pytest.MonkeyPatch) -> None:
    def enosys() -> dict:
        raise OSError(errno.ENOSYS, "Function not implemented (originated from ioctl(SIOCETHTOOL))")

    monkeypatch.setattr(link.psutil, "net_if_stats", enosys)
    [m] = link.run(link.LinkConfig(window_s=0), make_ctx(wan="lo"))
    assert m.status is Status.OK, m.reason
    assert m.metrics["wan_up_flag"] == 1 and m.metrics["wan_mtu_bytes"] == 65536
