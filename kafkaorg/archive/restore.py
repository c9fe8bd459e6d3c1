"""Restore an archived topic into a Kafka topic: every archived record, byte for byte.

Key, value, headers and timestamp are the archive's; each record goes to the partition
it was in. The target must be empty, so running a restore twice is refused rather
than doubling the records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition
from pydantic import BaseModel

from kafkaorg.archive import manifest, payload_copies
from kafkaorg.archive.files import ArchiveStorage
from kafkaorg.archive.reader import read_range
from kafkaorg.config import Settings
from kafkaorg.db.session import db_session
from kafkaorg.errors import BadInputError, ServiceUnavailableError
from kafkaorg.kafka import create_admin, producer_config
from kafkaorg.log_ranges import range_consumer
from kafkaorg.names import kafka_topic


class RestoreOutcome(BaseModel):
    org: str
    topic: str
    to_topic: str
    records: int
    files: int


def _partitions_and_size(cfg: Settings, name: str) -> tuple[int, int]:
    """How many partitions the topic has and how many records are in them."""
    metadata = create_admin(cfg).list_topics(name, timeout=10).topics.get(name)
    if metadata is None or metadata.error is not None:
        raise BadInputError(f"no Kafka topic {name} to restore into")
    consumer = range_consumer(cfg, "kafkaorg-restore-check")
    try:
        size = 0
        for p in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
            size += high - low
    finally:
        consumer.close()
    return len(metadata.partitions), size


def archived_partitions(cfg: Settings, org: str, topic: str) -> list[manifest.SegmentRow]:
    with db_session(cfg) as session:
        org_id = manifest.org_id_or_refuse(session, org)
        rows = manifest.segments(session, org_id, topic)
    if not rows:
        raise BadInputError(
            f"nothing of {kafka_topic(org, topic)} is archived (see `kafkaorg archive list {org}`)"
        )
    return rows


def restore(
    cfg: Settings,
    org: str,
    topic: str,
    to_topic: str,
    *,
    on_progress: Callable[[int], None] | None = None,
) -> RestoreOutcome:
    """Produce every archived record of ``topic`` into the org's empty ``to_topic``."""
    rows = archived_partitions(cfg, org, topic)
    target = kafka_topic(org, to_topic)
    partitions, size = _partitions_and_size(cfg, target)
    if size:
        raise BadInputError(f"{target} already holds {size} record(s): restore into an empty topic")
    needed = max(r.partition for r in rows) + 1
    if partitions < needed:
        raise BadInputError(
            f"{target} has {partitions} partition(s); the archive of {topic} needs {needed}"
        )
    storage = ArchiveStorage(cfg.archive_location)
    with db_session(cfg) as session:
        org_id = manifest.org_id_or_refuse(session, org)
        payload_copies.put_back(session, storage, org, org_id, rows)  # before anyone reads them
        session.commit()
    producer = Producer(producer_config(cfg))
    failures: list[KafkaError] = []

    def delivered(err: KafkaError | None, _: Message) -> None:
        if err is not None:
            failures.append(err)

    records = 0
    try:
        for p in sorted({r.partition for r in rows}):
            for batch in read_range(storage, rows, p, 0, 2**63 - 1):
                for raw in batch:
                    while True:
                        try:
                            producer.produce(
                                target,
                                value=raw.value,
                                key=raw.key,
                                partition=p,
                                headers=cast(list[tuple[str, str | bytes | None]], raw.headers),
                                timestamp=raw.timestamp_ms or 0,
                                on_delivery=delivered,
                            )
                            break
                        except BufferError:  # the local queue is full: let it drain
                            producer.poll(0.5)
                    producer.poll(0)
                records += len(batch)
                if on_progress is not None:
                    on_progress(len(batch))
        if producer.flush(60) or failures:
            reason = failures[0].str() if failures else "not all records were delivered in 60s"
            raise ServiceUnavailableError(f"restoring into {target}: {reason}")
    except KafkaException as exc:
        raise ServiceUnavailableError(f"restoring into {target}: {exc}") from None
    return RestoreOutcome(org=org, topic=topic, to_topic=to_topic, records=records, files=len(rows))
