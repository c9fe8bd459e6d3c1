"""Put records on an org's topic and read them back (``kafkaorg send`` and ``kafkaorg tail``).

Both check that the Kafka topic exists first: a producer or consumer of a missing topic
waits (or creates it) instead of failing, so a typo would hang rather than say so.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Generator

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, TopicPartition
from pydantic import BaseModel, JsonValue, ValidationError

from kafkaorg.config import Settings
from kafkaorg.db.session import db_session
from kafkaorg.envelope import Record, new_record
from kafkaorg.errors import BadInputError
from kafkaorg.kafka import (
    Outgoing,
    check_kafka,
    client_config,
    create_admin,
    create_producer,
    produce_and_wait,
)
from kafkaorg.names import kafka_topic
from kafkaorg.payloads import offload_all, payload_bytes, resolve


def require_topic(cfg: Settings, name: str) -> int:
    """Partitions of an existing topic; a missing one is bad input, not a hang."""
    check_kafka(cfg)
    metadata = create_admin(cfg).list_topics(timeout=10)
    topic = metadata.topics.get(name)
    if topic is None or topic.error is not None:
        raise BadInputError(
            f"topic {name!r} does not exist (is the org started? `kafkaorg org start`)"
        )
    return len(topic.partitions)


def send_records(
    cfg: Settings,
    org: str,
    topic: str,
    *,
    type: str,
    payload: dict[str, JsonValue],
    correlation_id: str | None = None,
    source: str = "user:cli",
    count: int = 1,
) -> list[Record]:
    """Produce ``count`` new records (each its own id) to the org's topic, acknowledged.

    Raises:
        BadInputError: the topic does not exist, or a field fails the envelope's
            validation (named as the ``--option`` it came from).
    """
    name = kafka_topic(org, topic)
    require_topic(cfg, name)
    try:
        records = [
            new_record(
                org=org, type=type, source=source, payload=payload, correlation_id=correlation_id
            )
            for _ in range(count)
        ]
    except ValidationError as exc:
        first = exc.errors()[0]
        raise BadInputError(f"--{first['loc'][0]}: {first['msg']}") from None
    if any(len(payload_bytes(r)) > cfg.payload_ref_bytes for r in records):
        with db_session(cfg) as session:
            records = offload_all(session, records, cfg.payload_ref_bytes)
            session.commit()  # stored before any record points at it
    produce_and_wait(create_producer(cfg), (Outgoing(name, r) for r in records))
    return records


class TailedRecord(BaseModel):
    """One Kafka record of a tailed topic: its raw value and, if it is one, its envelope."""

    partition: int
    offset: int
    value: bytes | None
    record: Record | None = None
    """None: the value is no kafkaorg envelope (raw bytes, bare JSON)."""
    resolved: bool = False
    """The record's payload was stored by reference and ``record`` has it in place."""


def tail_records(
    cfg: Settings,
    org: str,
    topic: str,
    *,
    from_beginning: bool = False,
    follow: bool = False,
    idle_timeout: float = 0.0,
    max_records: int | None = None,
) -> Generator[TailedRecord, None, None]:
    """Records of an org's topic (``sys.audit``, ``sys.dlq`` too), as they are read.

    The topic is checked at once (a missing one raises ``BadInputError`` here, not at the
    first ``next``). Read committed, from a group of its own that commits nothing, so
    tailing never moves anyone's offsets. Without ``follow``, the iterator ends once every
    partition reached its end; with it, after ``idle_timeout`` seconds without a record (0:
    never). Exhaust or close the iterator to close its consumer.
    """
    name = kafka_topic(org, topic)
    partitions = require_topic(cfg, name)
    return _tail(cfg, name, partitions, from_beginning, follow, idle_timeout, max_records)


def _tail(
    cfg: Settings,
    name: str,
    partitions: int,
    from_beginning: bool,
    follow: bool,
    idle_timeout: float,
    max_records: int | None,
) -> Generator[TailedRecord, None, None]:
    consumer = Consumer(
        {
            **client_config(cfg),
            "group.id": f"kafkaorg-tail-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )
    try:
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        consumer.assign([TopicPartition(name, p, start) for p in range(partitions)])
        at_end: set[int] = set()
        seen = 0
        idle_since = time.monotonic()
        while True:
            message = consumer.poll(0.5)
            if message is None:
                if follow and idle_timeout and time.monotonic() - idle_since > idle_timeout:
                    return
                continue
            err = message.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition() or 0)
                    if not follow and len(at_end) >= partitions:
                        return
                    continue
                raise BadInputError(f"cannot read {name}: {err.str()}")
            idle_since = time.monotonic()
            at_end.discard(message.partition() or 0)
            value = message.value()
            try:
                record: Record | None = Record.from_kafka_value(value or b"")
            except ValueError:
                record = None
            resolved = record is not None and record.payload_ref is not None
            if record is not None and resolved:
                with db_session(cfg) as session:
                    record = resolve(session, record)
            yield TailedRecord(
                partition=message.partition() or 0,
                offset=message.offset() or 0,
                value=value,
                record=record,
                resolved=resolved,
            )
            seen += 1
            if max_records is not None and seen >= max_records:
                return
    finally:
        consumer.close()


__all__ = ["TailedRecord", "require_topic", "send_records", "tail_records"]
