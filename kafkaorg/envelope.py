"""The record envelope: one pydantic model from Kafka topic to Temporal signal.

A record's Kafka key is its ``correlation_id`` (one conversation stays in one
partition, in order) and its headers repeat ``type``, ``source`` and
``correlation_id`` so tools like kcat can filter without parsing JSON.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue

SCHEMA_VERSION: Final = 1

# Fixed namespace so every process derives the same ids from the same inputs.
KAFKAORG_ID_NAMESPACE: Final = uuid.UUID("6f1c2a3e-5b7d-4e0a-9c1f-2d8e4b6a7c90")

TYPE_RE: Final = re.compile(r"^[a-z][a-z0-9_.-]{0,99}$")
SOURCE_RE: Final = re.compile(r"^((agent|user|system):[a-z0-9][a-z0-9_.:-]{0,99}|external)$")

HEADER_TYPE: Final = "type"
HEADER_SOURCE: Final = "source"
HEADER_CORRELATION_ID: Final = "correlation_id"
HEADER_HOPS: Final = "hops"


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a timezone (e.g. 2026-11-24T10:00:00Z)")
    return value.astimezone(UTC)


def derived_id(*parts: object) -> str:
    """A stable UUID from its parts, so a retry or redelivery gets the same id."""
    return str(uuid.uuid5(KAFKAORG_ID_NAMESPACE, "\x1f".join(str(p) for p in parts)))


def utcnow() -> datetime:
    return datetime.now(UTC)


class PayloadRef(BaseModel):
    """Where a payload too large for its record is (``kafkaorg.payloads``): the org's blob
    with this SHA-256 of the payload's JSON, ``size`` bytes long."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class Record(BaseModel):
    """A kafkaorg record, exactly as it travels as a Kafka value (UTF-8 JSON).

    Unknown top-level fields (a newer producer's) are ignored, not refused: a record is
    processed by every version that understands the fields it needs. They are not
    carried into the agents' outputs, which are new records.
    """

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=100)
    type: str = Field(pattern=TYPE_RE.pattern)
    schema_version: int = Field(default=SCHEMA_VERSION, ge=1)
    org: str = Field(pattern=r"^[a-z][a-z0-9-]{0,39}$")
    source: str = Field(pattern=SOURCE_RE.pattern)
    correlation_id: str = Field(min_length=1, max_length=200)
    causation_id: str | None = Field(default=None, max_length=200)
    timestamp: Annotated[datetime, AfterValidator(_utc)]
    payload: dict[str, JsonValue] = Field(default_factory=dict)
    hops: int = Field(default=0, ge=0)
    """How many agents the chain of records that led here passed through: 0 from people
    and external producers, the input's + 1 for an agent's output (the loop guard)."""
    payload_ref: PayloadRef | None = None
    """Set when the payload is stored by reference: ``payload`` is then empty until
    ``kafkaorg.payloads.resolve`` puts it back."""

    def kafka_key(self) -> bytes:
        return self.correlation_id.encode()

    def kafka_value(self) -> bytes:
        # No "payload_ref": null on the wire for the records that have none (nearly all).
        exclude = {"payload_ref"} if self.payload_ref is None else None
        return self.model_dump_json(exclude=exclude).encode()

    def kafka_headers(self) -> list[tuple[str, str | bytes | None]]:
        return [
            (HEADER_TYPE, self.type.encode()),
            (HEADER_SOURCE, self.source.encode()),
            (HEADER_CORRELATION_ID, self.correlation_id.encode()),
            (HEADER_HOPS, str(self.hops).encode()),
        ]

    @classmethod
    def from_kafka_value(cls, value: bytes) -> Record:
        """Parse a Kafka value; raises ``ValueError`` (or pydantic's subclass of it)."""
        return cls.model_validate_json(value)


def caused_by(cause: Record) -> dict[str, object]:
    """The envelope fields an agent's output takes from the record it answers."""
    return {
        "org": cause.org,
        "correlation_id": cause.correlation_id,
        "causation_id": cause.id,
        "hops": cause.hops + 1,
    }


def new_record(
    *,
    org: str,
    type: str,
    source: str,
    payload: dict[str, JsonValue],
    correlation_id: str | None = None,
    causation_id: str | None = None,
    record_id: str | None = None,
    timestamp: datetime | None = None,
) -> Record:
    """A fresh record for users and tools (not for workflow code: it draws a uuid4)."""
    rid = record_id or str(uuid.uuid4())
    return Record(
        id=rid,
        type=type,
        org=org,
        source=source,
        correlation_id=correlation_id or rid,
        causation_id=causation_id,
        timestamp=timestamp or utcnow(),
        payload=payload,
    )


def parse_payload_json(text: str) -> dict[str, JsonValue]:
    """Parse a user's ``--payload`` argument; a non-object value is wrapped as ``value``."""
    value = json.loads(text)
    return value if isinstance(value, dict) else {"value": value}
