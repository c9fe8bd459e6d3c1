"""The archive's manifest in PostgreSQL: which offsets of which partition are in which file.

A partition's segments follow each other, ``end_offset`` of one the ``start_offset`` of
the next, so "where does the archive of partition P end" is one ``max`` and a run
resumes exactly there: no gap, no overlap. One run at a time per org (an advisory
lock), so two runs never write the same file.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import Engine, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from kafkaorg.db import Org, Topic
from kafkaorg.db.models import ArchiveSegment
from kafkaorg.errors import BadInputError
from kafkaorg.names import APPROVALS_TOPIC, AUDIT_TOPIC, approvals_topic, audit_topic
from kafkaorg.spec import TopicClass


class ArchivedTopic(BaseModel):
    topic: str
    kafka_topic: str


class SegmentRow(BaseModel):
    """One manifest row, as ``kafkaorg archive list`` shows it."""

    topic: str
    kafka_topic: str
    partition: int
    start_offset: int
    end_offset: int
    records: int
    first_timestamp: datetime | None
    last_timestamp: datetime | None
    path: str
    sha256: str
    bytes: int
    created_at: datetime


def org_id_or_refuse(session: Session, org: str) -> int:
    org_id = session.scalar(select(Org.id).where(Org.name == org))
    if org_id is None:
        raise BadInputError(f"unknown org {org!r} (see `kafkaorg org list`)")
    return org_id


def archived_topics(session: Session, org_id: int, org: str) -> list[ArchivedTopic]:
    """The org's audit and approvals topics, its audit-class topics and those marked
    ``archive: true``."""
    rows = session.execute(
        select(Topic.name, Topic.kafka_topic)
        .where(
            Topic.org_id == org_id,
            or_(Topic.topic_class == TopicClass.AUDIT.value, Topic.archive.is_(True)),
        )
        .order_by(Topic.name)
    ).all()
    return [
        ArchivedTopic(topic=AUDIT_TOPIC, kafka_topic=audit_topic(org)),
        ArchivedTopic(topic=APPROVALS_TOPIC, kafka_topic=approvals_topic(org)),
    ] + [ArchivedTopic(topic=name, kafka_topic=kafka) for name, kafka in rows]


def archive_end(session: Session, kafka_topic: str, partition: int) -> int | None:
    """The first offset of the partition not archived yet (None: nothing archived)."""
    end: int | None = session.scalar(
        select(func.max(ArchiveSegment.end_offset)).where(
            ArchiveSegment.kafka_topic == kafka_topic, ArchiveSegment.partition == partition
        )
    )
    return end


def record_segment(
    session: Session, org_id: int, row: SegmentRow, *, announced: bool = False
) -> None:
    """Add a written file to the manifest; the same range recorded twice is one row."""
    values = row.model_dump(exclude={"created_at"})
    session.execute(
        insert(ArchiveSegment)
        .values(org_id=org_id, announced=announced, **values)
        .on_conflict_do_nothing(constraint="uq_archive_segments_kafka_topic")
    )


def unannounced(session: Session, org_id: int) -> list[tuple[int, SegmentRow]]:
    """Files recorded but not told on the audit topic yet, with their row ids."""
    rows = session.scalars(
        select(ArchiveSegment)
        .where(ArchiveSegment.org_id == org_id, ArchiveSegment.announced.is_(False))
        .order_by(ArchiveSegment.id)
    ).all()
    return [(r.id, SegmentRow.model_validate(r, from_attributes=True)) for r in rows]


def mark_announced(session: Session, ids: list[int]) -> None:
    session.execute(update(ArchiveSegment).where(ArchiveSegment.id.in_(ids)).values(announced=True))


def segments(session: Session, org_id: int, topic: str | None = None) -> list[SegmentRow]:
    query = select(ArchiveSegment).where(ArchiveSegment.org_id == org_id)
    if topic is not None:
        query = query.where(ArchiveSegment.topic == topic)
    query = query.order_by(
        ArchiveSegment.topic, ArchiveSegment.partition, ArchiveSegment.start_offset
    )
    return [
        SegmentRow.model_validate(s, from_attributes=True) for s in session.scalars(query).all()
    ]


def _lock_key(org: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock``."""
    digest = hashlib.sha256(f"kafkaorg-archive:{org}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def org_archive_lock(
    engine: Engine, org: str, *, on_wait: Callable[[], None] | None = None
) -> Iterator[None]:
    """Hold the org's archive lock on a connection of its own for the block; waits for a
    run in progress, calling ``on_wait`` (a heartbeat) every second meanwhile. A process
    that dies lets go of it with its connection."""
    key = _lock_key(org)
    with engine.connect() as conn:
        while not conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}):
            conn.commit()
            if on_wait is not None:
                on_wait()
            time.sleep(1.0)
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()
