"""Large payloads by reference: stored once per org in PostgreSQL, addressed by SHA-256.

A record whose payload's JSON is over ``KAFKAORG_PAYLOAD_REF_BYTES`` travels with an
empty payload and a ``payload_ref`` (hash and size); Kafka records and Temporal payloads
stay small. Whoever needs the payload (an agent's step, the bridge's schema check,
``tail``, the console) calls ``resolve``; whoever produces one calls ``offload``. The
same payload twice is one row (``referenced_at`` moves on), so a chain of agents copying
a 20 MB payload stores it once. ``collect`` deletes blobs no record has pointed at for
longer than the longest topic retention.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from kafkaorg.config import Settings
from kafkaorg.db.models import Org, PayloadBlob
from kafkaorg.db.session import db_session
from kafkaorg.envelope import PayloadRef, Record
from kafkaorg.errors import KafkaorgError
from kafkaorg.spec import TOPIC_CLASS_CONFIGS, TopicClass


class PayloadMissingError(KafkaorgError):
    """A record points at a payload that is not stored (collected, or another org's)."""


def payload_bytes(record: Record) -> bytes:
    return json.dumps(record.payload, separators=(",", ":"), ensure_ascii=False).encode()


def offload(session: Session, record: Record, threshold: int) -> Record:
    """The record as it travels: itself, or with its payload stored and referenced.

    Commits nothing: the caller's transaction holds the blob (commit before producing).
    """
    if record.payload_ref is not None:
        return record
    data = payload_bytes(record)
    if len(data) <= threshold:
        return record
    digest = hashlib.sha256(data).hexdigest()
    org_id = session.scalar(select(Org.id).where(Org.name == record.org))
    if org_id is None:
        raise PayloadMissingError(f"org {record.org!r} does not exist; cannot store its payload")
    now = datetime.now(UTC)
    session.execute(
        insert(PayloadBlob)
        .values(org_id=org_id, sha256=digest, size=len(data), data=data, referenced_at=now)
        .on_conflict_do_update(
            index_elements=[PayloadBlob.org_id, PayloadBlob.sha256],
            set_={"referenced_at": now},
        )
    )
    ref = PayloadRef(sha256=digest, size=len(data))
    return record.model_copy(update={"payload": {}, "payload_ref": ref})


def offload_all(session: Session, records: Iterable[Record], threshold: int) -> list[Record]:
    return [offload(session, r, threshold) for r in records]


def resolve(session: Session, record: Record) -> Record:
    """The record with its payload in place (a referenced one loaded and checked)."""
    ref = record.payload_ref
    if ref is None:
        return record
    data = session.scalar(
        select(PayloadBlob.data)
        .join(Org, PayloadBlob.org_id == Org.id)
        .where(Org.name == record.org, PayloadBlob.sha256 == ref.sha256)
    )
    if data is None:
        raise PayloadMissingError(
            f"record {record.id}: payload {ref.sha256[:12]}… ({ref.size} bytes) is not stored "
            f"for org {record.org!r} (collected after its retention?)"
        )
    if hashlib.sha256(data).hexdigest() != ref.sha256:
        raise PayloadMissingError(
            f"record {record.id}: stored payload {ref.sha256[:12]}… is corrupt"
        )
    return record.model_copy(update={"payload": json.loads(data), "payload_ref": None})


def stored(cfg: Settings, org: str, sha256: str) -> bytes | None:
    """A stored payload's JSON bytes (the console's view of a record by reference)."""
    with db_session(cfg) as session:
        data: bytes | None = session.scalar(
            select(PayloadBlob.data)
            .join(Org, PayloadBlob.org_id == Org.id)
            .where(Org.name == org, PayloadBlob.sha256 == sha256)
        )
    return data


def resolve_all(session: Session, records: Iterable[Record]) -> list[Record]:
    return [resolve(session, r) for r in records]


def longest_retention() -> timedelta:
    """The longest retention of a topic class (audit: 90 days): a record that points at a
    blob is gone from Kafka by then."""
    longest = max(
        int(configs.get("retention.ms", "0"))
        for cls, configs in TOPIC_CLASS_CONFIGS.items()
        if cls is not TopicClass.STATE
    )
    return timedelta(milliseconds=longest)


def collect(session: Session, now: datetime | None = None) -> int:
    """Delete blobs unreferenced for longer than their org's longest retention; how many."""
    cutoff = (now or datetime.now(UTC)) - longest_retention()
    result = session.execute(delete(PayloadBlob).where(PayloadBlob.referenced_at < cutoff))
    session.commit()
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
