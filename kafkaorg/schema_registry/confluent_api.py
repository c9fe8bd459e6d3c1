"""The part of Confluent Schema Registry's REST API that Kafka clients use, over our registry.

``confluent_kafka.schema_registry.SchemaRegistryClient`` (and its ``JSONSerializer`` /
``JSONDeserializer``) talk to this as they would to Confluent's server: subjects are
``<org>.<record type>``, versions and compatibility are the org's, a schema id is the
``record_schemas`` row id (unique across orgs). Only JSON Schemas; no references, no
deletes (versions are immutable here). Served by the console under ``/schema-registry``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from kafkaorg.config import Settings
from kafkaorg.db import create_engine, create_sessionmaker
from kafkaorg.db.models import Org, RecordSchema, RecordType
from kafkaorg.envelope import TYPE_RE
from kafkaorg.errors import BadInputError
from kafkaorg.names import ORG_NAME_RE
from kafkaorg.schema_registry import store
from kafkaorg.schema_registry.compatibility import Compatibility, check
from kafkaorg.schema_registry.validation import schema_problem

PREFIX = "/schema-registry"
JsonBody = Annotated[dict[str, Any], Body()]
MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"


class ConfluentError(HTTPException):
    """An error as Confluent's server words it: ``error_code`` and ``message``."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(status, message)
        self.code = code


class SchemaBody(BaseModel):
    schema_: str
    schemaType: str = "JSON"
    references: list[dict[str, Any]] = []

    model_config = {"populate_by_name": True, "extra": "ignore"}

    @classmethod
    def parse(cls, body: dict[str, Any]) -> SchemaBody:
        if not isinstance(body.get("schema"), str):
            raise ConfluentError(
                422, 42201, "the request needs 'schema', a JSON Schema as a string"
            )
        return cls(schema_=body["schema"], **{k: v for k, v in body.items() if k != "schema"})

    def document(self) -> dict[str, Any]:
        if self.schemaType.upper() != "JSON":
            raise ConfluentError(
                422, 42201, f"only JSON schemas are kept here, not {self.schemaType}"
            )
        if self.references:
            raise ConfluentError(422, 42201, "schema references are not supported")
        try:
            document = json.loads(self.schema_)
        except json.JSONDecodeError as exc:
            raise ConfluentError(422, 42201, f"schema is not JSON: {exc}") from None
        problem = schema_problem(document)
        if problem is not None:
            raise ConfluentError(422, 42201, problem)
        assert isinstance(document, dict)
        return document


def split_subject(subject: str) -> tuple[str, str]:
    """``<org>.<record type>`` (an org name has no dot, so the first one splits)."""
    org, dot, record_type = subject.partition(".")
    if not dot or not ORG_NAME_RE.match(org) or not TYPE_RE.match(record_type):
        raise ConfluentError(404, 40401, f"subject {subject!r} is not <org>.<record type>")
    return org, record_type


def _registered(subject: str, row: RecordSchema) -> dict[str, Any]:
    return {
        "subject": subject,
        "id": row.id,
        "version": row.version,
        "schema": json.dumps(row.json_schema),
        "schemaType": "JSON",
    }


def build_router(settings: Settings) -> APIRouter:
    router = APIRouter(prefix=PREFIX)
    sessions: sessionmaker[Session] | None = None

    @contextmanager
    def session() -> Iterator[Session]:
        nonlocal sessions
        if sessions is None:
            sessions = create_sessionmaker(create_engine(settings.database_url, pool_size=2))
        try:
            with sessions() as s:
                yield s
        except OperationalError:
            raise ConfluentError(503, 50003, "PostgreSQL is not reachable") from None

    def org_id(s: Session, org: str) -> int:
        found = s.scalar(select(Org.id).where(Org.name == org))
        if found is None:
            raise ConfluentError(404, 40401, f"org {org!r} does not exist")
        return found

    def versions(s: Session, subject: str) -> list[RecordSchema]:
        org, record_type = split_subject(subject)
        rows = list(
            s.scalars(
                select(RecordSchema)
                .where(
                    RecordSchema.org_id == org_id(s, org),
                    RecordSchema.record_type == record_type,
                )
                .order_by(RecordSchema.version)
            )
        )
        if not rows:
            raise ConfluentError(404, 40401, f"Subject '{subject}' not found.")
        return rows

    def one_version(s: Session, subject: str, version: str) -> RecordSchema:
        rows = versions(s, subject)
        if version in ("latest", "-1"):
            return rows[-1]
        if not version.isdigit():
            raise ConfluentError(422, 42202, f"version {version!r} is not a number or 'latest'")
        found = next((r for r in rows if r.version == int(version)), None)
        if found is None:
            raise ConfluentError(404, 40402, f"Version {version} not found.")
        return found

    def mode(s: Session, subject: str) -> Compatibility:
        org, record_type = split_subject(subject)
        found = s.scalar(
            select(RecordType.compatibility).where(
                RecordType.org_id == org_id(s, org), RecordType.record_type == record_type
            )
        )
        return Compatibility(found) if found else store.DEFAULT_COMPATIBILITY

    @router.get("/schemas/types")
    def schema_types() -> list[str]:
        return ["JSON"]

    @router.get("/subjects")
    def subjects() -> list[str]:
        with session() as s:
            rows = s.execute(
                select(Org.name, RecordSchema.record_type)
                .join(Org, RecordSchema.org_id == Org.id)
                .distinct()
                .order_by(Org.name, RecordSchema.record_type)
            ).all()
        return [f"{org}.{record_type}" for org, record_type in rows]

    @router.get("/subjects/{subject}/versions")
    def subject_versions(subject: str) -> list[int]:
        with session() as s:
            return [r.version for r in versions(s, subject)]

    @router.get("/subjects/{subject}/versions/{version}")
    def subject_version(subject: str, version: str) -> dict[str, Any]:
        with session() as s:
            return _registered(subject, one_version(s, subject, version))

    @router.get("/subjects/{subject}/versions/{version}/schema")
    def subject_version_schema(subject: str, version: str) -> dict[str, Any]:
        with session() as s:
            return one_version(s, subject, version).json_schema

    @router.post("/subjects/{subject}/versions")
    def register(subject: str, body: JsonBody) -> dict[str, Any]:
        document = SchemaBody.parse(body).document()
        org, record_type = split_subject(subject)
        with session() as s:
            try:
                done = store.register_in(s, org, record_type, document)
            except store.SchemaIncompatibleError as exc:
                raise ConfluentError(
                    409,
                    409,
                    "Schema being registered is incompatible with an earlier schema: "
                    + "; ".join(b.line() for b in exc.report.breakages),
                ) from None
            except BadInputError as exc:
                raise ConfluentError(404, 40401, str(exc)) from None
        if done.created:
            store.announce(settings, [done])
        return {"id": done.version.schema_id, "version": done.version.version, "subject": subject}

    @router.post("/subjects/{subject}")
    def lookup(subject: str, body: JsonBody) -> dict[str, Any]:
        document = SchemaBody.parse(body).document()
        with session() as s:
            found = next((r for r in versions(s, subject) if r.json_schema == document), None)
            if found is None:
                raise ConfluentError(404, 40403, "Schema not found")
            return _registered(subject, found)

    @router.get("/schemas/ids/{schema_id}")
    def schema_by_id(schema_id: int) -> dict[str, Any]:
        with session() as s:
            row = s.get(RecordSchema, schema_id)
            if row is None:
                raise ConfluentError(404, 40403, "Schema not found")
            return {"schema": json.dumps(row.json_schema), "schemaType": "JSON"}

    @router.get("/schemas/ids/{schema_id}/versions")
    def schema_id_versions(schema_id: int) -> list[dict[str, Any]]:
        with session() as s:
            found = s.execute(
                select(Org.name, RecordSchema.record_type, RecordSchema.version)
                .join(Org, RecordSchema.org_id == Org.id)
                .where(RecordSchema.id == schema_id)
            ).one_or_none()
        if found is None:
            raise ConfluentError(404, 40403, "Schema not found")
        return [{"subject": f"{found[0]}.{found[1]}", "version": found[2]}]

    @router.post("/compatibility/subjects/{subject}/versions/{version}")
    def compatibility(subject: str, version: str, body: JsonBody) -> dict[str, Any]:
        document = SchemaBody.parse(body).document()
        with session() as s:
            against = one_version(s, subject, version)
            found = check(mode(s, subject), document, against.json_schema)
        return {"is_compatible": not found, "messages": [b.line() for b in found]}

    @router.get("/config/{subject}")
    def get_config(subject: str) -> dict[str, str]:
        with session() as s:
            versions(s, subject)
            return {"compatibilityLevel": mode(s, subject).value}

    @router.put("/config/{subject}")
    def put_config(subject: str, body: JsonBody) -> dict[str, str]:
        level = str(body.get("compatibility", "")).upper()
        if level not in Compatibility.__members__:
            modes = ", ".join(Compatibility.__members__)
            raise ConfluentError(422, 42203, f"compatibility must be one of {modes}")
        with session() as s:
            org, record_type = split_subject(subject)
            versions(s, subject)  # the subject must exist
            s.execute(
                update(RecordType)
                .where(RecordType.org_id == org_id(s, org), RecordType.record_type == record_type)
                .values(compatibility=level)
            )
            s.commit()
        return {"compatibility": level}

    @router.get("/config")
    def global_config() -> dict[str, str]:
        return {"compatibilityLevel": store.DEFAULT_COMPATIBILITY.value}

    return router


def confluent_error_response(_: Request, exc: ConfluentError) -> JSONResponse:
    return JSONResponse(
        {"error_code": exc.code, "message": str(exc.detail)},
        status_code=exc.status_code,
        media_type=MEDIA_TYPE,
    )
