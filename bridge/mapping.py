"""Pure mapping from Kafka records to envelopes, poison verdicts and per-agent deliveries.

No broker, no Temporal: everything here is unit-tested with plain values.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import JsonValue, ValidationError

from kafkaorg.envelope import HEADER_CORRELATION_ID, HEADER_TYPE, TYPE_RE, Record, derived_id
from kafkaorg.names import split_kafka_topic
from kafkaorg.schema_registry.validation import SchemaBook, SchemaRef

Headers = Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None

SIGNAL_LIMIT_BYTES = 1_500_000
"""One signal's records stay under Temporal's 2 MB payload limit, with room to spare."""

EXTERNAL_SOURCE = "external"
EXTERNAL_TYPE = "external"
DEAD_LETTER_TYPE = "kafkaorg.dead-letter"

CONFLUENT_MAGIC = b"\x00"
CONFLUENT_PREFIX_BYTES = 5
"""Magic byte and schema id before a Confluent-serialized value."""


# Keys whose presence means the sender meant an envelope: it is then validated strictly.
_ENVELOPE_MARKERS = frozenset({"schema_version", "causation_id", "correlation_id"})


@dataclass(frozen=True)
class Origin:
    """Where a Kafka record came from; also what its derived ids are built on."""

    kafka_topic: str
    partition: int
    offset: int

    @property
    def org(self) -> str:
        return split_kafka_topic(self.kafka_topic)[0]

    @property
    def topic(self) -> str:
        return split_kafka_topic(self.kafka_topic)[1]


@dataclass(frozen=True)
class Poison:
    """A record that cannot enter a workflow, and why."""

    origin: Origin
    reason: str
    """not-json | bad-envelope | too-large | empty | wrong-org | hop-limit, or a schema
    violation (``kafkaorg.schema_registry.validation.ViolationReason``)."""
    detail: str
    value: bytes | None
    chain: tuple[str, ...] = ()
    """``hop-limit``: the records that led here, oldest first."""


REDRIVE_HEADER = "kafkaorg.redrive"
REDRIVE_AGENTS_HEADER = "kafkaorg.redrive.agents"


@dataclass(frozen=True)
class Accepted:
    origin: Origin
    record: Record
    size: int
    mark: str | None = None
    """``redrive:<dlq id>`` for a record re-produced from the DLQ (see ``kafkaorg dlq``)."""
    only_agents: tuple[str, ...] | None = None
    """A redriven record goes only to the agents that failed it, not to every subscriber."""
    framed: bool = False
    """A Confluent-serialized value: ``schema_version`` is the one its schema id names."""


def _looks_like_envelope(obj: Mapping[str, object]) -> bool:
    return bool(_ENVELOPE_MARKERS & obj.keys()) or {"id", "type", "source"} <= obj.keys()


def _header(headers: Headers, name: str) -> str | None:
    pairs = headers.items() if isinstance(headers, Mapping) else (headers or ())
    for key, value in pairs:
        if key != name or value is None:
            continue
        if isinstance(value, str):
            return value
        try:
            return value.decode()
        except UnicodeDecodeError:
            return None
    return None


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg']}" for e in errors[:3]]
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more


def decode(
    origin: Origin,
    value: bytes | None,
    *,
    headers: Headers = None,
    timestamp_ms: int | None = None,
    max_bytes: int,
    schema_ids: Mapping[int, SchemaRef] | None = None,
) -> Accepted | Poison:
    """Classify one Kafka value: a kafkaorg envelope, a bare JSON payload to wrap, or poison.

    ``schema_ids``: the registry's schema ids, for values a Confluent serializer framed.
    """
    if value is None or not value:
        return Poison(origin, "empty", "record has no value", value)
    if len(value) > max_bytes:
        return Poison(origin, "too-large", f"{len(value)} bytes > limit {max_bytes}", None)
    if value[:1] == CONFLUENT_MAGIC and len(value) > CONFLUENT_PREFIX_BYTES:
        return _confluent_framed(origin, value, headers, timestamp_ms, schema_ids)
    try:
        parsed = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Poison(origin, "not-json", str(exc)[:300], value)
    if isinstance(parsed, dict) and _looks_like_envelope(parsed):
        try:
            record = Record.model_validate(parsed)
        except ValidationError as exc:
            return Poison(origin, "bad-envelope", _first_error(exc), value)
        if record.org != origin.org:
            return Poison(
                origin,
                "wrong-org",
                f"record org {record.org!r} on a topic of {origin.org!r}",
                value,
            )
        return _with_redrive(Accepted(origin, record, len(value)), headers)
    return Accepted(origin, wrap_external(origin, parsed, headers, timestamp_ms), len(value))


def _confluent_framed(
    origin: Origin,
    value: bytes,
    headers: Headers,
    timestamp_ms: int | None,
    schema_ids: Mapping[int, SchemaRef] | None,
) -> Accepted | Poison:
    """A value as Confluent's serializers write it: magic byte 0, the schema id (4 bytes,
    big-endian), then the JSON payload. It is wrapped like a bare payload, its type and
    version those the id names in the org's registry."""
    schema_id = int.from_bytes(value[1:CONFLUENT_PREFIX_BYTES], "big")
    try:
        parsed = json.loads(value[CONFLUENT_PREFIX_BYTES:])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Poison(origin, "not-json", str(exc)[:300], value)
    ref = (schema_ids or {}).get(schema_id)
    if ref is None or ref.org != origin.org:
        return Poison(
            origin,
            "schema-id-unknown",
            f"framed by a schema registry serializer with schema id {schema_id}, which org "
            f"{origin.org!r} has not registered",
            value,
        )
    record = wrap_external(origin, parsed, headers, timestamp_ms)
    record = record.model_copy(update={"type": ref.record_type, "schema_version": ref.version})
    return Accepted(origin, record, len(value), framed=True)


def _with_redrive(accepted: Accepted, headers: Headers) -> Accepted:
    redrive = _header(headers, REDRIVE_HEADER)
    if not redrive:
        return accepted
    agents = _header(headers, REDRIVE_AGENTS_HEADER)
    only = tuple(a for a in (agents or "").split(",") if a) or None
    return Accepted(accepted.origin, accepted.record, accepted.size, f"redrive:{redrive}", only)


def schema_violation(item: Accepted, book: SchemaBook) -> Poison | None:
    """A record its org's schemas refuse, as poison saying where its payload fails.

    A wrapped external record is judged by its type's latest version; an envelope by the
    version it names in ``schema_version``.
    """
    if item.origin.topic.startswith("sys."):
        return None  # the platform's own records (approvals): not the org's contracts
    record = item.record
    judged_by_latest = record.source == EXTERNAL_SOURCE and not item.framed
    version = None if judged_by_latest else record.schema_version
    violation = book.check(record.org, item.origin.topic, record.type, record.payload, version)
    if violation is None:
        return None
    return Poison(item.origin, violation.reason, violation.detail, record.kafka_value())


def wrap_external(
    origin: Origin,
    payload: JsonValue,
    headers: Headers,
    timestamp_ms: int | None,
) -> Record:
    """Envelope a bare JSON payload; the id comes from the Kafka position, so redelivery matches."""
    record_id = derived_id("external", origin.kafka_topic, origin.partition, origin.offset)
    header_type = _header(headers, HEADER_TYPE)
    record_type = header_type if header_type and TYPE_RE.match(header_type) else EXTERNAL_TYPE
    correlation_id = _header(headers, HEADER_CORRELATION_ID) or record_id
    when = datetime.fromtimestamp(timestamp_ms / 1000, UTC) if timestamp_ms else datetime.now(UTC)
    return Record(
        id=record_id,
        type=record_type,
        org=origin.org,
        source=EXTERNAL_SOURCE,
        correlation_id=correlation_id[:200],
        timestamp=when,
        payload=payload if isinstance(payload, dict) else {"value": payload},
    )


def dead_letter(poison: Poison, now: datetime) -> tuple[Record, list[tuple[str, bytes]]]:
    """The DLQ record (and its headers) for a poison record; its id is stable per position."""
    o = poison.origin
    preview = poison.value[:2048].decode("utf-8", errors="replace") if poison.value else None
    record = Record(
        id=derived_id("dlq", o.kafka_topic, o.partition, o.offset),
        type=DEAD_LETTER_TYPE,
        org=o.org,
        source="system:bridge",
        correlation_id=derived_id("dlq", o.kafka_topic, o.partition, o.offset),
        timestamp=now,
        payload={
            "reason": poison.reason,
            "error": poison.detail,
            "topic": o.kafka_topic,
            "partition": o.partition,
            "offset": o.offset,
            "value_preview": preview,
            **({"chain": list(poison.chain)} if poison.chain else {}),
        },
    )
    headers = [
        ("dlq.reason", poison.reason.encode()),
        ("dlq.error", poison.detail[:500].encode()),
        ("dlq.topic", o.kafka_topic.encode()),
        ("dlq.partition", str(o.partition).encode()),
        ("dlq.offset", str(o.offset).encode()),
    ]
    return record, headers


AgentKey = tuple[str, str]  # (org, agent)


def route(
    accepted: Iterable[Accepted], subscribers: Mapping[tuple[str, str], Sequence[str]]
) -> dict[AgentKey, list[Accepted]]:
    """Group records by subscribed agent, keeping each topic-partition's order."""
    out: dict[AgentKey, list[Accepted]] = defaultdict(list)
    for item in accepted:
        for agent in subscribers.get((item.origin.org, item.origin.topic), ()):
            if item.only_agents is None or agent in item.only_agents:
                out[(item.origin.org, agent)].append(item)
    return dict(out)


def chunk_by_size(items: Sequence[Accepted], limit_bytes: int) -> list[list[Accepted]]:
    """Split one agent's records into signals that each stay under Temporal's payload limit."""
    chunks: list[list[Accepted]] = []
    current: list[Accepted] = []
    size = 0
    for item in items:
        if current and size + item.size > limit_bytes:
            chunks.append(current)
            current, size = [], 0
        current.append(item)
        size += item.size
    if current:
        chunks.append(current)
    return chunks


def commit_positions(origins: Iterable[Origin]) -> dict[tuple[str, int], int]:
    """The offset to commit per partition: one past the highest handled."""
    positions: dict[tuple[str, int], int] = {}
    for o in origins:
        key = (o.kafka_topic, o.partition)
        positions[key] = max(positions.get(key, 0), o.offset + 1)
    return positions
