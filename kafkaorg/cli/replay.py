"""``kafkaorg replay ORG TOPIC --to AGENT``: re-deliver past records to one agent, on purpose.

Normal redelivery is absorbed by the agent's dedup window (same record id, no
second effect). A replay is deliberate: every record read gets the mark
``replay:<run id>`` (a fresh uuid per invocation), so the agent's workflow
deduplicates it on ``id#mark``: it passes once per run, never twice within one,
and the agent's outputs get new ids scoped by the mark and a ``kafkaorg.mark``
header, with the original record as their cause.

The range is read with a plain consumer (``assign``, no group commits), decoded
exactly as the bridge decodes (bare JSON is wrapped with the same derived id),
and signalled straight to the agent's workflow with signal-with-start, in the
bridge's size-bounded chunks, so a stopped agent is started. Values that are no
kafkaorg record (not JSON, bad envelope, wrong org, too large) are skipped and
counted: they went to the DLQ when first seen.

An agent that does not subscribe to the topic may still be fed it (a backfill);
the command warns but goes on.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

import typer
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import select

from bridge.mapping import Accepted, Origin, Poison, chunk_by_size, decode
from bridge.service import SIGNAL_LIMIT_BYTES
from kafkaorg import client as service
from kafkaorg.cli._common import (
    check_org_name,
    console,
    db_session,
    err_console,
    print_json,
    run,
    settings,
)
from kafkaorg.config import Settings
from kafkaorg.contracts import Delivery
from kafkaorg.db import Agent, Org, Topic
from kafkaorg.db.models import Subscription
from kafkaorg.errors import BadInputError, ServiceUnavailableError
from kafkaorg.kafka import check_kafka, client_config, create_admin
from kafkaorg.names import (
    AGENT_NAME_RE,
    TOPIC_NAME_RE,
    kafka_topic,
)
from kafkaorg.replaying import PartitionRange, parse_time, parse_until, plan_range, replay_mark
from kafkaorg.temporal import connect_temporal

_READ_TIMEOUT_S = 120.0
"""No progress for this long while records remain: the broker is gone."""
_PROGRESS_FROM = 1000
"""Ranges at least this large show a progress bar (on stderr)."""
_CONSUME_BATCH = 500


@dataclass(frozen=True)
class _Target:
    subscribed: bool
    status: str


@dataclass
class ReplayOutcome:
    run_id: str
    org: str
    topic: str
    agent: str
    ranges: list[PartitionRange]
    records: int = 0
    signals: int = 0
    duplicates: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def mark(self) -> str:
        return replay_mark(self.run_id)

    def as_json(self) -> dict[str, object]:
        return {
            "run_id": self.run_id,
            "mark": self.mark,
            "org": self.org,
            "topic": self.topic,
            "agent": self.agent,
            "ranges": [
                {"partition": r.partition, "start": r.start, "end": r.end} for r in self.ranges
            ],
            "records": self.records,
            "signals": self.signals,
            "duplicates": self.duplicates,
            "skipped": dict(self.skipped),
        }


def _check_target(cfg: Settings, org: str, topic: str, agent: str) -> _Target:
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
        return _Target(subscribed=subscribed, status=status)


def _kafka_error(name: str, exc: KafkaException) -> ServiceUnavailableError:
    return ServiceUnavailableError(f"cannot read {name}: {exc}")


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


async def replay_records(
    cfg: Settings,
    outcome: ReplayOutcome,
    consumer: Consumer,
    *,
    show_progress: bool,
) -> ReplayOutcome:
    """Read the planned ranges and deliver each record once, marked with this run."""
    name = kafka_topic(outcome.org, outcome.topic)
    client = await connect_temporal(cfg)
    mark = outcome.mark
    reader = _Reader(consumer, name, outcome.ranges)
    seen: set[str] = set()
    total = sum(r.count for r in outcome.ranges)
    progress = Progress(
        TextColumn("replaying {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not show_progress,
    )
    with progress:
        bar = progress.add_task(name, total=total)
        while not reader.done:
            try:
                messages = await asyncio.to_thread(reader.next_batch)
            except KafkaException as exc:
                raise _kafka_error(name, exc) from None
            accepted: list[Accepted] = []
            for message in messages:
                decoded = _decode(message, cfg.max_record_bytes)
                if isinstance(decoded, Poison):
                    outcome.skipped[decoded.reason] += 1
                elif decoded.record.id in seen:
                    outcome.duplicates += 1  # the same record twice in the log: once per run
                else:
                    seen.add(decoded.record.id)
                    accepted.append(decoded)
            for chunk in chunk_by_size(accepted, SIGNAL_LIMIT_BYTES):
                delivery = Delivery(
                    records=[a.record for a in chunk], marks={a.record.id: mark for a in chunk}
                )
                await service.deliver(client, outcome.org, outcome.agent, delivery)
                outcome.signals += 1
                outcome.records += len(chunk)
            progress.advance(bar, len(messages))
    return outcome


def replay(
    org: Annotated[str, typer.Argument(help="Org name.")],
    topic: Annotated[str, typer.Argument(help="Topic of the org whose records to replay.")],
    to: Annotated[str, typer.Option("--to", help="The agent that receives the records again.")],
    from_offset: Annotated[
        int | None,
        typer.Option("--from-offset", min=0, help="First offset (in each partition) to replay."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Replay records from this time: ISO-8601 (UTC if no zone) or 10m, 2h."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="Stop before this offset (a number) or before this time."),
    ] = None,
    partition: Annotated[
        int | None, typer.Option(min=0, help="Only this partition (default: all).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Deliver past records of ORG.TOPIC to one agent again, deliberately.

    Each run gets a fresh id: the agent processes every record once more per run
    (outputs with new ids and the header kafkaorg.mark: replay:<run id>), and
    never twice within one run. Records appended after the command starts are
    not part of the range.
    """
    check_org_name(org)
    if not TOPIC_NAME_RE.match(topic):
        raise BadInputError(
            f"topic name {topic!r} is not valid (it must match {TOPIC_NAME_RE.pattern}; "
            "sys topics cannot be replayed, see `kafkaorg dlq redrive`)"
        )
    if not AGENT_NAME_RE.match(to):
        raise BadInputError(
            f"agent name {to!r} is not valid (it must match {AGENT_NAME_RE.pattern})"
        )
    if (from_offset is None) == (since is None):
        raise BadInputError("say where to start: --from-offset N or --since TIME (one of them)")
    now = datetime.now(UTC)
    try:
        since_time = parse_time(since, now) if since is not None else None
        until_value = parse_until(until, now) if until is not None else None
    except ValueError as exc:
        raise BadInputError(f"--since/--until: {exc}") from None

    cfg = settings()
    target = _check_target(cfg, org, topic, to)
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
    if not target.subscribed:
        err_console.print(
            f"warning: agent {to!r} does not subscribe to {topic!r}; replaying to it anyway",
            highlight=False,
            soft_wrap=True,
        )
    if target.status == "paused":
        err_console.print(
            f"warning: agent {to!r} is paused: the records wait in its inbox until it resumes",
            highlight=False,
            soft_wrap=True,
        )

    run_id = str(uuid.uuid4())
    consumer = Consumer(
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
    try:
        try:
            ranges = _plan(consumer, name, partitions, from_offset, since_time, until_value)
        except KafkaException as exc:
            raise _kafka_error(name, exc) from None
        outcome = ReplayOutcome(run_id=run_id, org=org, topic=topic, agent=to, ranges=ranges)
        total = sum(r.count for r in ranges)
        if total == 0:
            if json_output:
                print_json(outcome.as_json())
            else:
                console.print(
                    f"nothing to replay in {name} for that range", highlight=False, soft_wrap=True
                )
            return
        if not json_output:
            console.print(
                f"replay {run_id}: up to {total} record(s) of {name} → agent {to} "
                f"(mark {outcome.mark})",
                highlight=False,
                soft_wrap=True,
            )
        show = not json_output and total >= _PROGRESS_FROM
        run(replay_records(cfg, outcome, consumer, show_progress=show))
    finally:
        consumer.close()

    if json_output:
        print_json(outcome.as_json())
        return
    skipped = sum(outcome.skipped.values())
    details = ", ".join(f"{n} {reason}" for reason, n in sorted(outcome.skipped.items()))
    console.print(
        f"replayed {outcome.records} record(s) to {to} in {outcome.signals} signal(s)"
        + (f"; skipped {skipped} that are no kafkaorg record ({details})" if skipped else "")
        + (f"; {outcome.duplicates} repeated id(s) sent once" if outcome.duplicates else ""),
        highlight=False,
        soft_wrap=True,
    )
