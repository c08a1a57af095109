"""Flaps during a check: the WAN link going down and coming back while the checks run.

The link check looks at the port once, at the start; a line that drops for a few seconds in the
middle of a speed test is seen by the throughput engine (which stops the test as interrupted) and
by the kernel's count of carrier changes. The runner reads that count before the first check and
after the last: any change is a `link_flap` finding (warning, wan) saying how often and whether the
link is up at the end. It is what turns "the speed test was interrupted" into a fault with a place:
the line dropped, which a technician on site, arriving later, does not see.
"""

from __future__ import annotations

from agent.findings import finding
from agent.netinfo import carrier_changes, carrier_up
from linecheck.wire import Finding


class FlapWatch:
    """Carrier changes of the WAN port between construction and `finding()`."""

    def __init__(self, interface: str | None) -> None:
        self.interface = interface
        self.before = carrier_changes(interface) if interface else None

    def finding(self) -> Finding | None:
        if not self.interface or self.before is None:
            return None
        after = carrier_changes(self.interface)
        if after is None or after <= self.before:
            return None
        changes = after - self.before
        up = carrier_up(self.interface)
        drops = (changes + 1) // 2  # each drop is two changes (down, then up); an odd count ends down
        if up:
            message = (f"The WAN link {self.interface} went down and came back during the check "
                       f"({drops} time{'s' if drops != 1 else ''}): the line is unstable.")
        else:
            message = f"The WAN link {self.interface} went down during the check and is still down."
        return finding("link_flap", "warning", "link", message,
                       {"interface": self.interface, "carrier_changes_count": changes, "drops_count": drops,
                        "up_flag": 1 if up else 0})
