"""Re-deliver past records of an org's topic to one agent, on purpose.

Normal redelivery is absorbed by the agent's dedup window (same record id, no
second effect). A replay is deliberate: every record read gets the mark
``replay:<run id>`` (a fresh uuid per run), so the agent's workflow
deduplicates it on ``id#mark``: it passes once per run, never twice within one,
and the agent's outputs get new ids scoped by the mark and a ``kafkaorg.mark``
header, with the original record as their cause.

The range is read with a plain consumer (``assign``, no group commits), decoded
exactly as the bridge decodes (bare JSON is wrapped with the same derived id),
and signalled straight to the agent's workflow with signal-with-start, in the
bridge's size-bounded chunks, so a stopped agent is started. Values that are no
kafkaorg record (not JSON, bad envelope, wrong org, too large) are skipped and
counted: they went to the DLQ when first seen.

An agent that does not subscribe to the topic may still be fed it (a backfill):
``check_replay_target`` says so, and the caller decides whether to warn.

A run is four calls, so a caller can show each step: ``check_replay_target``,
``replay_partitions``, ``plan_replay`` (fixes the range and the run id) and
``deliver_replay``. Pure helpers (time parsing, range planning) are in
``kafkaorg/redelivery.py``; ``kafkaorg replay`` renders all of this.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime

from confluent_kafka import Consumer, KafkaException, TopicPartition
from pydantic import BaseModel
from sqlalchemy import select
from temporalio.client import Client

from bridge.mapping import SIGNAL_LIMIT_BYTES, Accepted, Origin, Poison, chunk_by_size, decode
from kafkaorg import client as service
from kafkaorg.config import Settings
from kafkaorg.contracts import Delivery
from kafkaorg.db import Agent, Org, Topic
from kafkaorg.db.models import Subscription
from kafkaorg.db.session import db_session
from kafkaorg.errors import BadInputError, ServiceUnavailableError
from kafkaorg.kafka import check_kafka, create_admin
from kafkaorg.log_ranges import RangeReader, RawRecord, range_consumer
from kafkaorg.names import kafka_topic
from kafkaorg.redelivery import PartitionRange, plan_range, replay_mark


class ReplayTarget(BaseModel):
    """What PostgreSQL says of the agent a replay feeds."""

    subscribed: bool
    """False: the agent does not read the topic; a replay to it is a backfill."""
    status: str


class ReplayOutcome(BaseModel):
    """One replay run: its planned ranges and, once delivered, what was sent."""

    run_id: str
    mark: str
    """``replay:<run id>``: the mark on every record of this run."""
    org: str
    topic: str
    agent: str
    ranges: list[PartitionRange]
    records: int = 0
    signals: int = 0
    duplicates: int = 0
    """Records whose id appeared earlier in the range: sent once per run."""
    skipped: dict[str, int] = {}
    """Values that are no kafkaorg record, by poison reason."""

    @property
    def total(self) -> int:
        """Offsets in the planned ranges (an upper bound on the records delivered)."""
        return sum(r.count for r in self.ranges)


def check_replay_target(cfg: Settings, org: str, topic: str, agent: str) -> ReplayTarget:
    """The org, topic and agent exist in PostgreSQL and the agent can still work."""
    with db_session(cfg) as session:
        org_id = session.scalar(select(Org.id).where(Org.name == org))
        if org_id is None:
            raise BadInputError(f"unknown org {org!r} (see `kafkaorg org list`)")
        topic_id = session.scalar(
            select(Topic.id).where(Topic.org_id == org_id, Topic.name == topic)
        )
        if topic_id is None:
            raise BadInputError(
                f"unknown topic {topic!r} in org {org!r} (see `kafkaorg topic list {org}`)"
            )
        row = session.execute(
            select(Agent.id, Agent.status).where(Agent.org_id == org_id, Agent.name == agent)
        ).first()
        if row is None:
            raise BadInputError(
                f"unknown agent {agent!r} in org {org!r} (see `kafkaorg agent list {org}`)"
            )
        agent_id, status = row
        if status in ("retired", "failed"):
            raise BadInputError(
                f"agent {agent!r} of org {org!r} is {status}: it cannot take a replay"
            )
        subscribed = (
            session.scalar(
                select(Subscription.agent_id).where(
                    Subscription.agent_id == agent_id, Subscription.topic_id == topic_id
                )
            )
            is not None
        )
        return ReplayTarget(subscribed=subscribed, status=status)


def replay_partitions(cfg: Settings, org: str, topic: str, partition: int | None) -> list[int]:
    """The partitions of the topic's Kafka topic to replay: all, or the one asked for."""
    check_kafka(cfg)
    name = kafka_topic(org, topic)
    metadata = create_admin(cfg).list_topics(name, timeout=10).topics.get(name)
    if metadata is None or metadata.error is not None:
        raise BadInputError(f"topic {topic!r} of org {org!r} has no Kafka topic {name}")
    partitions = sorted(metadata.partitions)
    if partition is not None:
        if partition not in partitions:
            raise BadInputError(f"{name} has no partition {partition} (it has {len(partitions)})")
        partitions = [partition]
    return partitions


def _kafka_error(name: str, exc: KafkaException) -> ServiceUnavailableError:
    return ServiceUnavailableError(f"cannot read {name}: {exc}")


def _consumer(cfg: Settings, run_id: str) -> Consumer:
    return range_consumer(cfg, f"kafkaorg-replay-{run_id}")


def _plan(
    consumer: Consumer,
    name: str,
    partitions: list[int],
    from_offset: int | None,
    since: datetime | None,
    until: int | datetime | None,
) -> list[PartitionRange]:
    """Each partition's ``[start, end)``, the end fixed now: later records are not replayed."""
    starts: dict[int, int | None] = {p: from_offset for p in partitions}
    if since is not None:
        wanted = [TopicPartition(name, p, int(since.timestamp() * 1000)) for p in partitions]
        for tp in consumer.offsets_for_times(wanted, timeout=10):
            starts[tp.partition] = tp.offset if tp.offset >= 0 else None
    until_times: dict[int, int | None] = {}
    if isinstance(until, datetime):
        wanted = [TopicPartition(name, p, int(until.timestamp() * 1000)) for p in partitions]
        for tp in consumer.offsets_for_times(wanted, timeout=10):
            until_times[tp.partition] = tp.offset if tp.offset >= 0 else None
    ranges = []
    for p in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
        ranges.append(
            plan_range(
                p,
                low,
                high,
                starts[p],
                until_offset=until if isinstance(until, int) else None,
                until_time_offset=until_times.get(p),
            )
        )
    return ranges


def plan_replay(
    cfg: Settings,
    org: str,
    topic: str,
    agent: str,
    partitions: list[int],
    *,
    from_offset: int | None = None,
    since: datetime | None = None,
    until: int | datetime | None = None,
) -> ReplayOutcome:
    """A new run (fresh run id) with each partition's range fixed now; nothing delivered.

    Args:
        cfg: settings (Kafka).
        org, topic, agent: what to replay to whom (``check_replay_target`` first).
        partitions: from ``replay_partitions``.
        from_offset: first offset of each partition; or
        since: records from this time (takes precedence over ``from_offset``).
        until: stop before this offset, or before this time.
    """
    name = kafka_topic(org, topic)
    run_id = str(uuid.uuid4())
    consumer = _consumer(cfg, run_id)
    try:
        ranges = _plan(consumer, name, partitions, from_offset, since, until)
    except KafkaException as exc:
        raise _kafka_error(name, exc) from None
    finally:
        consumer.close()
    return ReplayOutcome(
        run_id=run_id, mark=replay_mark(run_id), org=org, topic=topic, agent=agent, ranges=ranges
    )


def decode_raw(name: str, raw: RawRecord, max_bytes: int) -> Accepted | Poison:
    """Exactly what the bridge makes of this Kafka record (same wrapping, same derived id)."""
    return decode(
        Origin(name, raw.partition, raw.offset),
        raw.value,
        headers=raw.headers,
        timestamp_ms=raw.timestamp_ms,
        max_bytes=max_bytes,
    )


class ReplaySender:
    """Delivers records of one run: each id once, in the bridge's size-bounded chunks,
    marked with the run; counts what it sent and skipped."""

    def __init__(self, cfg: Settings, client: Client, planned: ReplayOutcome) -> None:
        self._cfg = cfg
        self._client = client
        self._planned = planned
        self._name = kafka_topic(planned.org, planned.topic)
        self._seen: set[str] = set()
        self.records = self.signals = self.duplicates = 0
        self.skipped: dict[str, int] = {}

    async def send(self, raws: list[RawRecord]) -> None:
        accepted: list[Accepted] = []
        for raw in raws:
            decoded = decode_raw(self._name, raw, self._cfg.max_record_bytes)
            if isinstance(decoded, Poison):
                self.skipped[decoded.reason] = self.skipped.get(decoded.reason, 0) + 1
            elif decoded.record.id in self._seen:
                self.duplicates += 1  # the same record twice in the log: once per run
            else:
                self._seen.add(decoded.record.id)
                accepted.append(decoded)
        for chunk in chunk_by_size(accepted, SIGNAL_LIMIT_BYTES):
            delivery = Delivery(
                records=[a.record for a in chunk],
                marks={a.record.id: self._planned.mark for a in chunk},
            )
            await service.deliver(self._client, self._planned.org, self._planned.agent, delivery)
            self.signals += 1
            self.records += len(chunk)

    def counts(self) -> dict[str, object]:
        return {
            "records": self.records,
            "signals": self.signals,
            "duplicates": self.duplicates,
            "skipped": self.skipped,
        }


async def read_and_send(
    cfg: Settings,
    sender: ReplaySender,
    group: str,
    name: str,
    ranges: list[PartitionRange],
    on_progress: Callable[[int], None] | None = None,
    keep: Callable[[RawRecord], bool] | None = None,
) -> None:
    """Read ``ranges`` of Kafka topic ``name`` and hand every batch to ``sender`` (only
    the records ``keep`` keeps, when given)."""
    consumer = range_consumer(cfg, group)
    try:
        reader = RangeReader(consumer, name, ranges)
        while not reader.done:
            try:
                messages = await asyncio.to_thread(reader.next_batch)
            except KafkaException as exc:
                raise _kafka_error(name, exc) from None
            raws = [RawRecord.of(m) for m in messages]
            await sender.send([r for r in raws if keep(r)] if keep is not None else raws)
            if on_progress is not None:
                on_progress(len(messages))
    finally:
        consumer.close()


async def deliver_replay(
    cfg: Settings,
    client: Client,
    planned: ReplayOutcome,
    *,
    on_progress: Callable[[int], None] | None = None,
) -> ReplayOutcome:
    """Read the planned ranges and deliver each record once, marked with this run.

    Args:
        cfg: settings (Kafka, the bridge's record size bound).
        client: Temporal, to signal-with-start the agent's workflow.
        planned: from ``plan_replay``.
        on_progress: called with the number of offsets read after each batch.

    Returns:
        ``planned`` with the counts of what was sent and skipped.
    """
    sender = ReplaySender(cfg, client, planned)
    await read_and_send(
        cfg,
        sender,
        f"kafkaorg-replay-{planned.run_id}",
        kafka_topic(planned.org, planned.topic),
        planned.ranges,
        on_progress,
    )
    return planned.model_copy(update=sender.counts())


__all__ = [
    "ReplayOutcome",
    "ReplaySender",
    "ReplayTarget",
    "check_replay_target",
    "deliver_replay",
    "plan_replay",
    "read_and_send",
    "replay_partitions",
]
