"""The ``SchemaBook`` the bridge and the workers judge records by, kept fresh from PostgreSQL.

Like ``bridge.subscriptions``: reloaded at most every ``ttl_s`` seconds, and sooner when a
record is newer than the snapshot (a schema registered just before a record was produced
applies to it). A schema row never changes, so each is compiled once per process.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from kafkaorg.db.models import Org, RecordSchema
from kafkaorg.schema_registry.validation import (
    OrgSchemas,
    PayloadValidator,
    SchemaBook,
    SchemaRef,
    compile_schema,
)


class SchemaCache:
    """A ``SchemaBook`` refreshed at most every ``ttl_s`` seconds; safe across threads."""

    def __init__(self, sessions: sessionmaker[Session], ttl_s: float = 2.0) -> None:
        self._sessions = sessions
        self._ttl_s = ttl_s
        self._book = SchemaBook()
        self._loaded_at = float("-inf")
        self._snapshot_wall = float("-inf")
        self._compiled: dict[int, PayloadValidator] = {}
        self._lock = threading.Lock()

    def fresh(self, newest_record_at: float | None = None) -> bool:
        """Whether the copy may judge records up to ``newest_record_at`` (epoch s; None:
        only its age counts)."""
        if time.monotonic() - self._loaded_at > self._ttl_s:
            return False
        return newest_record_at is None or newest_record_at < self._snapshot_wall - 1.0

    def get(self, *, newest_record_at: float | None = None) -> SchemaBook:
        """The book; reloaded when stale, or older than the newest record it will judge."""
        if self.fresh(newest_record_at):
            return self._book
        with self._lock:
            started = time.time()
            self._book = self._load()
            self._snapshot_wall = started
            self._loaded_at = time.monotonic()
            return self._book

    def _load(self) -> SchemaBook:
        with self._sessions() as session:
            orgs = session.execute(select(Org.name, Org.spec).where(Org.status != "stopped")).all()
            rows = session.execute(
                select(Org.name, RecordSchema.record_type, RecordSchema.version, RecordSchema.id)
                .join(Org, RecordSchema.org_id == Org.id)
                .where(Org.status != "stopped")
            ).all()
            missing = [r.id for r in rows if r.id not in self._compiled]
            if missing:
                documents = session.execute(
                    select(RecordSchema.id, RecordSchema.json_schema).where(
                        RecordSchema.id.in_(missing)
                    )
                ).all()
                for schema_id, document in documents:
                    self._compiled[schema_id] = compile_schema(document)
        versions: dict[str, dict[str, dict[int, PayloadValidator]]] = {}
        ids = {r.id: SchemaRef(r.name, r.record_type, r.version) for r in rows}
        for org, record_type, version, schema_id in rows:
            versions.setdefault(org, {}).setdefault(record_type, {})[version] = self._compiled[
                schema_id
            ]
        book: dict[str, OrgSchemas] = {}
        for org, spec in orgs:
            policy = (spec or {}).get("policy") or {}
            topic_types = {
                t["name"]: frozenset(t["types"])
                for t in (spec or {}).get("topics") or ()
                if isinstance(t, dict) and t.get("types")
            }
            reject = policy.get("unregistered_types") == "reject"
            if versions.get(org) or reject or topic_types:
                book[org] = OrgSchemas(versions.get(org, {}), reject, topic_types)
        return SchemaBook(book, ids)
