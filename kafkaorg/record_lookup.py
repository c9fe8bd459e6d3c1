"""Reading an org's records for people: the live feed of all its topics, one record by
its Kafka position, and the chain of records that caused it and that it caused.

Every reader here uses a consumer of its own that commits nothing (read committed), so
looking never moves the bridge's offsets. The causation chain comes from a bounded scan
of the newest records of the org's topics: a link older than the scan window is shown as
not found, never guessed.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Generator
from datetime import UTC, datetime
from typing import Any, cast

from confluent_kafka import OFFSET_END, Consumer, KafkaError, Message, TopicPartition
from pydantic import BaseModel

from kafkaorg.config import Settings
from kafkaorg.envelope import (
    HEADER_CORRELATION_ID,
    HEADER_SOURCE,
    HEADER_TYPE,
    Record,
)
from kafkaorg.errors import BadInputError, ServiceUnavailableError
from kafkaorg.kafka import client_config, create_admin
from kafkaorg.names import kafka_topic

SCAN_PER_PARTITION = 2_000
"""How far back, per partition, the causation chain looks."""


class RecordFilter(BaseModel):
    """What the live view shows: every field is an exact match except ``text``."""

    topic: str | None = None
    type: str | None = None
    source: str | None = None
    correlation_id: str | None = None
    text: str | None = None
    """A substring of the raw value (case-insensitive)."""

    def matches_message(self, org: str, message: Message) -> bool:
        """``matches`` on a raw Kafka message, without parsing its value: the envelope's
        type, source and correlation id travel as headers too (envelope.py). A message
        without them (an external producer's) is parsed."""
        if self.topic and (message.topic() or "") != f"{org}.{self.topic}":
            return False
        value = message.value() or b""
        if self.text and self.text.lower().encode() not in value.lower():
            return False
        if not (self.type or self.source or self.correlation_id):
            return True
        headers = dict(cast(list[tuple[str, Any]], message.headers() or []))
        wanted = {
            HEADER_TYPE: self.type,
            HEADER_SOURCE: self.source,
            HEADER_CORRELATION_ID: self.correlation_id,
        }
        if all(key in headers for key, want in wanted.items() if want):
            return all(headers[key] == want.encode() for key, want in wanted.items() if want)
        return self.matches(to_org_record(org, message))

    def matches(self, item: OrgRecord) -> bool:
        record = item.record
        if self.topic and item.topic != self.topic:
            return False
        if self.type and (record is None or record.type != self.type):
            return False
        if self.source and (record is None or record.source != self.source):
            return False
        if self.correlation_id and (record is None or record.correlation_id != self.correlation_id):
            return False
        return not (self.text and self.text.lower() not in item.raw.lower())


class OrgRecord(BaseModel):
    """One Kafka record of an org's topic, where it sits and, if it is one, its envelope."""

    topic: str
    """The org's name for the topic (``tasks``, ``sys.audit``)."""
    partition: int
    offset: int
    kafka_timestamp: datetime | None = None
    headers: dict[str, str] = {}
    raw: str
    """The value as text (undecodable bytes replaced)."""
    record: Record | None = None
    """None: the value is no kafkaorg envelope."""

    @property
    def position(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


class CausationChain(BaseModel):
    """What caused a record (oldest first) and what it caused (direct effects)."""

    causes: list[OrgRecord]
    effects: list[OrgRecord]
    cause_missing: str | None = None
    """The causation id the scan could not find (older than the window, or external)."""
    scanned: int


def org_kafka_topics(cfg: Settings, org: str, timeout: float = 10.0) -> dict[str, int]:
    """Kafka topic → partitions of every topic of the org that exists in Kafka."""
    try:
        metadata = create_admin(cfg).list_topics(timeout=timeout)
    except Exception as exc:
        raise ServiceUnavailableError(f"Kafka at {cfg.kafka_bootstrap}: {exc}") from None
    prefix = f"{org}."
    return {
        name: len(topic.partitions)
        for name, topic in sorted(metadata.topics.items())
        if name.startswith(prefix) and topic.partitions
    }


def _consumer(cfg: Settings) -> Consumer:
    return Consumer(
        {
            **client_config(cfg),
            "group.id": f"kafkaorg-console-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )


def to_org_record(org: str, message: Message) -> OrgRecord:
    value = message.value() or b""
    raw = value.decode(errors="replace")
    try:
        record: Record | None = Record.from_kafka_value(value)
    except ValueError:
        record = None
    kind, stamp = cast(tuple[int, int], message.timestamp())
    headers = {
        key: (val.decode(errors="replace") if isinstance(val, bytes) else str(val))
        for key, val in cast(list[tuple[str, Any]], message.headers() or [])
    }
    return OrgRecord(
        topic=(message.topic() or "").removeprefix(f"{org}."),
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        kafka_timestamp=datetime.fromtimestamp(stamp / 1000, UTC) if kind and stamp > 0 else None,
        headers=headers,
        raw=raw,
        record=record,
    )


def follow_org(
    cfg: Settings, org: str, *, backlog: int = 20, poll_s: float = 0.2
) -> Generator[list[Message], None, None]:
    """Batches of new Kafka messages of all the org's topics, as they arrive (an empty
    batch when nothing came within ``poll_s``, so a caller can stop between batches).

    Raw messages: a live view parses only the few it shows (``to_org_record``). Starts
    ``backlog`` records before the end of each partition, so a view opens with some
    context. Topics created later are picked up every few seconds.
    """
    consumer = _consumer(cfg)
    assigned: set[str] = set()

    def assign_new() -> None:
        topics = org_kafka_topics(cfg, org)
        new = [name for name in topics if name not in assigned]
        if not new:
            return
        parts = []
        for name in new:
            for p in range(topics[name]):
                low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=5)
                start = max(low, high - backlog) if backlog else OFFSET_END
                parts.append(TopicPartition(name, p, start))
        consumer.incremental_assign(parts)
        assigned.update(new)

    try:
        assign_new()
        checked = time.monotonic()
        while True:
            if time.monotonic() - checked > 5.0:
                assign_new()
                checked = time.monotonic()
            messages = consumer.consume(500, poll_s)
            yield [m for m in messages if m.error() is None]
    finally:
        consumer.close()


def read_record(cfg: Settings, org: str, topic: str, partition: int, offset: int) -> OrgRecord:
    """The record at a Kafka position of an org's topic; BadInputError if there is none."""
    name = kafka_topic(org, topic)
    topics = org_kafka_topics(cfg, org)
    if name not in topics:
        raise BadInputError(f"org {org!r} has no topic {topic!r} in Kafka")
    if not 0 <= partition < topics[name]:
        raise BadInputError(f"topic {topic!r} has no partition {partition}")
    consumer = _consumer(cfg)
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=5)
        if not low <= offset < high:
            raise BadInputError(
                f"{topic}/{partition} has no offset {offset} (it holds {low}..{high - 1})"
            )
        consumer.assign([TopicPartition(name, partition, offset)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            if (message.offset() or 0) >= offset:
                if message.offset() != offset:
                    break  # a transaction marker or an aborted record sits there
                return to_org_record(org, message)
    finally:
        consumer.close()
    raise BadInputError(f"{topic}/{partition}/{offset} is no readable record (a marker?)")


def recent_records(
    cfg: Settings, org: str, per_partition: int = SCAN_PER_PARTITION
) -> list[OrgRecord]:
    """The newest ``per_partition`` records of each of the org's partitions."""
    topics = org_kafka_topics(cfg, org)
    consumer = _consumer(cfg)
    out: list[OrgRecord] = []
    try:
        parts = []
        for name, count in topics.items():
            for p in range(count):
                low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=5)
                if high > low:
                    parts.append(TopicPartition(name, p, max(low, high - per_partition)))
        if not parts:
            return []
        consumer.assign(parts)
        remaining = {(tp.topic, tp.partition) for tp in parts}
        deadline = time.monotonic() + 20
        while remaining and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                err = message.error()
                key = (message.topic() or "", message.partition() or 0)
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        remaining.discard(key)
                    continue
                out.append(to_org_record(org, message))
    finally:
        consumer.close()
    return out


def causation_chain(
    target: OrgRecord, candidates: list[OrgRecord], max_depth: int = 32
) -> CausationChain:
    """Causes of ``target`` up the causation ids, and the records it caused, among
    ``candidates`` (``recent_records``)."""
    by_id: dict[str, OrgRecord] = {}
    for item in candidates:
        if item.record is not None and not item.topic.startswith("sys."):
            by_id.setdefault(item.record.id, item)
    causes: list[OrgRecord] = []
    missing: str | None = None
    current = target.record
    while current is not None and current.causation_id and len(causes) < max_depth:
        found = by_id.get(current.causation_id)
        if found is None:
            missing = current.causation_id
            break
        causes.append(found)
        current = found.record
    effects = []
    if target.record is not None:
        effects = [
            item
            for item in candidates
            if item.record is not None
            and item.record.causation_id == target.record.id
            and not item.topic.startswith("sys.")
        ]
    return CausationChain(
        causes=list(reversed(causes)),
        effects=effects,
        cause_missing=missing,
        scanned=len(candidates),
    )


def pretty_json(text: str) -> str:
    """Indented JSON when ``text`` is JSON, else ``text`` unchanged."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text
