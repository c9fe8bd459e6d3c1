"""``kafkaorg schema``: an org's record types and their versioned JSON Schemas.

What is stored and how a version is checked is in ``kafkaorg.schema_registry``; this
module parses arguments and renders results. A version its type's compatibility mode
refuses is bad input (exit 2), with every breakage listed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from kafkaorg.cli._common import check_org_name, console, print_json, settings
from kafkaorg.schema_registry import store
from kafkaorg.schema_registry.compatibility import Compatibility
from kafkaorg.spec import SpecError, read_document

schema_app = typer.Typer(
    help="List, show, register and check an org's record schemas.", no_args_is_help=True
)

Org = Annotated[str, typer.Argument(help="Org name.")]
RecordType = Annotated[str, typer.Argument(help="Record type, e.g. task.request.")]
SchemaFile = Annotated[Path, typer.Argument(help="JSON Schema file (JSON or YAML).")]
Mode = Annotated[
    Compatibility | None,
    typer.Option(
        "--compatibility",
        case_sensitive=False,
        help="Set the type's mode (checked under it); default: the type's (BACKWARD if new).",
    ),
]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _checked(org: str, record_type: str, path: Path) -> dict[str, Any]:
    """The arguments every command that takes a schema file checks, and the file's schema."""
    check_org_name(org)
    store.check_record_type(record_type)
    return _document(path)


def _document(path: Path) -> dict[str, Any]:
    data = read_document(path)
    if not isinstance(data, dict):
        raise SpecError(str(path), ["a JSON Schema must be an object"])
    return store.check_schema_document(data, str(path))


@schema_app.command("list")
def list_schemas(org: Org, json_output: JsonOutput = False) -> None:
    """Every record type of the org with a schema: latest version, versions, mode."""
    check_org_name(org)
    rows = store.list_types(settings(), org)
    if json_output:
        print_json([r.model_dump(mode="json") for r in rows])
        return
    if not rows:
        console.print(f"org {org!r} has no registered schemas")
        return
    table = Table("type", "latest", "versions", "compatibility", title=f"schemas of {org}")
    for row in rows:
        table.add_row(
            row.record_type, str(row.latest_version), str(row.versions), row.compatibility
        )
    console.print(table)


@schema_app.command("show")
def show_schema(
    org: Org,
    record_type: RecordType,
    version: Annotated[
        int | None, typer.Option("--version", min=1, help="A version (default: the latest).")
    ] = None,
    json_output: JsonOutput = False,
) -> None:
    """One version of a type's schema (the latest unless --version)."""
    check_org_name(org)
    found = store.show(settings(), org, store.check_record_type(record_type), version)
    if json_output:
        print_json(found.model_dump(mode="json"))
        return
    console.print(
        f"{found.record_type} v{found.version} (schema id {found.schema_id}, "
        f"{found.compatibility.value})",
        highlight=False,
    )
    console.print_json(json.dumps(found.json_schema))


@schema_app.command("register")
def register_schema(
    org: Org,
    record_type: RecordType,
    file: SchemaFile,
    compatibility: Mode = None,
    json_output: JsonOutput = False,
) -> None:
    """Register a schema as the type's next version, if its compatibility mode allows."""
    document = _checked(org, record_type, file)
    done = store.register(settings(), org, record_type, document, compatibility)
    if json_output:
        print_json(done.model_dump(mode="json"))
        return
    v = done.version
    what = "registered" if done.created else "unchanged (identical to this version)"
    console.print(
        f"{v.record_type} v{v.version}: {what} (schema id {v.schema_id}, {v.compatibility.value})",
        highlight=False,
    )


@schema_app.command("check")
def check_schema(
    org: Org,
    record_type: RecordType,
    file: SchemaFile,
    compatibility: Mode = None,
    json_output: JsonOutput = False,
) -> None:
    """Whether registering FILE would be accepted, changing nothing (exit 2 if not)."""
    document = _checked(org, record_type, file)
    report = store.check_version(settings(), org, record_type, document, compatibility)
    if json_output:
        print_json(report.model_dump(mode="json"))
    else:
        console.print(report.text(), markup=False, highlight=False, soft_wrap=True)
    if not report.compatible:
        raise typer.Exit(2)
