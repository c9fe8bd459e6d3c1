"""The loop guard: a record that passed through too many agents is not delivered.

Agents answering each other in a circle (``tasks → results → tasks``, an easy slip
in a spec or for an llm agent spawning helpers) would otherwise write records
without end. Every record carries ``hops``; past the org's ``limits.max_hops`` the
bridge dead-letters it with reason ``hop-limit`` and the chain that led there,
reconstructed from the records this bridge saw recently (a bounded memory: after a
restart, or with the chain split over several bridges, the chain is partial and
says so). The agents stay healthy; only the looping record stops.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from bridge.mapping import Accepted, Poison
from kafkaorg.envelope import Record

HOP_LIMIT_REASON = "hop-limit"
REMEMBERED_RECORDS = 100_000
"""About 100 bytes each: a few MB covers every chain a loop can build in minutes."""


@dataclass(frozen=True)
class _Seen:
    source: str
    type: str
    topic: str
    causation_id: str | None


class RecentRecords:
    """A bounded memory of records by id, to walk a chain back through its causes."""

    def __init__(self, capacity: int = REMEMBERED_RECORDS) -> None:
        self._capacity = capacity
        self._seen: OrderedDict[str, _Seen] = OrderedDict()

    def remember(self, record: Record, topic: str) -> None:
        self._seen[record.id] = _Seen(record.source, record.type, topic, record.causation_id)
        self._seen.move_to_end(record.id)
        while len(self._seen) > self._capacity:
            self._seen.popitem(last=False)

    def chain(self, record: Record, topic: str, limit: int) -> tuple[list[str], bool]:
        """``source → topic (type)`` steps from the oldest known cause to ``record``, and
        whether the walk reached a record with no cause (the chain is complete)."""
        steps = [f"{record.source} → {topic} ({record.type})"]
        cause, hops_left = record.causation_id, limit
        while cause is not None and hops_left > 0:
            seen = self._seen.get(cause)
            if seen is None:
                return list(reversed(steps)), False
            steps.append(f"{seen.source} → {seen.topic} ({seen.type})")
            cause, hops_left = seen.causation_id, hops_left - 1
        return list(reversed(steps)), cause is None


def over_hop_limit(item: Accepted, max_hops: int, recent: RecentRecords) -> Poison | None:
    """The DLQ verdict for a record past ``max_hops``; None when it may be delivered."""
    record = item.record
    if record.hops <= max_hops:
        return None
    steps, complete = recent.chain(record, item.origin.topic, limit=max_hops + 1)
    detail = (
        f"record passed through {record.hops} agents, over limits.max_hops ({max_hops}); "
        f"chain{'' if complete else ' (partial)'}: " + " ⇒ ".join(steps)
    )
    return Poison(item.origin, HOP_LIMIT_REASON, detail, record.kafka_value(), tuple(steps))
