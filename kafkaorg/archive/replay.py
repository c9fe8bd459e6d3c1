"""Replay past retention: deliver a topic's records to an agent from the archive where
Kafka no longer has them, and from Kafka where the archive does not have them yet.

Per partition, offsets below where the archive ends come from its files, the rest
from Kafka; offsets in neither (they expired before an archive run reached them) are
counted as ``missing``. Delivery is ``kafkaorg replay``'s (kafkaorg/record_replay.py):
the same decoding, the same ``replay:<run id>`` mark, each record id once per run.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from confluent_kafka import KafkaException, TopicPartition
from temporalio.client import Client

from kafkaorg.archive import manifest, payload_copies
from kafkaorg.archive.files import ArchiveStorage
from kafkaorg.archive.reader import read_range
from kafkaorg.config import Settings
from kafkaorg.db.session import db_session
from kafkaorg.errors import ServiceUnavailableError
from kafkaorg.log_ranges import RawRecord, range_consumer
from kafkaorg.names import kafka_topic
from kafkaorg.record_replay import ReplayOutcome, ReplaySender, read_and_send
from kafkaorg.redelivery import PartitionRange, replay_mark


@dataclass(frozen=True)
class PartitionPlan:
    archive: PartitionRange
    kafka: PartitionRange
    missing: int


def plan_partition(
    partition: int, low: int, high: int, start: int, archived: list[tuple[int, int]]
) -> PartitionPlan:
    """Which source serves which offsets of ``[start, high)``.

    Args:
        low, high: Kafka's watermarks now.
        start: the first offset wanted.
        archived: the partition's files' ``(start, end)``, in order.
    """
    archive_end = archived[-1][1] if archived else None
    arch_hi = min(archive_end, high) if archive_end is not None else start
    arch = PartitionRange(partition, start, max(start, arch_hi))
    covered = sum(max(0, min(e, arch.end) - max(s, arch.start)) for s, e in archived)
    missing = arch.count - covered
    kafka_lo = max(start, archive_end) if archive_end is not None else start
    if kafka_lo < low:
        missing += low - kafka_lo
        kafka_lo = low
    kafka_lo = min(kafka_lo, high)
    return PartitionPlan(arch, PartitionRange(partition, kafka_lo, high), missing)


class ArchiveReplayOutcome(ReplayOutcome):
    """A replay run served by the archive and Kafka together."""

    archive_ranges: list[PartitionRange] = []
    """What the archive serves; ``ranges`` is what Kafka serves."""
    missing: int = 0
    """Offsets of the range in neither (expired before they were archived)."""
    since_ms: int | None = None
    from_archive: int = 0
    """Of ``records``, how many the archive served."""
    payloads_restored: int = 0
    """Payloads by reference put back into PostgreSQL from the archive's copies."""

    @property
    def total(self) -> int:
        return sum(r.count for r in self.ranges) + sum(r.count for r in self.archive_ranges)


def _start(
    rows: list[manifest.SegmentRow], kafka_since: int | None, high: int, since: datetime
) -> int:
    """The first offset at or after ``since``: from the archive's timestamps, else Kafka's."""
    for row in rows:
        if row.last_timestamp is not None and row.last_timestamp >= since:
            return row.start_offset
    return kafka_since if kafka_since is not None and kafka_since >= 0 else high


def plan_archive_replay(
    cfg: Settings,
    org: str,
    topic: str,
    agent: str,
    partitions: list[int],
    *,
    from_offset: int | None = None,
    since: datetime | None = None,
) -> ArchiveReplayOutcome:
    """A new run with each partition's archive and Kafka ranges fixed now."""
    name = kafka_topic(org, topic)
    run_id = str(uuid.uuid4())
    with db_session(cfg) as session:
        org_id = manifest.org_id_or_refuse(session, org)
        rows = manifest.segments(session, org_id, topic)
    consumer = range_consumer(cfg, f"kafkaorg-replay-{run_id}")
    archive_ranges, kafka_ranges, missing = [], [], 0
    try:
        by_time: dict[int, int] = {}
        if since is not None:
            wanted = [TopicPartition(name, p, int(since.timestamp() * 1000)) for p in partitions]
            by_time = {
                tp.partition: tp.offset for tp in consumer.offsets_for_times(wanted, timeout=10)
            }
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
            mine = [r for r in rows if r.partition == p]
            if since is not None:
                start = _start(mine, by_time.get(p), high, since)
            else:
                start = from_offset or 0
            plan = plan_partition(
                p, low, high, start, [(r.start_offset, r.end_offset) for r in mine]
            )
            archive_ranges.append(plan.archive)
            kafka_ranges.append(plan.kafka)
            missing += plan.missing
    except KafkaException as exc:
        raise ServiceUnavailableError(f"cannot read {name}: {exc}") from None
    finally:
        consumer.close()
    return ArchiveReplayOutcome(
        run_id=run_id,
        mark=replay_mark(run_id),
        org=org,
        topic=topic,
        agent=agent,
        ranges=kafka_ranges,
        archive_ranges=archive_ranges,
        missing=missing,
        since_ms=int(since.timestamp() * 1000) if since is not None else None,
    )


async def deliver_archive_replay(
    cfg: Settings,
    client: Client,
    planned: ArchiveReplayOutcome,
    *,
    on_progress: Callable[[int], None] | None = None,
) -> ArchiveReplayOutcome:
    """The archive's ranges first, then Kafka's: each record once, marked with the run."""
    storage = ArchiveStorage(cfg.archive_location)
    with db_session(cfg) as session:
        org_id = manifest.org_id_or_refuse(session, planned.org)
        rows = manifest.segments(session, org_id, planned.topic)
        used = [
            row
            for row in rows
            for r in planned.archive_ranges
            if row.partition == r.partition
            and row.start_offset < r.end
            and row.end_offset > r.start
        ]
        # Payloads by reference the agent will need, back from the archive if collected.
        restored = await asyncio.to_thread(
            payload_copies.put_back, session, storage, planned.org, org_id, used
        )
        session.commit()
    since_ms = planned.since_ms

    def keep(raw: RawRecord) -> bool:
        return since_ms is None or raw.timestamp_ms is None or raw.timestamp_ms >= since_ms

    sender = ReplaySender(cfg, client, planned)
    for r in planned.archive_ranges:
        if not r.count:
            continue
        batches = read_range(storage, rows, r.partition, r.start, r.end)
        while (batch := await asyncio.to_thread(next, batches, None)) is not None:
            await sender.send([raw for raw in batch if keep(raw)])
            if on_progress is not None:
                on_progress(len(batch))
    from_archive = sender.records
    await read_and_send(
        cfg,
        sender,
        f"kafkaorg-replay-{planned.run_id}",
        kafka_topic(planned.org, planned.topic),
        planned.ranges,
        on_progress,
        keep,
    )
    return planned.model_copy(
        update={**sender.counts(), "from_archive": from_archive, "payloads_restored": restored}
    )
