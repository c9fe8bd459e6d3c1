from __future__ import annotations

import json
from datetime import UTC, datetime

from bridge.mapping import (
    Accepted,
    Origin,
    Poison,
    chunk_by_size,
    commit_positions,
    dead_letter,
    decode,
    route,
)
from kafkaorg.envelope import derived_id, new_record

ORIGIN = Origin("acme.tasks", 2, 41)


def _decode(value: bytes | None, **kw: object) -> Accepted | Poison:
    return decode(ORIGIN, value, max_bytes=1000, **kw)  # type: ignore[arg-type]


def test_envelope_is_accepted_as_is() -> None:
    record = new_record(org="acme", type="t", source="user:a", payload={"x": 1})
    result = _decode(record.kafka_value())
    assert isinstance(result, Accepted) and result.record == record


def test_bare_json_is_wrapped_with_position_derived_id_and_header_type() -> None:
    result = _decode(
        b'{"x": 1}', headers=[("type", b"sensor.reading")], timestamp_ms=1_700_000_000_000
    )
    assert isinstance(result, Accepted)
    assert result.record.id == derived_id("external", "acme.tasks", 2, 41)
    assert result.record.source == "external"
    assert result.record.type == "sensor.reading"
    assert result.record.org == "acme"
    assert result.record.timestamp == datetime.fromtimestamp(1_700_000_000, UTC)
    again = _decode(b'{"x": 1}')
    assert isinstance(again, Accepted) and again.record.id == result.record.id
    scalar = _decode(b"42")
    assert isinstance(scalar, Accepted) and scalar.record.payload == {"value": 42}


def test_poison_verdicts() -> None:
    good = json.loads(new_record(org="acme", type="t", source="user:a", payload={}).kafka_value())
    cases = {
        "not-json": b"\x00\x01 binary",
        "bad-envelope": json.dumps(good | {"schema_version": "x"}).encode(),
        "too-large": b"{" + b" " * 2000 + b"}",
        "empty": None,
        "wrong-org": json.dumps(good | {"org": "other"}).encode(),
    }
    for reason, value in cases.items():
        result = _decode(value)
        assert isinstance(result, Poison), reason
        assert result.reason == reason


def test_dead_letter_record_names_its_origin() -> None:
    poison = Poison(ORIGIN, "not-json", "Expecting value", b"\x00oops")
    record, headers = dead_letter(poison, datetime(2026, 1, 1, tzinfo=UTC))
    assert record.org == "acme" and record.type == "kafkaorg.dead-letter"
    assert record.payload["offset"] == 41 and record.payload["reason"] == "not-json"
    assert dict(headers)["dlq.topic"] == b"acme.tasks"
    assert record.id == dead_letter(poison, datetime(2027, 1, 1, tzinfo=UTC))[0].id


def _accepted(topic: str, offset: int, size: int = 10) -> Accepted:
    origin = Origin(topic, 0, offset)
    return Accepted(origin, new_record(org="acme", type="t", source="user:a", payload={}), size)


def test_route_keeps_order_per_agent_and_skips_unsubscribed_topics() -> None:
    items = [
        _accepted("acme.a", 1),
        _accepted("acme.b", 2),
        _accepted("acme.a", 3),
        _accepted("acme.z", 4),
    ]
    routed = route(items, {("acme", "a"): ["x", "y"], ("acme", "b"): ["x"]})
    assert [i.origin.offset for i in routed[("acme", "x")]] == [1, 2, 3]
    assert [i.origin.offset for i in routed[("acme", "y")]] == [1, 3]
    assert set(routed) == {("acme", "x"), ("acme", "y")}


def test_chunks_stay_under_the_limit_and_keep_order() -> None:
    items = [_accepted("acme.a", i, size=400) for i in range(5)]
    chunks = chunk_by_size(items, 1000)
    assert [len(c) for c in chunks] == [2, 2, 1]
    assert [i for c in chunks for i in c] == items


def test_redriven_record_is_marked_and_routed_only_to_named_agents() -> None:
    record = new_record(org="acme", type="t", source="user:a", payload={})
    headers = [("kafkaorg.redrive", b"dlq-1"), ("kafkaorg.redrive.agents", b"x")]
    result = _decode(record.kafka_value(), headers=headers)
    assert isinstance(result, Accepted)
    assert result.mark == "redrive:dlq-1" and result.only_agents == ("x",)
    routed = route([result], {("acme", "tasks"): ["x", "y"]})
    assert list(routed) == [("acme", "x")]


def test_commit_positions_are_one_past_the_highest_offset() -> None:
    origins = [Origin("acme.a", 0, 5), Origin("acme.a", 0, 3), Origin("acme.a", 1, 0)]
    assert commit_positions(origins) == {("acme.a", 0): 6, ("acme.a", 1): 1}
