"""Registering and reading an org's record schemas: the registry's service layer.

A new version is written in one transaction holding the type's ``record_types`` row
(``SELECT … FOR UPDATE``), so concurrent registrations of one type queue up and each
sees the versions before it: no two get the same number, none skips the compatibility
check against the latest. Registering a schema identical to an existing version is
idempotent (that version is the answer). Once committed, the version is announced on
``<org>.sys.audit`` (``schema.registered``, an id derived from org, type and version,
so a repeated announcement is recognisable as the same one).
"""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from kafkaorg.config import Settings
from kafkaorg.db.models import Org, RecordSchema, RecordType
from kafkaorg.db.session import db_session
from kafkaorg.envelope import TYPE_RE, Record, derived_id, utcnow
from kafkaorg.errors import BadInputError
from kafkaorg.kafka import Outgoing, create_producer, produce_and_wait
from kafkaorg.names import audit_topic
from kafkaorg.schema_registry.compatibility import Breakage, Compatibility, check
from kafkaorg.schema_registry.validation import schema_problem

SCHEMA_REGISTERED_RECORD_TYPE = "schema.registered"
DEFAULT_COMPATIBILITY = Compatibility.BACKWARD


class SchemaVersion(BaseModel):
    org: str
    record_type: str
    version: int
    schema_id: int
    """Unique across orgs: the id Confluent clients put in a record's first bytes."""
    compatibility: Compatibility
    json_schema: dict[str, Any]
    created_at: datetime | None = None


class TypeSummary(BaseModel):
    record_type: str
    latest_version: int
    versions: int
    compatibility: Compatibility


class Registered(BaseModel):
    version: SchemaVersion
    created: bool
    """False: an identical version already existed (nothing was written)."""


class CompatibilityReport(BaseModel):
    org: str
    record_type: str
    compatibility: Compatibility
    against_version: int | None
    """The latest version checked against; None: the type has none yet."""
    compatible: bool
    breakages: list[Breakage]
    identical_to: int | None = None
    """A version with exactly this schema (registering it would change nothing)."""

    def text(self) -> str:
        if self.against_version is None:
            return f"{self.record_type}: no version yet; this schema would be version 1"
        if self.identical_to is not None:
            return f"{self.record_type}: identical to version {self.identical_to}"
        if self.compatible:
            return (
                f"{self.record_type}: {self.compatibility.value} compatible with version "
                f"{self.against_version}"
            )
        lines = [
            f"{self.record_type}: not {self.compatibility.value} compatible with version "
            f"{self.against_version}:"
        ]
        return "\n".join(lines + [f"  {b.line()}" for b in self.breakages])


class SchemaIncompatibleError(BadInputError):
    """A version refused by its type's compatibility mode; ``report`` says what breaks."""

    def __init__(self, report: CompatibilityReport) -> None:
        super().__init__(report.text())
        self.report = report


def check_record_type(record_type: str) -> str:
    if not TYPE_RE.match(record_type):
        raise BadInputError(f"record type {record_type!r} must match {TYPE_RE.pattern}")
    return record_type


def check_schema_document(json_schema: object, where: str) -> dict[str, Any]:
    problem = schema_problem(json_schema)
    if problem is not None:
        raise BadInputError(f"{where}: {problem}")
    assert isinstance(json_schema, dict)
    return json_schema


def _org_id(session: Session, org: str) -> int:
    org_id = session.scalar(select(Org.id).where(Org.name == org))
    if org_id is None:
        raise BadInputError(f"org {org!r} does not exist (start it with `kafkaorg org start`)")
    return org_id


def _versions(session: Session, org_id: int, record_type: str) -> list[RecordSchema]:
    return list(
        session.scalars(
            select(RecordSchema)
            .where(RecordSchema.org_id == org_id, RecordSchema.record_type == record_type)
            .order_by(RecordSchema.version)
        )
    )


def _mode(session: Session, org_id: int, record_type: str) -> Compatibility | None:
    mode = session.scalar(
        select(RecordType.compatibility).where(
            RecordType.org_id == org_id, RecordType.record_type == record_type
        )
    )
    return Compatibility(mode) if mode else None


def _report(
    org: str,
    record_type: str,
    mode: Compatibility,
    versions: list[RecordSchema],
    json_schema: dict[str, Any],
) -> CompatibilityReport:
    identical = next((v.version for v in versions if v.json_schema == json_schema), None)
    latest = versions[-1] if versions else None
    found = [] if identical else check(mode, json_schema, latest.json_schema if latest else None)
    return CompatibilityReport(
        org=org,
        record_type=record_type,
        compatibility=mode,
        against_version=latest.version if latest else None,
        compatible=not found,
        breakages=found,
        identical_to=identical,
    )


def _as_version(org: str, row: RecordSchema, mode: Compatibility) -> SchemaVersion:
    return SchemaVersion(
        org=org,
        record_type=row.record_type,
        version=row.version,
        schema_id=row.id,
        compatibility=mode,
        json_schema=row.json_schema,
        created_at=row.created_at,
    )


def register_in(
    session: Session,
    org: str,
    record_type: str,
    json_schema: dict[str, Any],
    compatibility: Compatibility | None = None,
) -> Registered:
    """Register a version inside the caller's session, and commit it (the type row locked).

    ``compatibility`` also sets the type's mode (checked under the new mode); None keeps
    the type's (BACKWARD for a new type). Raises ``SchemaIncompatibleError``.
    """
    org_id = _org_id(session, org)
    session.execute(
        insert(RecordType)
        .values(
            org_id=org_id,
            record_type=record_type,
            compatibility=(compatibility or DEFAULT_COMPATIBILITY).value,
        )
        .on_conflict_do_nothing(index_elements=["org_id", "record_type"])
    )
    row = session.scalars(
        select(RecordType)
        .where(RecordType.org_id == org_id, RecordType.record_type == record_type)
        .with_for_update()
    ).one()
    mode = compatibility or Compatibility(row.compatibility)
    versions = _versions(session, org_id, record_type)
    report = _report(org, record_type, mode, versions, json_schema)
    if not report.compatible:
        session.rollback()
        raise SchemaIncompatibleError(report)
    row.compatibility = mode.value
    if report.identical_to is not None:
        existing = next(v for v in versions if v.version == report.identical_to)
        session.commit()
        return Registered(version=_as_version(org, existing, mode), created=False)
    new = RecordSchema(
        org_id=org_id,
        record_type=record_type,
        version=(versions[-1].version + 1) if versions else 1,
        json_schema=json_schema,
    )
    session.add(new)
    session.commit()
    return Registered(version=_as_version(org, new, mode), created=True)


def announce(cfg: Settings, registered: list[Registered]) -> None:
    """``schema.registered`` on each org's audit topic, once PostgreSQL holds the versions."""
    if not registered:
        return
    now = utcnow()
    producer = create_producer(cfg)
    produce_and_wait(
        producer,
        [
            Outgoing(
                audit_topic(v.org),
                Record(
                    id=derived_id("schema", v.org, v.record_type, v.version),
                    type=SCHEMA_REGISTERED_RECORD_TYPE,
                    org=v.org,
                    source="system:schema-registry",
                    correlation_id=derived_id("schema", v.org, v.record_type),
                    timestamp=now,
                    payload={
                        "record_type": v.record_type,
                        "version": v.version,
                        "schema_id": v.schema_id,
                        "compatibility": v.compatibility.value,
                        "created": r.created,
                    },
                ),
            )
            for r in registered
            for v in (r.version,)
        ],
    )


def register(
    cfg: Settings,
    org: str,
    record_type: str,
    json_schema: dict[str, Any],
    compatibility: Compatibility | None = None,
) -> Registered:
    """Register one version (``kafkaorg schema register``) and announce it."""
    check_record_type(record_type)
    check_schema_document(json_schema, record_type)
    with db_session(cfg) as session:
        registered = register_in(session, org, record_type, json_schema, compatibility)
    announce(cfg, [registered])
    return registered


def check_version(
    cfg: Settings,
    org: str,
    record_type: str,
    json_schema: dict[str, Any],
    compatibility: Compatibility | None = None,
) -> CompatibilityReport:
    """Whether registering would be accepted, changing nothing (``kafkaorg schema check``)."""
    check_record_type(record_type)
    check_schema_document(json_schema, record_type)
    with db_session(cfg) as session:
        org_id = _org_id(session, org)
        mode = compatibility or _mode(session, org_id, record_type) or DEFAULT_COMPATIBILITY
        return _report(org, record_type, mode, _versions(session, org_id, record_type), json_schema)


def check_all(
    cfg: Settings, org: str, schemas: list[tuple[str, dict[str, Any], Compatibility | None]]
) -> list[CompatibilityReport]:
    """Reports for a spec's schemas; an org that does not exist yet has none to break."""
    with db_session(cfg) as session:
        org_id = session.scalar(select(Org.id).where(Org.name == org))
        if org_id is None:
            return []
        out = []
        for record_type, json_schema, compatibility in schemas:
            mode = compatibility or _mode(session, org_id, record_type) or DEFAULT_COMPATIBILITY
            versions = _versions(session, org_id, record_type)
            out.append(_report(org, record_type, mode, versions, json_schema))
        return out


def register_all(
    cfg: Settings, org: str, schemas: list[tuple[str, dict[str, Any], Compatibility | None]]
) -> list[Registered]:
    """Register a spec's schemas (each its own transaction), then announce the new ones."""
    done: list[Registered] = []
    with db_session(cfg) as session:
        for record_type, json_schema, compatibility in schemas:
            done.append(register_in(session, org, record_type, json_schema, compatibility))
    announce(cfg, [r for r in done if r.created])
    return done


def list_types_in(session: Session, org: str) -> list[TypeSummary]:
    org_id = _org_id(session, org)
    rows = session.execute(
        select(
            RecordType.record_type,
            RecordType.compatibility,
            func.max(RecordSchema.version),
            func.count(RecordSchema.id),
        )
        .join(
            RecordSchema,
            (RecordSchema.org_id == RecordType.org_id)
            & (RecordSchema.record_type == RecordType.record_type),
        )
        .where(RecordType.org_id == org_id)
        .group_by(RecordType.record_type, RecordType.compatibility)
        .order_by(RecordType.record_type)
    ).all()
    return [
        TypeSummary(
            record_type=t, compatibility=Compatibility(c), latest_version=latest, versions=n
        )
        for t, c, latest, n in rows
    ]


def list_types(cfg: Settings, org: str) -> list[TypeSummary]:
    with db_session(cfg) as session:
        return list_types_in(session, org)


def versions_in(session: Session, org: str, record_type: str) -> list[SchemaVersion]:
    """Every version of a type, oldest first; an unknown type is bad input."""
    org_id = _org_id(session, org)
    rows = _versions(session, org_id, record_type)
    if not rows:
        raise BadInputError(f"org {org!r} has no schema for record type {record_type!r}")
    mode = _mode(session, org_id, record_type) or DEFAULT_COMPATIBILITY
    return [_as_version(org, r, mode) for r in rows]


def show(cfg: Settings, org: str, record_type: str, version: int | None = None) -> SchemaVersion:
    with db_session(cfg) as session:
        versions = versions_in(session, org, record_type)
    if version is None:
        return versions[-1]
    found = next((v for v in versions if v.version == version), None)
    if found is None:
        known = ", ".join(str(v.version) for v in versions)
        raise BadInputError(f"{record_type} has no version {version} (versions: {known})")
    return found


def schemas_for_in(session: Session, org: str, record_types: list[str]) -> list[SchemaVersion]:
    org_id = session.scalar(select(Org.id).where(Org.name == org))
    if org_id is None:
        return []
    latest = (
        select(RecordSchema.record_type, func.max(RecordSchema.version).label("version"))
        .where(RecordSchema.org_id == org_id)
        .group_by(RecordSchema.record_type)
    )
    if record_types:
        latest = latest.where(RecordSchema.record_type.in_(record_types))
    sub = latest.subquery()
    rows = session.execute(
        select(RecordSchema, RecordType.compatibility)
        .join(
            sub,
            (RecordSchema.record_type == sub.c.record_type)
            & (RecordSchema.version == sub.c.version),
        )
        .join(
            RecordType,
            (RecordType.org_id == RecordSchema.org_id)
            & (RecordType.record_type == RecordSchema.record_type),
        )
        .where(RecordSchema.org_id == org_id)
        .order_by(RecordSchema.record_type)
    ).all()
    return [_as_version(org, row, Compatibility(mode)) for row, mode in rows]


class TypeDetail(BaseModel):
    """A record type's versions (oldest first), what each changed, and the topics
    declaring it: what the console shows."""

    org: str
    record_type: str
    compatibility: Compatibility
    versions: list[SchemaVersion]
    changes: dict[int, list[Breakage]]
    """Version → what it breaks against the one before, both ways (a FULL check)."""
    topics: list[str]


def type_detail(cfg: Settings, org: str, record_type: str) -> TypeDetail:
    check_record_type(record_type)
    with db_session(cfg) as session:
        versions = versions_in(session, org, record_type)
        spec = session.scalar(select(Org.spec).where(Org.name == org)) or {}
    topics = [
        t["name"]
        for t in spec.get("topics") or ()
        if isinstance(t, dict) and record_type in (t.get("types") or ())
    ]
    changes = {
        new.version: check(Compatibility.FULL, new.json_schema, old.json_schema)
        for old, new in pairwise(versions)
    }
    return TypeDetail(
        org=org,
        record_type=record_type,
        compatibility=versions[-1].compatibility,
        versions=versions,
        changes=changes,
        topics=topics,
    )
