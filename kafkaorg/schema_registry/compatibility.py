"""Whether one JSON Schema can read what another accepts: the breakages, each with its place.

Pure functions over schema documents. ``breakages(reader, writer)`` lists the ways a
payload valid under ``writer`` may be refused by ``reader``. BACKWARD means the new
version reads the old one's records, FORWARD the reverse, FULL both. The checks are the
ones that decide real evolutions (types, required fields, closed objects, enums, bounds,
patterns, array items), not a general subschema proof: a construct they do not
understand (``$ref``, ``oneOf``…) changed between versions is reported as a breakage
rather than passed.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from pydantic import BaseModel


class Compatibility(StrEnum):
    BACKWARD = "BACKWARD"
    """A new version reads every record written with the latest one (consumers upgrade first)."""
    FORWARD = "FORWARD"
    """The latest version reads every record written with the new one (producers first)."""
    FULL = "FULL"
    NONE = "NONE"


class Breakage(BaseModel):
    """One way a record valid under one version is refused by the other."""

    path: str
    """Where in the payload: ``$`` is the payload, ``$.items[]`` an array's elements."""
    change: str
    why: str
    direction: str = ""
    """``backward`` (the new version cannot read old records) or ``forward``."""

    def line(self) -> str:
        where = f"{self.direction}: " if self.direction else ""
        return f"{where}{self.path}: {self.change} ({self.why})"


UNDERSTOOD_KEYWORDS = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "items", "enum", "const",
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
        "minLength", "maxLength", "pattern", "format", "minItems", "maxItems",
        "uniqueItems", "minProperties", "maxProperties",
        # Annotations: they never refuse a value.
        "$schema", "$id", "title", "description", "default", "examples", "$comment",
        "deprecated", "readOnly", "writeOnly",
    }
)  # fmt: skip
"""The keywords this check compares; validation's fast path reads the same ones."""

_ALL_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})


def _types(schema: dict[str, Any]) -> frozenset[str]:
    declared = schema.get("type")
    if declared is None:
        return _ALL_TYPES
    names = {declared} if isinstance(declared, str) else set(declared)
    if "number" in names:
        names.add("integer")  # every integer is a number
    return frozenset(names)


def _as_schema(value: Any) -> dict[str, Any]:
    """``true``/absent accepts anything, ``false`` nothing (as an empty ``enum``)."""
    if value is True or value is None:
        return {}
    if value is False:
        return {"enum": []}
    return value if isinstance(value, dict) else {}


def _lower_bound_raised(reader: Any, writer: Any) -> bool:
    return reader is not None and (writer is None or reader > writer)


def _upper_bound_lowered(reader: Any, writer: Any) -> bool:
    return reader is not None and (writer is None or reader < writer)


def breakages(reader: Any, writer: Any, path: str = "$") -> list[Breakage]:
    """Every way a value valid under ``writer`` may fail ``reader``."""
    r, w = _as_schema(reader), _as_schema(writer)
    found: list[Breakage] = []

    def broke(where: str, change: str, why: str) -> None:
        found.append(Breakage(path=where, change=change, why=why))

    for key in sorted((r.keys() | w.keys()) - UNDERSTOOD_KEYWORDS):
        if _canonical(r.get(key)) != _canonical(w.get(key)):
            broke(path, f"'{key}' changed", "this check cannot prove such a change safe")

    lost = _types(w) - _types(r)
    if lost:
        broke(
            path,
            f"type narrowed from {_type_text(w)} to {_type_text(r)}",
            f"{', '.join(sorted(lost))} values would be refused",
        )
    if "enum" in r:
        if "enum" not in w:
            broke(path, "enum added", "values outside it were allowed")
        else:
            dropped = [v for v in w["enum"] if v not in r["enum"]]
            if dropped:
                broke(path, f"enum values removed: {_values(dropped)}", "they were allowed")
    if "const" in r and ("const" not in w or w["const"] != r["const"]):
        broke(path, f"const {json.dumps(r['const'])} required", "other values were allowed")

    for key, why in (
        ("minimum", "smaller numbers were allowed"),
        ("exclusiveMinimum", "smaller numbers were allowed"),
        ("minLength", "shorter strings were allowed"),
        ("minItems", "shorter arrays were allowed"),
        ("minProperties", "smaller objects were allowed"),
    ):
        if _lower_bound_raised(r.get(key), w.get(key)):
            broke(path, f"{key} raised from {w.get(key, 'none')} to {r[key]}", why)
    for key, why in (
        ("maximum", "larger numbers were allowed"),
        ("exclusiveMaximum", "larger numbers were allowed"),
        ("maxLength", "longer strings were allowed"),
        ("maxItems", "longer arrays were allowed"),
        ("maxProperties", "larger objects were allowed"),
    ):
        if _upper_bound_lowered(r.get(key), w.get(key)):
            broke(path, f"{key} lowered from {w.get(key, 'none')} to {r[key]}", why)
    for key in ("pattern", "multipleOf", "format"):
        if key in r and r[key] != w.get(key):
            broke(
                path,
                f"{key} {json.dumps(r[key])} added or changed",
                "values it refuses were allowed",
            )
    if r.get("uniqueItems") and not w.get("uniqueItems"):
        broke(path, "uniqueItems required", "arrays with repeats were allowed")

    if "object" in _types(w) & _types(r):
        found += _object_breakages(r, w, path)
    if "array" in _types(w) & _types(r) and ("items" in r or "items" in w):
        found += breakages(r.get("items"), w.get("items"), f"{path}[]")
    return found


def _object_breakages(r: dict[str, Any], w: dict[str, Any], path: str) -> list[Breakage]:
    found: list[Breakage] = []
    r_props: dict[str, Any] = r.get("properties") or {}
    w_props: dict[str, Any] = w.get("properties") or {}
    w_required = set(w.get("required") or ())
    for name in sorted(set(r.get("required") or ()) - w_required):
        found.append(
            Breakage(
                path=f"{path}.{name}",
                change="field made required",
                why="records without it were valid",
            )
        )
    r_extra = r.get("additionalProperties", True)
    w_extra = w.get("additionalProperties", True)
    for name in sorted(w_props.keys() | r_props.keys()):
        where = f"{path}.{name}"
        if name in r_props and name in w_props:
            found += breakages(r_props[name], w_props[name], where)
        elif name in w_props:  # removed: the reader takes it as an additional property
            if r_extra is False:
                found.append(
                    Breakage(
                        path=where,
                        change="field removed from a closed object",
                        why="records carrying it would be refused (additionalProperties: false)",
                    )
                )
            else:
                found += breakages(r_extra, w_props[name], where)
        # A field the new version adds is taken as new: producers are assumed not to have
        # sent fields their schema did not declare (the rule that lets optional fields be
        # added, which Confluent's stricter check refuses on open objects).
    if r_extra is False and w_extra is not False:
        found.append(
            Breakage(
                path=path,
                change="object closed (additionalProperties: false)",
                why="records with fields it does not declare were valid",
            )
        )
    elif isinstance(r_extra, dict) and w_extra is not False:
        found += [
            b.model_copy(update={"change": f"additional properties: {b.change}"})
            for b in breakages(r_extra, w_extra, f"{path}.*")
        ]
    return found


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _values(values: list[Any]) -> str:
    return ", ".join(json.dumps(v) for v in values)


def _type_text(schema: dict[str, Any]) -> str:
    declared = schema.get("type")
    if declared is None:
        return "any"
    return declared if isinstance(declared, str) else "/".join(declared)


def check(
    mode: Compatibility, new: dict[str, Any], previous: dict[str, Any] | None
) -> list[Breakage]:
    """What a new version breaks against the previous one, under ``mode`` (none if first)."""
    if previous is None or mode is Compatibility.NONE:
        return []
    found: list[Breakage] = []
    if mode in (Compatibility.BACKWARD, Compatibility.FULL):
        found += [b.model_copy(update={"direction": "backward"}) for b in breakages(new, previous)]
    if mode in (Compatibility.FORWARD, Compatibility.FULL):
        found += [b.model_copy(update={"direction": "forward"}) for b in breakages(previous, new)]
    return found
