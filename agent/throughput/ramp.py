"""When to add streams, when the ramp-up is over, and when the rate is stable: pure decisions.

Fed one cumulative byte count per interval, the controller
1. adds streams while the moving average keeps growing (more than `growth` per step),
2. then discards everything so far (slow start, tbf's initial burst, new streams ramping),
3. and stops once the moving average of the last intervals is steady: the standard deviation
   of the last `window` moving averages below `stable_cv` of their mean (the IETF
   responsiveness draft's criterion), after at least `min_measure_s` of measurement, and the
   moving average has not drifted by more than `stable_cv` since the measurement began (the
   draft's 1 s intervals hide a slow climb; our 0.1 s intervals need this second test).
The reported rate is the slope of the byte count over the whole measurement window, not one interval's figure.

At real round-trip times (docs/throughput.md, "At real round-trip times") four things follow the
idle RTT the engine measured before the test (`rtt_s`): a moving average spans at least `WINDOW_RTTS`
round trips, new streams get `SETTLE_RTTS` round trips
before the rate is judged (slow start of a stream takes a round trip per doubling), the measurement
lasts at least `MEASURE_RTTS` round trips (the bytes still in flight at its edges weigh less), and
when the rate is steady now but has moved since the measurement began, the measurement restarts
at the steady part: the climb before it is discarded like the ramp-up. Without the restart a
measurement that began while the streams were still growing compared every later average with that
first low one and never stopped as stable (300 Mbit/s at 20 ms RTT ran to the time cap).
When to add streams also follows the BDP: `stream_target` (sizing.py) says how many streams a rate
needs at this RTT, and a step adds at least as many as that asks for.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

SETTLE_RTTS = 8  # round trips new streams get before their effect is judged
MEASURE_RTTS = 40  # round trips the measurement lasts at least
WINDOW_RTTS = 16  # round trips a moving average spans at least (50 ms: 8 intervals, not 4)


class Phase(Enum):
    RAMP = "ramp"
    MEASURE = "measure"
    DONE = "done"


@dataclass
class RampSettings:
    interval_s: float = 0.1
    window: int = 4  # intervals in the moving average, and moving averages in the stability test
    start_streams: int = 4
    step_streams: int = 4
    max_streams: int = 16
    growth: float = 0.05  # a step that raised the rate by less than this ends the ramp
    settle_intervals: int = 4  # give new streams this long before judging them
    stable_cv: float = 0.05
    min_measure_s: float = 1.0


@dataclass
class Controller:
    settings: RampSettings = field(default_factory=RampSettings)
    phase: Phase = Phase.RAMP
    streams: int = 0
    stop_reason: str | None = None
    _times: list[float] = field(default_factory=list)
    _bytes: list[int] = field(default_factory=list)
    _rates: list[float] = field(default_factory=list)  # bit/s per interval
    _mas: list[float] = field(default_factory=list)
    _since_add: int = 0
    _rate_before_add: float | None = None
    measure_start: int | None = None  # index into samples where measurement began
    rtt_s: float = 0.0  # the idle round trip: scales the settling and the shortest measurement
    stream_target: Callable[[float], int] | None = None  # bit/s -> streams that rate needs (sizing.py)
    restarts: int = 0  # times the measurement restarted past a climb
    enough_bps: float | None = None  # the plan's goodput reached: the streams carry it, more would only add loss

    def __post_init__(self) -> None:
        self.streams = self.settings.start_streams

    def settle_intervals(self) -> int:
        s = self.settings
        return max(s.settle_intervals, math.ceil(SETTLE_RTTS * self.rtt_s / s.interval_s))

    def window(self) -> int:
        """Intervals per moving average (and moving averages per stability test): at 50 ms RTT a 0.1 s
        interval holds 2 round trips and BBR's probing swings 4 of them by more than 5 %, so the 500 Mbit/s
        and 1 Gbit/s downloads at 50 ms ran to the time cap unsettled."""
        s = self.settings
        return max(s.window, math.ceil(WINDOW_RTTS * self.rtt_s / s.interval_s))

    def min_measure_s(self) -> float:
        return max(self.settings.min_measure_s, MEASURE_RTTS * self.rtt_s)

    def moving_average(self) -> float | None:
        w = self.window()
        return sum(self._rates[-w:]) / w if len(self._rates) >= w else None

    def feed(self, t: float, total_bytes: int) -> int:
        """Record one sample; returns how many streams to add now (0 mostly)."""
        s = self.settings
        if self._times:
            dt = t - self._times[-1]
            self._rates.append((total_bytes - self._bytes[-1]) * 8 / dt if dt > 0 else 0.0)
        self._times.append(t)
        self._bytes.append(total_bytes)
        ma = self.moving_average()
        if self.phase is Phase.RAMP:
            self._since_add += 1
            if ma is None or self._since_add < self.settle_intervals():
                return 0
            grew = self._rate_before_add is None or ma > self._rate_before_add * (1 + s.growth)
            if self.enough_bps is not None and ma >= self.enough_bps:
                grew = False  # sized from the plan's BDP and carrying it: a rate swinging at RTT is not growth
            if grew and self.streams < s.max_streams:
                # The next step's rate is not known yet: ask for the streams this rate plus one more
                # growth step would need, at least `step_streams`.
                want = self.stream_target(ma * (1 + s.growth)) if self.stream_target else 0
                add = min(max(s.step_streams, want - self.streams), s.max_streams - self.streams)
                self.streams += add
                self._rate_before_add = ma
                self._since_add = 0
                return add
            self.phase = Phase.MEASURE
            self.measure_start = len(self._times) - 1
            return 0
        if self.phase is Phase.MEASURE and ma is not None:
            self._mas.append(ma)
            w = self.window()
            recent = self._mas[-w:]
            if len(recent) == w and self.measured_s() >= self.min_measure_s():
                mean = statistics.fmean(recent)
                steady = mean > 0 and statistics.pstdev(recent) / mean < s.stable_cv
                # Steady now, and no trend across the whole measurement: a rate still creeping up
                # by a few % per interval has a small spread over 4 overlapping averages too.
                trend = abs(self._mas[-1] - self._mas[0]) / mean if mean > 0 else 1.0
                if steady and trend < s.stable_cv:
                    self.finish("stable")
                elif steady:
                    # Moved since the start, steady now: measure from the steady part on. A rate
                    # that keeps creeping restarts again and again and is never called stable.
                    self.measure_start = len(self._times) - 1 - (2 * w - 1)
                    self._mas = list(recent)
                    self.restarts += 1
        return 0

    def finish(self, reason: str) -> None:
        if self.phase is not Phase.DONE:
            self.phase = Phase.DONE
            self.stop_reason = reason

    def measured_s(self) -> float:
        if self.measure_start is None:
            return 0.0
        return self._times[-1] - self._times[self.measure_start]

    def window_indices(self) -> tuple[int, int] | None:
        """Sample indices (start, end) of the measurement; when stopped during the ramp (a cap),
        the last `window` intervals stand in, flagged by `ramp_complete`."""
        if len(self._times) < 2:
            return None
        if self.measure_start is not None and len(self._times) - 1 > self.measure_start:
            return self.measure_start, len(self._times) - 1
        return max(0, len(self._times) - 1 - self.window()), len(self._times) - 1

    def settled(self) -> bool:
        """Whether the measured rate settled: the stability criterion stopped the test, or — a cap stopped
        it — the two halves of the measurement window carried the same rate within `stable_cv`. At real
        round-trip times the 0.1 s rates swing with each RTT and the 4-interval criterion may never hold
        (20 ms RTT, 100 Mbit/s, 15 s: never) while the window's rate has long been flat; a rate still
        climbing or falling differs between the halves. A test stopped during the ramp never settled."""
        if self.stop_reason == "stable":
            return True
        s = self.settings
        if self.measure_start is None or self.measured_s() < self.min_measure_s():
            return False
        a, b = self.measure_start, len(self._times) - 1
        middle = (self._times[a] + self._times[b]) / 2
        m = min(range(a + 1, b), key=lambda i: abs(self._times[i] - middle), default=None)
        if m is None:
            return False
        first, second = (self._segment_bps(a, m), self._segment_bps(m, b))
        if first is None or second is None or max(first, second) <= 0:
            return False
        return abs(second - first) / max(first, second) < s.stable_cv

    def _segment_bps(self, a: int, b: int) -> float | None:
        dt = self._times[b] - self._times[a]
        return (self._bytes[b] - self._bytes[a]) * 8 / dt if dt > 0 else None

    @property
    def ramp_complete(self) -> bool:
        return self.measure_start is not None

    def rate_bps(self) -> float | None:
        """The rate over the measurement window: the least-squares slope of the byte count over time.

        Not (last - first) / time: the count is what arrived in order (download) or what the receiver
        holds (upload), and while a stream repairs a loss its count stands still and then jumps. A window
        whose first sample fell in such a stall (most likely right after the ramp's last step, whose new
        streams overflow the queue together) read high by the stalled bytes: 96.9 Mbit/s of goodput at
        20 ms RTT through a 100 Mbit/s cap that carries 95.6. Fitted over every sample, one stalled sample
        weighs about 6/n of what it weighed as an endpoint."""
        idx = self.window_indices()
        if idx is None:
            return None
        a, b = idx
        ts, bs = self._times[a:b + 1], self._bytes[a:b + 1]
        if len(ts) < 3:
            dt = ts[-1] - ts[0]
            return (bs[-1] - bs[0]) * 8 / dt if dt > 0 else None
        mt, mb = statistics.fmean(ts), statistics.fmean(bs)
        var = sum((t - mt) ** 2 for t in ts)
        return sum((t - mt) * (x - mb) for t, x in zip(ts, bs, strict=True)) / var * 8 if var > 0 else None

    def sample_time(self, i: int) -> float:
        return self._times[i]
