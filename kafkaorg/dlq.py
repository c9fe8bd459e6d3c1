"""An org's dead-letter queue (``<org>.sys.dlq``): read what went there, send records back.

Two kinds of records reach an org's DLQ:

- **poison** from the bridge (``kafkaorg.dead-letter`` records: not JSON, bad
  envelope, wrong org, too large, empty). They carry only a preview of the
  value (nothing for too-large), so they cannot be redriven: the fix is at the
  source (``kafkaorg send`` a corrected record).
- **failed work** from an agent (``dlq.reason`` agent-step-failed or
  agent-not-running): the original envelope itself, with ``dlq.error`` and
  ``dlq.agent`` headers. These can be redriven.

Redrive re-produces the original envelope, with the same ``id``, to its
original topic, with the header ``kafkaorg.redrive: <DLQ record id>`` (and
``kafkaorg.redrive.agents``, ``kafkaorg.redrive.from``). The bridge hands such a
record only to the agents named in ``kafkaorg.redrive.agents``, marked
``redrive:<DLQ record id>`` (``bridge/mapping.py``): the mark takes it past the
agent's dedup window once, so each DLQ entry has at most one effect however often
it is redriven.

``kafkaorg dlq list|redrive`` renders what these functions return.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Collection
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from pydantic import BaseModel
from sqlalchemy import select

from bridge.mapping import DEAD_LETTER_TYPE, REDRIVE_AGENTS_HEADER, REDRIVE_HEADER
from kafkaorg.config import Settings
from kafkaorg.db.models import Agent, Org, Subscription, Topic
from kafkaorg.db.session import db_session
from kafkaorg.envelope import Record
from kafkaorg.errors import BadInputError, ServiceUnavailableError
from kafkaorg.kafka import (
    Outgoing,
    check_kafka,
    client_config,
    create_admin,
    create_producer,
    produce_and_wait,
)
from kafkaorg.names import dlq_topic, kafka_topic, split_kafka_topic

HEADER_REDRIVE_FROM = "kafkaorg.redrive.from"
"""``<dlq topic>:<partition>:<offset>`` of the entry a redriven record came from."""
_READ_TIMEOUT_S = 60.0

_WHY_NOT = {
    "too-large": "the DLQ keeps no copy of a too-large value; send it again from its source",
    "empty": "the record had no value; there is nothing to redrive",
}
_PREVIEW_ONLY = (
    "the DLQ keeps only a preview of a {reason} value, which would fail again; "
    "fix it and send it again (e.g. `kafkaorg send`)"
)


class DlqEntry(BaseModel):
    """One record of ``<org>.sys.dlq``, as ``dlq list`` shows it."""

    id: str
    reason: str
    error: str | None = None
    topic: str | None = None
    """The original Kafka topic, when the DLQ record names it."""
    partition: int | None = None
    offset: int | None = None
    agent: str | None = None
    record_type: str | None = None
    when: datetime | None = None
    dlq_partition: int
    dlq_offset: int
    redrivable: bool
    not_redrivable_because: str | None = None


class DlqRead(BaseModel):
    """A DLQ entry and, for failed work, the envelope a redrive would send again."""

    entry: DlqEntry
    record: Record | None = None
    """The original envelope (failed work only)."""


class RedriveOutcome(BaseModel):
    id: str
    dlq_offset: int
    redriven: bool
    topic: str | None = None
    agents: list[str] = []
    reason: str | None = None
    """Why it was not redriven."""


class RedriveResult(BaseModel):
    """What one redrive did: an outcome per DLQ entry asked for, and the records produced."""

    outcomes: list[RedriveOutcome]
    produced: int
    """Records sent: one per (record id, topic), however many entries and agents share it."""

    @property
    def refused(self) -> list[RedriveOutcome]:
        return [o for o in self.outcomes if not o.redriven]


def _headers(message: Message) -> dict[str, str]:
    out: dict[str, str] = {}
    raw = message.headers() or []
    for key, value in raw.items() if isinstance(raw, dict) else raw:
        if isinstance(value, bytes):
            out[key] = value.decode("utf-8", errors="replace")
        elif value is not None:
            out[key] = value
    return out


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def parse_dlq_message(message: Message) -> DlqRead:
    """Classify a DLQ record: bridge poison (preview only) or an agent's original envelope."""
    headers = _headers(message)
    _, ts = message.timestamp()
    when = datetime.fromtimestamp(ts / 1000, UTC) if ts and ts > 0 else None
    position = {"dlq_partition": message.partition() or 0, "dlq_offset": message.offset() or 0}
    try:
        record = Record.from_kafka_value(message.value() or b"")
    except ValueError:
        reason = headers.get("dlq.reason", "unknown")
        entry = DlqEntry(
            id=f"{position['dlq_partition']}@{position['dlq_offset']}",
            reason=reason,
            error=headers.get("dlq.error"),
            topic=headers.get("dlq.topic"),
            when=when,
            redrivable=False,
            not_redrivable_because="not a kafkaorg record: nothing to redrive",
            **position,
        )
        return DlqRead(entry=entry)
    if record.type == DEAD_LETTER_TYPE:
        p = record.payload
        reason = str(p.get("reason") or headers.get("dlq.reason") or "unknown")
        entry = DlqEntry(
            id=record.id,
            reason=reason,
            error=str(p.get("error") or headers.get("dlq.error") or "") or None,
            topic=str(p["topic"]) if p.get("topic") else headers.get("dlq.topic"),
            partition=_int(p.get("partition", headers.get("dlq.partition"))),
            offset=_int(p.get("offset", headers.get("dlq.offset"))),
            when=when or record.timestamp,
            redrivable=False,
            not_redrivable_because=_WHY_NOT.get(reason, _PREVIEW_ONLY.format(reason=reason)),
            **position,
        )
        return DlqRead(entry=entry)
    entry = DlqEntry(
        id=record.id,
        reason=headers.get("dlq.reason", "unknown"),
        error=headers.get("dlq.error"),
        topic=headers.get("dlq.topic"),
        partition=_int(headers["dlq.partition"]) if "dlq.partition" in headers else None,
        offset=_int(headers["dlq.offset"]) if "dlq.offset" in headers else None,
        agent=headers.get("dlq.agent"),
        record_type=record.type,
        when=when,
        redrivable=True,
        **position,
    )
    return DlqRead(entry=entry, record=record)


def _require_dlq(cfg: Settings, org: str) -> int:
    check_kafka(cfg)
    name = dlq_topic(org)
    topic = create_admin(cfg).list_topics(timeout=10).topics.get(name)
    if topic is None or topic.error is not None:
        raise BadInputError(
            f"org {org!r} has no DLQ topic {name} (unknown org? see `kafkaorg org list`)"
        )
    return len(topic.partitions)


def read_dlq(cfg: Settings, org: str) -> list[DlqRead]:
    """Every record of the org's DLQ, from its beginning to its end as of now."""
    partitions = _require_dlq(cfg, org)
    name = dlq_topic(org)
    consumer = Consumer(
        {
            **client_config(cfg),
            "group.id": f"kafkaorg-dlq-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    try:
        ends: dict[int, int] = {}
        starts: list[TopicPartition] = []
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
            if high > low:
                ends[p] = high
                starts.append(TopicPartition(name, p, low))
        if not starts:
            return []
        consumer.assign(starts)
        out: list[DlqRead] = []
        deadline = time.monotonic() + _READ_TIMEOUT_S
        while ends:
            if time.monotonic() > deadline:
                raise ServiceUnavailableError(f"reading {name} timed out after {_READ_TIMEOUT_S}s")
            message = consumer.poll(0.5)
            if message is None:
                continue
            err = message.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise ServiceUnavailableError(f"cannot read {name}: {err.str()}")
            partition, offset = message.partition() or 0, message.offset() or 0
            if partition in ends and offset < ends[partition]:
                out.append(parse_dlq_message(message))
            if partition in ends and offset + 1 >= ends[partition]:
                del ends[partition]
        return sorted(out, key=lambda r: (r.entry.dlq_partition, r.entry.dlq_offset))
    except KafkaException as exc:
        raise ServiceUnavailableError(f"cannot read {name}: {exc}") from None
    finally:
        consumer.close()


def list_dlq(cfg: Settings, org: str, max_entries: int | None = None) -> list[DlqEntry]:
    """The org's DLQ entries, oldest first; with ``max_entries``, only the newest that many."""
    entries = [r.entry for r in read_dlq(cfg, org)]
    return entries[-max_entries:] if max_entries is not None else entries


def _subscriptions(cfg: Settings, org: str, agents: set[str]) -> dict[str, list[str]]:
    """Topic names each agent subscribes to, from PostgreSQL."""
    query = (
        select(Agent.name, Topic.name)
        .select_from(Subscription)
        .join(Agent, Subscription.agent_id == Agent.id)
        .join(Topic, Subscription.topic_id == Topic.id)
        .join(Org, Agent.org_id == Org.id)
        .where(Org.name == org, Agent.name.in_(sorted(agents)))
    )
    out: dict[str, list[str]] = {a: [] for a in agents}
    with db_session(cfg) as session:
        for agent, topic in session.execute(query):
            out[agent].append(topic)
    return out


def redrive_target(
    org: str, entry: DlqEntry, topic_option: str | None, subs: dict[str, list[str]]
) -> tuple[str | None, str | None]:
    """(Kafka topic to redrive to, or None with the reason).

    The entry's own topic wins; a record from another org's topic is refused, so a
    redrive never writes outside the org. Without one, ``topic_option`` (``--topic``),
    else the one topic the failing agent subscribes to now.
    """
    if entry.topic:
        try:
            entry_org, _ = split_kafka_topic(entry.topic)
        except ValueError:
            return None, f"its original topic {entry.topic!r} is not a topic of org {org!r}"
        if entry_org != org:
            return None, f"its original topic {entry.topic!r} is not a topic of org {org!r}"
        return entry.topic, None
    if topic_option:
        return kafka_topic(org, topic_option), None
    topics = subs.get(entry.agent or "", [])
    if len(topics) == 1:
        return kafka_topic(org, topics[0]), None
    if not topics:
        return None, (
            f"its original topic is unknown and agent {entry.agent!r} subscribes to no topic "
            "now; pass --topic"
        )
    return None, (
        f"its original topic is unknown (agent {entry.agent!r} subscribes to "
        f"{', '.join(sorted(topics))}); pass --topic"
    )


def plan_redrive(
    org: str, reads: list[DlqRead], topic: str | None, subs: dict[str, list[str]]
) -> tuple[list[RedriveOutcome], list[Outgoing]]:
    """An outcome per entry and the records to produce; no broker, no database.

    Args:
        org: the org whose DLQ ``reads`` came from.
        reads: the entries to redrive (``read_dlq``, perhaps filtered).
        topic: the org topic for entries that do not name their own (``--topic``).
        subs: topics each failing agent subscribes to (``_subscriptions``).
    """
    outcomes: list[RedriveOutcome] = []
    # One produce per (record id, topic): it reaches every subscriber, so several agents'
    # failures of one record need it once. The agents list is shared by the outcomes of
    # one batch, so each names every agent its record goes back to.
    batches: dict[tuple[str, str], tuple[Record, DlqEntry, list[str]]] = {}
    for read in reads:
        entry = read.entry
        outcome = RedriveOutcome(id=entry.id, dlq_offset=entry.dlq_offset, redriven=False)
        outcomes.append(outcome)
        if not entry.redrivable or read.record is None:
            outcome.reason = entry.not_redrivable_because
            continue
        target, why = redrive_target(org, entry, topic, subs)
        if target is None:
            outcome.reason = why
            continue
        outcome.redriven, outcome.topic = True, target
        key = (entry.id, target)
        if key not in batches:
            batches[key] = (read.record, entry, [])
        if entry.agent:
            batches[key][2].append(entry.agent)
        outcome.agents = batches[key][2]

    items = [
        Outgoing(
            target,
            record,
            (
                (REDRIVE_HEADER, entry.id.encode()),
                (REDRIVE_AGENTS_HEADER, ",".join(sorted(set(agents_))).encode()),
                (
                    HEADER_REDRIVE_FROM,
                    f"{dlq_topic(org)}:{entry.dlq_partition}:{entry.dlq_offset}".encode(),
                ),
            ),
        )
        for (_, target), (record, entry, agents_) in batches.items()
    ]
    return outcomes, items


def redrive_dlq(
    cfg: Settings,
    org: str,
    ids: Collection[str] | None = None,
    *,
    topic: str | None = None,
) -> RedriveResult:
    """Send failed work of the org's DLQ back to its original topic.

    Args:
        cfg: settings (Kafka for the DLQ and the produce, PostgreSQL for subscriptions).
        org: the org.
        ids: DLQ record ids (``DlqEntry.id``) to redrive; None for every entry, where the
            poison among them is refused, not an error.
        topic: the org topic to redrive to when an entry does not name its own.

    Raises:
        BadInputError: no DLQ topic, or an id that is not in it.
    """
    reads = read_dlq(cfg, org)
    if ids is not None:
        unknown = [i for i in ids if not any(r.entry.id == i for r in reads)]
        if unknown:
            raise BadInputError(f"no record with id {unknown[0]!r} in {dlq_topic(org)}")
        reads = [r for r in reads if r.entry.id in ids]
    agents = {r.entry.agent for r in reads if r.entry.redrivable and r.entry.agent}
    subs = _subscriptions(cfg, org, agents) if agents and not topic else {}
    outcomes, items = plan_redrive(org, reads, topic, subs)
    if items:
        check_kafka(cfg)
        produce_and_wait(create_producer(cfg), items)
    return RedriveResult(outcomes=outcomes, produced=len(items))


__all__ = [
    "HEADER_REDRIVE_FROM",
    "DlqEntry",
    "DlqRead",
    "RedriveOutcome",
    "RedriveResult",
    "list_dlq",
    "parse_dlq_message",
    "plan_redrive",
    "read_dlq",
    "redrive_dlq",
    "redrive_target",
]
