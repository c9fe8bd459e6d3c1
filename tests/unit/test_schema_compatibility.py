"""What a new schema version breaks, per compatibility mode: the evolutions users make."""

from __future__ import annotations

from typing import Any

import pytest

from kafkaorg.schema_registry.compatibility import Compatibility, breakages, check

V1: dict[str, Any] = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}},
    "required": ["id"],
}


def _with(**changes: Any) -> dict[str, Any]:
    props = {**V1["properties"], **changes.pop("properties", {})}
    return {**V1, **changes, "properties": props}


def _lines(new: dict[str, Any], old: dict[str, Any], mode: Compatibility) -> list[str]:
    return [b.line() for b in check(mode, new, old)]


def test_an_optional_field_added_is_compatible_every_way() -> None:
    v2 = _with(properties={"note": {"type": "string"}})
    for mode in Compatibility:
        assert check(mode, v2, V1) == []


def test_a_new_required_field_breaks_backward_not_forward() -> None:
    v2 = _with(properties={"sku": {"type": "string"}}, required=["id", "sku"])
    assert _lines(v2, V1, Compatibility.BACKWARD) == [
        "backward: $.sku: field made required (records without it were valid)"
    ]
    assert check(Compatibility.FORWARD, v2, V1) == []
    assert [b.direction for b in check(Compatibility.FULL, v2, V1)] == ["backward"]


def test_a_dropped_required_field_breaks_forward_only() -> None:
    v2 = {**V1, "required": []}
    assert check(Compatibility.BACKWARD, v2, V1) == []
    assert _lines(v2, V1, Compatibility.FORWARD) == [
        "forward: $.id: field made required (records without it were valid)"
    ]


def test_type_changes_widening_reads_old_records_narrowing_does_not() -> None:
    widened = _with(properties={"qty": {"type": "number", "minimum": 1}})
    assert check(Compatibility.BACKWARD, widened, V1) == []
    assert [b.path for b in check(Compatibility.FORWARD, widened, V1)] == ["$.qty"]
    narrowed = _with(properties={"id": {"type": "integer"}})
    (found,) = check(Compatibility.BACKWARD, narrowed, V1)
    assert (found.path, found.change) == ("$.id", "type narrowed from string to integer")
    assert "string values would be refused" in found.why


def test_bounds_enums_patterns_and_closed_objects_are_each_named() -> None:
    old = _with(properties={"state": {"type": "string", "enum": ["new", "paid", "sent"]}})
    new = {
        **_with(
            properties={
                "qty": {"type": "integer", "minimum": 5},
                "state": {"type": "string", "enum": ["new", "paid"]},
                "id": {"type": "string", "pattern": "^o-"},
            }
        ),
        "additionalProperties": False,
    }
    changes = {(b.path, b.change) for b in check(Compatibility.BACKWARD, new, old)}
    assert changes == {
        ("$.qty", "minimum raised from 1 to 5"),
        ("$.state", 'enum values removed: "sent"'),
        ("$.id", 'pattern "^o-" added or changed'),
        ("$", "object closed (additionalProperties: false)"),
    }


def test_nested_objects_and_array_items_report_their_paths() -> None:
    old = {
        "type": "object",
        "properties": {
            "lines": {
                "type": "array",
                "items": {"type": "object", "properties": {"sku": {"type": "string"}}},
            }
        },
    }
    new = {
        "type": "object",
        "properties": {
            "lines": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"sku": {"type": "string"}},
                    "required": ["sku"],
                },
            }
        },
    }
    assert [b.path for b in breakages(new, old)] == ["$.lines[].sku"]


def test_a_field_removed_from_a_closed_object_breaks_backward() -> None:
    old = {**V1, "additionalProperties": False}
    new = {**old, "properties": {"id": {"type": "string"}}}
    (found,) = check(Compatibility.BACKWARD, new, old)
    assert (found.path, found.change) == ("$.qty", "field removed from a closed object")


def test_constructs_the_check_does_not_understand_are_never_passed_silently() -> None:
    old = {**V1, "oneOf": [{"required": ["id"]}]}
    new = {**V1, "oneOf": [{"required": ["qty"]}]}
    (found,) = check(Compatibility.BACKWARD, new, old)
    assert found.change == "'oneOf' changed"
    assert check(Compatibility.BACKWARD, old, old) == []


@pytest.mark.parametrize("mode", list(Compatibility))
def test_a_first_version_and_mode_none_check_nothing(mode: Compatibility) -> None:
    assert check(mode, {"type": "string"}, None) == []
    assert check(Compatibility.NONE, {"type": "string"}, V1) == []
