"""One archive run of an org: copy what is new in its archived topics to Parquet.

For each partition the run reads from where the manifest says the archive ends (or
Kafka's first offset, for a partition never archived) up to the high watermark it
found when it began; it cuts a file every ``archive_segment_records`` records and at
each UTC day, writes it, then records it in the manifest, one file at a time. A crash
anywhere repeats at most the file in progress: it is named by its first offset, so it
is written again under the same name, and the manifest ignores a range it has.

Files are announced (``archive.written`` on ``<org>.sys.audit``) once the manifest has
them, and marked announced after: a crash in between announces them again, with the
same record id. A file holding nothing but such announcements is not announced
(otherwise every run would have one new record to archive, forever).
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from kafkaorg.archive import manifest, payload_copies
from kafkaorg.archive.files import (
    ArchiveStorage,
    encode_segment,
    segment_path,
    sha256,
)
from kafkaorg.config import Settings
from kafkaorg.contracts.archive import ArchivedRange, ArchiveResult
from kafkaorg.envelope import Record, derived_id, utcnow
from kafkaorg.errors import ServiceUnavailableError
from kafkaorg.kafka import Outgoing, produce_and_wait
from kafkaorg.log_ranges import RangeReader, RawRecord, range_consumer, watermarks
from kafkaorg.names import audit_topic
from kafkaorg.redelivery import PartitionRange

log = logging.getLogger(__name__)

ARCHIVE_WRITTEN_RECORD_TYPE = "archive.written"


def _timestamp(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms is not None else None


class ArchiveWriter:
    """Archives orgs; one per process, its clients shared by every run."""

    def __init__(
        self,
        cfg: Settings,
        engine: Engine,
        sessions: sessionmaker[Session],
        admin: AdminClient,
        producer: Producer,
    ) -> None:
        self._cfg = cfg
        self._engine = engine
        self._sessions = sessions
        self._admin = admin
        self._producer = producer
        self.storage = ArchiveStorage(cfg.archive_location)

    def archive_org(self, org: str, heartbeat: Callable[[], None] | None = None) -> ArchiveResult:
        """Archive everything new in the org's archived topics; ``heartbeat`` after each
        file and while waiting for another run of the same org."""
        beat = heartbeat or (lambda: None)
        with self._sessions() as session:
            org_id = manifest.org_id_or_refuse(session, org)
            topics = manifest.archived_topics(session, org_id, org)
        result = ArchiveResult(org=org)
        consumer = range_consumer(self._cfg, f"kafkaorg-archive-{uuid.uuid4()}")
        try:
            with manifest.org_archive_lock(self._engine, org, on_wait=beat):
                for topic in topics:
                    self._archive_topic(consumer, org, org_id, topic, result, beat)
                self._announce(org, org_id)
        finally:
            consumer.close()
        return result

    def _partitions(self, name: str) -> list[int]:
        try:
            metadata = self._admin.list_topics(name, timeout=10).topics.get(name)
        except KafkaException as exc:
            raise ServiceUnavailableError(f"cannot read {name}: {exc}") from None
        if metadata is None or metadata.error is not None:
            return []  # not created yet (an org still starting), or deleted behind its back
        return sorted(metadata.partitions)

    def _archive_topic(
        self,
        consumer: Consumer,
        org: str,
        org_id: int,
        topic: manifest.ArchivedTopic,
        result: ArchiveResult,
        beat: Callable[[], None],
    ) -> None:
        name = topic.kafka_topic
        write = functools.partial(self._write, org, org_id, topic, result)
        try:
            ranges = []
            partitions = self._partitions(name)
            marks = watermarks(self._admin, name, partitions) if partitions else {}
            for partition in partitions:
                low, high = marks[partition]
                with self._sessions() as session:
                    end = manifest.archive_end(session, name, partition)
                start = low if end is None else end
                if start < low:
                    log.warning(
                        "%s[%d]: offsets %d..%d left Kafka before they were archived",
                        name,
                        partition,
                        start,
                        low - 1,
                    )
                    result.expired_unarchived += low - start
                    start = low
                if start < high:
                    ranges.append(PartitionRange(partition, start, high))
            reader = RangeReader(consumer, name, ranges)
            pending: dict[int, list[RawRecord]] = {r.partition: [] for r in ranges}
            starts = {r.partition: r.start for r in ranges}
            limit = self._cfg.archive_segment_records
            while not reader.done:
                for message in reader.next_batch():
                    raw = RawRecord.of(message)
                    batch = pending[raw.partition]
                    if batch and (len(batch) >= limit or raw.day_number != batch[0].day_number):
                        write(starts[raw.partition], raw.offset, batch)
                        starts[raw.partition] = raw.offset
                        pending[raw.partition] = batch = []
                        beat()
                    batch.append(raw)
            for r in ranges:  # the last file of each partition ends at the range's end
                if pending[r.partition]:
                    write(starts[r.partition], r.end, pending[r.partition])
                    beat()
        except KafkaException as exc:
            raise ServiceUnavailableError(f"cannot read {name}: {exc}") from None

    def _write(
        self,
        org: str,
        org_id: int,
        topic: manifest.ArchivedTopic,
        result: ArchiveResult,
        start: int,
        end: int,
        records: list[RawRecord],
    ) -> None:
        """Write one file, then record it: the manifest never names a file not written."""
        data, types, hashes = encode_segment(records)
        path = segment_path(org, topic.topic, records[0].partition, start, records[0].day)
        if hashes:
            with self._sessions() as session:
                payload_copies.keep(session, self.storage, org, org_id, hashes)
        self.storage.write(path, data)
        row = manifest.SegmentRow(
            topic=topic.topic,
            kafka_topic=topic.kafka_topic,
            partition=records[0].partition,
            start_offset=start,
            end_offset=end,
            records=len(records),
            first_timestamp=_timestamp(records[0].timestamp_ms),
            last_timestamp=_timestamp(records[-1].timestamp_ms),
            path=path,
            sha256=sha256(data),
            bytes=len(data),
            created_at=utcnow(),
        )
        only_announcements = types == {ARCHIVE_WRITTEN_RECORD_TYPE}
        with self._sessions() as session, session.begin():
            # A file of announcements only is not announced itself: that would never end.
            manifest.record_segment(session, org_id, row, announced=only_announcements)
        result.segments.append(
            ArchivedRange(
                topic=topic.topic,
                partition=row.partition,
                start=start,
                end=end,
                records=len(records),
                bytes=len(data),
                path=path,
            )
        )

    def _announce(self, org: str, org_id: int) -> None:
        """Tell every file not told yet (this run's, and any a crashed run left)."""
        with self._sessions() as session:
            pending = manifest.unannounced(session, org_id)
        if not pending:
            return
        rows = [row for _, row in pending]
        produce_and_wait(
            self._producer,
            [
                Outgoing(
                    audit_topic(org),
                    Record(
                        id=derived_id("archive", org, pending[0][0]),
                        type=ARCHIVE_WRITTEN_RECORD_TYPE,
                        org=org,
                        source="system:archive",
                        correlation_id=derived_id("archive", org),
                        timestamp=utcnow(),
                        payload={
                            "records": sum(r.records for r in rows),
                            "files": [
                                {
                                    "topic": r.topic,
                                    "partition": r.partition,
                                    "start_offset": r.start_offset,
                                    "end_offset": r.end_offset,
                                    "records": r.records,
                                    "path": r.path,
                                    "sha256": r.sha256,
                                }
                                for r in rows
                            ],
                        },
                    ),
                )
            ],
        )
        with self._sessions() as session, session.begin():
            manifest.mark_announced(session, [row_id for row_id, _ in pending])
