"""Payloads judged by a ``SchemaBook``, and schemas declared in an org spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from kafkaorg.schema_registry.validation import (
    OrgSchemas,
    SchemaBook,
    compile_schema,
    schema_problem,
)
from kafkaorg.spec import SpecError, load_spec, validate_spec

ORDER_V1 = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}},
    "required": ["id"],
}
ORDER_V2 = {**ORDER_V1, "required": ["id", "qty"]}


def _book(reject: bool = False) -> SchemaBook:
    versions = {"order.created": {1: compile_schema(ORDER_V1), 2: compile_schema(ORDER_V2)}}
    topics = {"orders": frozenset({"order.created"})}
    return SchemaBook({"shop": OrgSchemas(versions, reject, topics)})


def test_a_payload_is_judged_by_the_version_it_names_or_the_latest() -> None:
    book = _book()
    assert book.check("shop", "orders", "order.created", {"id": "a"}, version=1) is None
    violation = book.check("shop", "orders", "order.created", {"id": "a"})
    assert violation is not None and violation.reason == "schema-invalid"
    assert violation.detail == "order.created v2: payload $: 'qty' is a required property"


def test_the_failing_path_and_message_are_given() -> None:
    violation = _book().check("shop", "orders", "order.created", {"id": "a", "qty": 0}, 1)
    assert violation is not None
    assert violation.detail == ("order.created v1: payload $.qty: 0 is less than the minimum of 1")


def test_unknown_versions_wrong_topics_and_unregistered_types() -> None:
    book = _book()
    unknown = book.check("shop", "orders", "order.created", {"id": "a"}, version=7)
    assert unknown is not None and unknown.reason == "schema-version-unknown"
    assert "registered: 1, 2" in unknown.detail
    wrong = book.check("shop", "orders", "order.other", {})
    assert wrong is not None and wrong.reason == "schema-wrong-topic"
    assert book.check("shop", "misc", "order.other", {}) is None  # accept by default
    strict = _book(reject=True).check("shop", "misc", "order.other", {})
    assert strict is not None and strict.reason == "schema-unregistered"
    assert book.check("other-org", "orders", "x", {}) is None


@pytest.mark.parametrize(
    "payload",
    [
        {"id": "a", "qty": 2},
        {"id": "a"},
        {"id": 1},
        {"qty": 0},
        {"id": "a", "qty": 1.5},
        {"id": "a", "qty": True},
        [],
        {"id": "a", "extra": {"deep": [1, 2]}},
    ],
)
def test_the_fast_check_and_jsonschema_agree(payload: object) -> None:
    fast = compile_schema(ORDER_V1)
    referenced = compile_schema(
        {"$defs": {"order": ORDER_V1}, "$ref": "#/$defs/order"}
    )  # $ref: jsonschema alone
    assert fast.fast and not referenced.fast
    assert fast.first_error(payload) == referenced.first_error(payload)


def test_an_invalid_json_schema_is_named() -> None:
    assert schema_problem(ORDER_V1) is None
    problem = schema_problem({"type": "object", "properties": {"id": {"type": "text"}}})
    assert problem is not None and "not a valid JSON Schema" in problem
    assert schema_problem(["not", "an", "object"]) == "a schema must be a JSON object"


def test_a_spec_reads_schema_files_and_checks_them(tmp_path: Path) -> None:
    (tmp_path / "order.json").write_text('{"type": "object", "required": ["id"]}')
    (tmp_path / "bad.yaml").write_text("type: object\nproperties: {id: {type: text}}\n")
    spec_file = tmp_path / "org.yaml"
    spec_file.write_text(
        "org: shop\n"
        "schemas:\n"
        "  - {type: order.created, file: order.json, compatibility: FULL}\n"
        "topics:\n"
        "  - {name: orders, types: [order.created]}\n"
        "policy: {unregistered_types: reject}\n"
    )
    spec = load_spec(spec_file)
    (schema,) = spec.schemas
    assert schema.json_schema == {"type": "object", "required": ["id"]}
    assert schema.compatibility == "FULL" and spec.topics[0].types == ["order.created"]
    assert spec.policy.unregistered_types == "reject"

    spec_file.write_text(
        "org: shop\nschemas:\n  - {type: a.b, file: bad.yaml}\n  - {type: a.b, file: none.json}\n"
    )
    with pytest.raises(SpecError) as err:
        load_spec(spec_file)
    assert err.value.problems[0].startswith("schemas.1.file: cannot read 'none.json'")

    spec_file.write_text("org: shop\nschemas:\n  - {type: a.b, file: bad.yaml}\n")
    with pytest.raises(SpecError) as err:
        load_spec(spec_file)
    assert err.value.problems[0].startswith("schemas.0.schema: not a valid JSON Schema")


def test_a_spec_schema_needs_exactly_one_source_and_unique_types() -> None:
    with pytest.raises(SpecError) as err:
        validate_spec({"org": "shop", "schemas": [{"type": "a.b"}]})
    assert "exactly one of 'schema' (inline) or 'file'" in err.value.problems[0]
    doubled = [{"type": "a.b", "schema": {}}, {"type": "a.b", "schema": {}}]
    with pytest.raises(SpecError) as err:
        validate_spec({"org": "shop", "schemas": doubled})
    assert err.value.problems == ["schemas.1.type: duplicate schema for type 'a.b'"]
