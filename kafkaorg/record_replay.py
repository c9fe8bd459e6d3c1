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
import time
import uuid
from collections.abc import Callable
from datetime import datetime

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
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
from kafkaorg.kafka import check_kafka, client_config, create_admin
from kafkaorg.names import kafka_topic
from kafkaorg.redelivery import PartitionRange, plan_range, replay_mark

_READ_TIMEOUT_S = 120.0
"""No progress for this long while records remain: the broker is gone."""
_CONSUME_BATCH = 500


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
    """A consumer of the run's own group that never commits: assignments only."""
    return Consumer(
        client_config(
            cfg,
            **{
                "group.id": f"kafkaorg-replay-{run_id}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
            },
        )
    )


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


def _decode(message: Message, max_bytes: int) -> Accepted | Poison:
    """Exactly what the bridge makes of this Kafka record (same wrapping, same derived id)."""
    _, ts = message.timestamp()
    return decode(
        Origin(message.topic() or "", message.partition() or 0, message.offset() or 0),
        message.value(),
        headers=message.headers(),
        timestamp_ms=ts if ts and ts > 0 else None,
        max_bytes=max_bytes,
    )


class _Reader:
    """Reads the planned ranges once, in batches, and stops at each range's end."""

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
        """Messages inside the ranges; empty means none arrived within the poll."""
        deadline = time.monotonic() + _READ_TIMEOUT_S
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
                    f"reading {self._name} made no progress for {_READ_TIMEOUT_S:.0f}s"
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
    name = kafka_topic(planned.org, planned.topic)
    records = signals = duplicates = 0
    skipped: dict[str, int] = {}
    seen: set[str] = set()
    consumer = _consumer(cfg, planned.run_id)
    try:
        reader = _Reader(consumer, name, planned.ranges)
        while not reader.done:
            try:
                messages = await asyncio.to_thread(reader.next_batch)
            except KafkaException as exc:
                raise _kafka_error(name, exc) from None
            accepted: list[Accepted] = []
            for message in messages:
                decoded = _decode(message, cfg.max_record_bytes)
                if isinstance(decoded, Poison):
                    skipped[decoded.reason] = skipped.get(decoded.reason, 0) + 1
                elif decoded.record.id in seen:
                    duplicates += 1  # the same record twice in the log: once per run
                else:
                    seen.add(decoded.record.id)
                    accepted.append(decoded)
            for chunk in chunk_by_size(accepted, SIGNAL_LIMIT_BYTES):
                delivery = Delivery(
                    records=[a.record for a in chunk],
                    marks={a.record.id: planned.mark for a in chunk},
                )
                await service.deliver(client, planned.org, planned.agent, delivery)
                signals += 1
                records += len(chunk)
            if on_progress is not None:
                on_progress(len(messages))
    finally:
        consumer.close()
    return planned.model_copy(
        update={
            "records": records,
            "signals": signals,
            "duplicates": duplicates,
            "skipped": skipped,
        }
    )


__all__ = [
    "ReplayOutcome",
    "ReplayTarget",
    "check_replay_target",
    "deliver_replay",
    "plan_replay",
    "replay_partitions",
]
