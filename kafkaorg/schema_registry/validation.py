"""Payloads checked against their type's registered schema, on the record path.

A ``SchemaBook`` is an immutable snapshot of every org's schemas (compiled validators),
the org's rule for unregistered types and the types each topic declares; ``cache`` keeps
one fresh from PostgreSQL. Pure: no database, no broker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import fastjsonschema
import jsonschema
from jsonschema.exceptions import best_match
from jsonschema.protocols import Validator

from kafkaorg.schema_registry.compatibility import UNDERSTOOD_KEYWORDS

ViolationReason = Literal[
    "schema-invalid", "schema-unregistered", "schema-version-unknown", "schema-wrong-topic"
]


@dataclass(frozen=True)
class Violation:
    """Why a payload may not travel: ``reason`` is the DLQ reason, ``detail`` one line."""

    reason: ViolationReason
    detail: str


FAST_KEYWORDS = (UNDERSTOOD_KEYWORDS - {"items"}) | {"allOf", "anyOf", "oneOf", "not"}
"""Keywords whose meaning is the same in every draft fastjsonschema knows (4, 6, 7) and in
2020-12. ``items`` is one too, in its one-schema form. A schema using anything else
(``$ref``, whose siblings changed meaning; ``prefixItems``…) is checked by jsonschema only."""


def _fast_safe(schema: Any) -> bool:
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, dict):
        return False
    for key, value in schema.items():
        if key == "items":
            if not _fast_safe(value):
                return False
        elif key not in FAST_KEYWORDS:
            return False
        elif key == "properties":
            if not all(_fast_safe(v) for v in value.values()):
                return False
        elif key in ("allOf", "anyOf", "oneOf"):
            if not all(_fast_safe(v) for v in value):
                return False
        elif key in ("not", "additionalProperties") and not _fast_safe(value):
            return False
    return True


class PayloadValidator:
    """One schema's check of payloads: jsonschema's verdict, fast.

    jsonschema (the reference implementation) decides, and words the error. A payload
    that a compiled fastjsonschema function accepts is valid by jsonschema too: the
    schema uses only keywords both read alike (``format`` is asserted by neither). So
    the common case, a valid record, costs a few microseconds instead of tens.
    """

    def __init__(self, json_schema: Mapping[str, Any]) -> None:
        cls = jsonschema.validators.validator_for(
            json_schema, default=jsonschema.Draft202012Validator
        )
        self._reference: Validator = cls(json_schema)
        self._fast: Callable[[Any], Any] | None = None
        if _fast_safe(json_schema):
            definition = {k: v for k, v in json_schema.items() if k != "$schema"}
            try:
                self._fast = fastjsonschema.compile(
                    definition, use_default=False, use_formats=False, detailed_exceptions=False
                )
            except fastjsonschema.JsonSchemaDefinitionException:
                self._fast = None

    @property
    def fast(self) -> bool:
        """Whether valid payloads take the compiled check (else jsonschema alone)."""
        return self._fast is not None

    def first_error(self, payload: object) -> str | None:
        """The most relevant error for a payload (path and message), or None if valid."""
        if self._fast is not None:
            try:
                self._fast(payload)
                return None
            except fastjsonschema.JsonSchemaValueException:
                pass  # jsonschema decides, and says where
        error = best_match(self._reference.iter_errors(payload))
        if error is None:
            return None
        return f"{error.json_path}: {error.message[:300]}"


def compile_schema(json_schema: Mapping[str, Any]) -> PayloadValidator:
    """A validator for one schema (its ``$schema`` dialect, Draft 2020-12 if none)."""
    return PayloadValidator(json_schema)


def schema_problem(json_schema: object) -> str | None:
    """Why a document is not a usable JSON Schema, or None."""
    if not isinstance(json_schema, dict):
        return "a schema must be a JSON object"
    cls = jsonschema.validators.validator_for(json_schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(json_schema)
    except jsonschema.SchemaError as exc:
        where = exc.json_path if hasattr(exc, "json_path") else "$"
        return f"not a valid JSON Schema at {where}: {exc.message}"
    return None


@dataclass(frozen=True)
class SchemaRef:
    """What a registry schema id names (the id Confluent serializers frame values with)."""

    org: str
    record_type: str
    version: int


@dataclass(frozen=True)
class OrgSchemas:
    versions: dict[str, dict[int, PayloadValidator]] = field(default_factory=dict)
    """Record type → version → validator."""
    reject_unregistered: bool = False
    topic_types: dict[str, frozenset[str]] = field(default_factory=dict)
    """Topic → the record types it declares it carries (topics that declare none: absent)."""

    def latest(self, record_type: str) -> int | None:
        versions = self.versions.get(record_type)
        return max(versions) if versions else None


@dataclass(frozen=True)
class SchemaBook:
    orgs: dict[str, OrgSchemas] = field(default_factory=dict)
    ids: dict[int, SchemaRef] = field(default_factory=dict)

    def check(
        self,
        org: str,
        topic: str,
        record_type: str,
        payload: object,
        version: int | None = None,
    ) -> Violation | None:
        """Whether a record may travel on ``topic``; ``version`` None: the latest."""
        schemas = self.orgs.get(org)
        if schemas is None:
            return None
        allowed = schemas.topic_types.get(topic)
        if allowed is not None and record_type not in allowed:
            return Violation(
                "schema-wrong-topic",
                f"topic {topic!r} carries {', '.join(sorted(allowed))}, not {record_type!r}",
            )
        versions = schemas.versions.get(record_type)
        if not versions:
            if schemas.reject_unregistered:
                return Violation(
                    "schema-unregistered",
                    f"type {record_type!r} has no registered schema and org {org!r} "
                    "rejects unregistered types",
                )
            return None
        chosen = max(versions) if version is None else version
        validator = versions.get(chosen)
        if validator is None:
            return Violation(
                "schema-version-unknown",
                f"type {record_type!r} has no schema version {chosen} "
                f"(registered: {', '.join(map(str, sorted(versions)))})",
            )
        error = validator.first_error(payload)
        if error is None:
            return None
        return Violation("schema-invalid", f"{record_type} v{chosen}: payload {error}")
