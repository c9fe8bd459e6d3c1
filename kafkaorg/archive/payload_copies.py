"""The archive's copies of payloads stored by reference.

A record whose payload travels by reference carries only its hash; the blob lives in
PostgreSQL until ``kafkaorg db collect-payloads`` deletes it after the longest topic
retention. The archive outlives that, so it keeps a copy of every blob its records
name (``<org>/payloads/<sha[:2]>/<sha>.json``, written before the file that names it
is recorded), and puts the copies back into PostgreSQL before a replay or restore
hands such records to anyone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from kafkaorg.archive.files import ArchiveStorage, payload_hashes, payload_path, sha256
from kafkaorg.archive.manifest import SegmentRow
from kafkaorg.archive.reader import ArchiveDamagedError, read_checked
from kafkaorg.db.models import PayloadBlob

log = logging.getLogger(__name__)


def keep(
    session: Session, storage: ArchiveStorage, org: str, org_id: int, hashes: Iterable[str]
) -> None:
    """Copy each blob not in the archive yet; one PostgreSQL no longer has is logged."""
    for digest in hashes:
        path = payload_path(org, digest)
        if storage.exists(path):
            continue
        data = session.scalar(
            select(PayloadBlob.data).where(
                PayloadBlob.org_id == org_id, PayloadBlob.sha256 == digest
            )
        )
        if data is None:
            log.warning("org %s: payload %s is gone from PostgreSQL; not archived", org, digest)
            continue
        storage.write(path, data)


def put_back(
    session: Session, storage: ArchiveStorage, org: str, org_id: int, rows: Iterable[SegmentRow]
) -> int:
    """Store again every blob these files' records name that PostgreSQL lost; how many.
    Commits nothing."""
    wanted: set[str] = set()
    for row in rows:
        wanted |= payload_hashes(read_checked(storage, row))
    if not wanted:
        return 0
    present = set(
        session.scalars(
            select(PayloadBlob.sha256).where(
                PayloadBlob.org_id == org_id, PayloadBlob.sha256.in_(wanted)
            )
        )
    )
    restored = 0
    for digest in sorted(wanted - present):
        path = payload_path(org, digest)
        if not storage.exists(path):
            raise ArchiveDamagedError(
                f"payload {digest[:12]}… is neither in PostgreSQL nor in the archive ({path})"
            )
        data = storage.read(path)
        if sha256(data) != digest:
            raise ArchiveDamagedError(f"archive file {path} is damaged (checksum)")
        session.execute(
            insert(PayloadBlob)
            .values(org_id=org_id, sha256=digest, size=len(data), data=data)
            .on_conflict_do_nothing()
        )
        restored += 1
    return restored
