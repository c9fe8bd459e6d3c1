from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from kafkaorg.envelope import Record, caused_by, derived_id, new_record, parse_payload_json


def test_record_round_trips_through_kafka_bytes_and_headers() -> None:
    record = new_record(org="acme", type="task.request", source="user:ann", payload={"a": [1, 2]})
    assert Record.from_kafka_value(record.kafka_value()) == record
    assert record.kafka_key() == record.correlation_id.encode()
    assert dict(record.kafka_headers()) == {
        "type": b"task.request",
        "source": b"user:ann",
        "correlation_id": record.correlation_id.encode(),
        "hops": b"0",
    }
    assert record.correlation_id == record.id  # a new conversation starts with its first record


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("source", "robot"),
        ("type", "Not A Type"),
        ("org", "Acme"),
        ("timestamp", "2026-11-24T10:00:00"),  # no timezone
        ("schema_version", 0),
        ("hops", -1),
    ],
)
def test_envelope_rejects_bad_fields(field: str, value: object) -> None:
    data = json.loads(new_record(org="acme", type="t", source="user:a", payload={}).kafka_value())
    data[field] = value
    with pytest.raises(ValidationError) as info:
        Record.model_validate(data)
    assert info.value.errors()[0]["loc"][0] == field


def test_a_newer_producers_extra_envelope_fields_are_ignored() -> None:
    record = new_record(org="acme", type="t", source="user:a", payload={"x": 1})
    data = json.loads(record.kafka_value())
    data["priority_class"] = "gold"  # a field a later version of the envelope adds
    parsed = Record.from_kafka_value(json.dumps(data).encode())
    assert parsed == record
    assert "priority_class" not in parsed.model_dump()


def test_an_agents_output_is_one_hop_further_than_its_cause() -> None:
    cause = new_record(org="acme", type="t", source="user:a", payload={}).model_copy(
        update={"hops": 3}
    )
    fields = caused_by(cause)
    assert fields == {
        "org": "acme",
        "correlation_id": cause.correlation_id,
        "causation_id": cause.id,
        "hops": 4,
    }


def test_derived_ids_are_stable_and_distinct() -> None:
    assert derived_id("a", 1, 2) == derived_id("a", 1, 2)
    assert derived_id("a", 1, 2) != derived_id("a", 12)
    assert derived_id("a", "1:2") != derived_id("a:1", 2)


def test_payload_argument_wraps_non_objects() -> None:
    assert parse_payload_json('{"x": 1}') == {"x": 1}
    assert parse_payload_json("[1, 2]") == {"value": [1, 2]}
