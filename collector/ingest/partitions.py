"""Which collector ingests which partitions of the results: leases in a replicated JetStream key-value bucket.

One agent's results all land in one partition (the cluster's subject mapping hashes the agent id), and a
partition is pulled by the one collector holding its lease, so one agent is ingested by one collector at a
time and collectors never wait on each other's per-agent and per-line locks (`$share` spread one agent over
all of them: a third collector made a burst slower, docs/scaling.md).

Every `lease_s / 3` each collector:
- renews its membership key `m.<collector>` and its partitions' keys `p.<n>` (compare-and-set on the
  revision it wrote last: a lease that expired and was taken meanwhile is lost, not stolen back);
- counts the live members (their keys expire `lease_s` after the last renewal: the bucket's max age) and
  takes free partitions up to its fair share, ceil(partitions / members), or gives back the ones above it
  once nothing taken from them is still un-acked (so two collectors never hold one agent's results at once).
A collector that dies stops renewing: after `lease_s` its partitions are free and the others take them; what
it took and never acked comes again after the consumer's ack wait.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

log = logging.getLogger(__name__)


class PartitionLeases:
    def __init__(self, js: JetStreamContext, kv: KeyValue, bucket: str, me: str, partitions: int,
                 in_flight: Callable[[int], int]):
        self.js = js
        self.kv = kv
        self.bucket = bucket
        self.me = me
        self.partitions = partitions
        self.in_flight = in_flight  # partition -> messages taken from it and not yet acked
        self.owned: dict[int, int] = {}  # partition -> revision of our lease
        self.members = 1
        self._rng = random.Random()

    def fair_share(self) -> int:
        return math.ceil(self.partitions / max(1, self.members))

    async def tick(self) -> set[int]:
        """Renew, rebalance; returns the partitions this collector may pull from now."""
        await self.kv.put(f"m.{self.me}", b"1")
        await self._renew()
        self.members = await self._members()
        share = self.fair_share()
        if len(self.owned) > share:
            # Give back the quietest first; one still holding un-acked messages is kept until they are acked.
            for p in sorted(self.owned, key=self.in_flight):
                if len(self.owned) <= share:
                    break
                if self.in_flight(p) == 0:
                    await self._release(p)
        elif len(self.owned) < share:
            free = [p for p in range(self.partitions) if p not in self.owned]
            self._rng.shuffle(free)  # collectors starting together do not all race for partition 0
            for p in free:
                if len(self.owned) >= share:
                    break
                try:
                    self.owned[p] = await self.kv.create(f"p.{p}", self.me.encode())
                    log.info("ingesting partition %d (%d members, share %d)", p, self.members, share)
                except KeyWrongLastSequenceError:
                    continue  # held by another collector
        return set(self.owned)

    async def _renew(self) -> None:
        for p, revision in list(self.owned.items()):
            try:
                self.owned[p] = await self.kv.update(f"p.{p}", self.me.encode(), last=revision)
            except KeyWrongLastSequenceError:
                # It expired (we were away longer than lease_s) and another collector holds it now.
                del self.owned[p]
                log.warning("lost partition %d to another collector (lease expired)", p)

    async def _release(self, p: int) -> None:
        revision = self.owned.pop(p)
        try:
            await self.kv.delete(f"p.{p}", last=revision)
            log.info("gave partition %d back (share is now %d)", p, self.fair_share())
        except (KeyWrongLastSequenceError, KeyNotFoundError):
            pass

    async def release_all(self) -> None:
        """On a clean stop: the others take the partitions at their next tick instead of after lease_s."""
        for p in list(self.owned):
            try:
                await self._release(p)
            except Exception:  # noqa: BLE001 - stopping: the lease expires anyway
                log.debug("could not release partition %d", p, exc_info=True)
        try:
            await self.kv.delete(f"m.{self.me}")
        except Exception:  # noqa: BLE001
            log.debug("could not remove the membership key", exc_info=True)

    async def _members(self) -> int:
        """Live members: membership keys not yet expired. One stream-info call (the KV client's keys() sets up
        a consumer each time: seconds on a busy cluster)."""
        info = await self.js.stream_info(f"KV_{self.bucket}", subjects_filter=f"$KV.{self.bucket}.m.>")
        return max(1, len(info.state.subjects or {}))
