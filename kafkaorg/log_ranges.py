"""Reading fixed offset ranges of a Kafka topic, once, with a consumer that never commits.

``kafkaorg replay`` and the archive both read "partition P from offset A up to B, fixed
when the read began"; this is that read, as records of the log (``RawRecord``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import cast

from confluent_kafka import Consumer, IsolationLevel, KafkaError, Message, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from kafkaorg.config import Settings
from kafkaorg.errors import ServiceUnavailableError
from kafkaorg.kafka import client_config
from kafkaorg.redelivery import PartitionRange

READ_TIMEOUT_S = 120.0
"""No progress for this long while records remain: the broker is gone."""
_CONSUME_BATCH = 500
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One Kafka record as it is in the log: bytes, headers, timestamp."""

    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]

    @classmethod
    def of(cls, message: Message) -> RawRecord:
        _, ts = message.timestamp()
        return cls(
            partition=message.partition() or 0,
            offset=message.offset() or 0,
            timestamp_ms=ts if ts and ts > 0 else None,
            key=message.key(),
            value=message.value(),
            headers=_headers(message),
        )

    @property
    def day(self) -> date | None:
        """The UTC day of the record's timestamp."""
        if self.timestamp_ms is None:
            return None
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC).date()

    @property
    def day_number(self) -> int | None:
        """Days since the epoch (UTC): the same day, without making a date."""
        return None if self.timestamp_ms is None else self.timestamp_ms // DAY_MS


def _headers(message: Message) -> list[tuple[str, bytes | None]]:
    """A consumed message's headers: confluent-kafka gives them as a list of
    ``(str, bytes | None)`` pairs (typed wider, for what a producer may pass)."""
    return cast(list[tuple[str, bytes | None]], message.headers() or [])


def watermarks(admin: AdminClient, name: str, partitions: list[int]) -> dict[int, tuple[int, int]]:
    """Each partition's first offset and its last stable offset (what a read_committed
    consumer can reach), in two requests for all partitions. A consumer's
    ``get_watermark_offsets`` took up to 0.6 s a call while it had other partitions
    assigned (bench_archive)."""
    out: dict[int, list[int]] = {p: [0, 0] for p in partitions}
    for i, spec in enumerate((OffsetSpec.earliest(), OffsetSpec.latest())):
        futures = admin.list_offsets(
            {TopicPartition(name, p): spec for p in partitions},
            isolation_level=IsolationLevel.READ_COMMITTED,
            request_timeout=10,
        )
        for tp, future in futures.items():
            out[tp.partition][i] = future.result().offset
    return {p: (low, high) for p, (low, high) in out.items()}


def range_consumer(cfg: Settings, group: str) -> Consumer:
    """A consumer of its own group that never commits: assignments only."""
    return Consumer(
        client_config(
            cfg,
            **{
                "group.id": group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
            },
        )
    )


class RangeReader:
    """Reads the given ranges once, in batches, and stops at each range's end."""

    def __init__(self, consumer: Consumer, name: str, ranges: list[PartitionRange]) -> None:
        self._consumer = consumer
        self._name = name
        self._ends = {r.partition: r.end for r in ranges if r.count}
        if self._ends:
            consumer.assign([TopicPartition(name, r.partition, r.start) for r in ranges if r.count])

    @property
    def done(self) -> bool:
        return not self._ends

    def next_batch(self) -> list[Message]:
        """Messages inside the ranges; empty means every range is read."""
        deadline = time.monotonic() + READ_TIMEOUT_S
        while self._ends:
            messages = self._consumer.consume(_CONSUME_BATCH, 0.5)
            out = []
            for message in messages:
                err = message.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise ServiceUnavailableError(f"cannot read {self._name}: {err.str()}")
                partition, offset = message.partition() or 0, message.offset() or 0
                end = self._ends.get(partition)
                if end is not None and offset < end:
                    out.append(message)
            self._drop_finished()
            if out:
                return out
            if time.monotonic() > deadline:
                raise ServiceUnavailableError(
                    f"reading {self._name} made no progress for {READ_TIMEOUT_S:.0f}s"
                )
        return []

    def _drop_finished(self) -> None:
        """A partition is done once the consumer's position reached its end.

        Positions, not the last offset seen: transaction markers occupy offsets
        that no message is returned for.
        """
        positions = self._consumer.position(
            [TopicPartition(self._name, p) for p in list(self._ends)]
        )
        for tp in positions:
            if tp.offset >= 0 and tp.offset >= self._ends.get(tp.partition, 0):
                self._ends.pop(tp.partition, None)
