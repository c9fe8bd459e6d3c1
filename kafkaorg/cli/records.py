"""``kafkaorg send`` and ``kafkaorg tail``: put records on an org's topic and read them back.

Producing and reading are in ``kafkaorg/records.py``; this module parses the
arguments and prints each record as a line (or as JSON).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from kafkaorg.cli._common import (
    check_org_name,
    check_topic_name,
    console,
    settings,
)
from kafkaorg.envelope import TYPE_RE, parse_payload_json
from kafkaorg.errors import BadInputError
from kafkaorg.names import kafka_topic
from kafkaorg.records import TailedRecord, send_records, tail_records


def send(
    org: Annotated[str, typer.Argument(help="Org name.")],
    topic: Annotated[str, typer.Argument(help="Topic name inside the org.")],
    type_: Annotated[str, typer.Option("--type", help="Record type, e.g. task.request.")],
    payload: Annotated[
        str,
        typer.Option(help="Payload as JSON, or @FILE to read it from a file (large payloads)."),
    ] = "{}",
    correlation_id: Annotated[str | None, typer.Option(help="Defaults to the record's id.")] = None,
    source: Annotated[str, typer.Option(help="Sender, user:<name> or system:<name>.")] = "user:cli",
    count: Annotated[int, typer.Option(min=1, help="Send this many records (load tests).")] = 1,
) -> None:
    """Send a record (in the kafkaorg envelope) to an org's topic."""
    check_org_name(org)
    check_topic_name(topic)
    if not TYPE_RE.match(type_):
        raise BadInputError(f"--type {type_!r} is not valid (it must match {TYPE_RE.pattern})")
    where = "--payload"
    if payload.startswith("@"):
        where = f"--payload {payload}"
        try:
            payload = Path(payload[1:]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInputError(f"{where}: cannot read the file ({exc})") from None
    try:
        body = parse_payload_json(payload)
    except json.JSONDecodeError as exc:
        raise BadInputError(
            f"{where} is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    records = send_records(
        settings(),
        org,
        topic,
        type=type_,
        payload=body,
        correlation_id=correlation_id,
        source=source,
        count=count,
    )
    name = kafka_topic(org, topic)
    for record in records[:10]:
        console.print(f"sent {record.id} to {name}")
    if count > 10:
        console.print(f"… and {count - 10} more")


def _format(item: TailedRecord) -> str:
    record, where = item.record, f"[{item.partition}@{item.offset}]"
    if record is None:
        text = (item.value or b"").decode("utf-8", errors="replace")
        return f"{where} (raw) {text[:500]}"
    return (
        f"{where} {record.type} from {record.source} id={record.id} "
        f"caused-by={record.causation_id or '-'} hops={record.hops} "
        f"{json.dumps(record.payload)[:500]}"
    )


def _as_json(value: bytes | None) -> str:
    """The value as one line of JSON; a value that is no JSON as ``{"raw": text}``."""
    try:
        return json.dumps(json.loads(value or b"null"))
    except ValueError:
        return json.dumps({"raw": (value or b"").decode("utf-8", "replace")})


def tail(
    org: Annotated[str, typer.Argument(help="Org name.")],
    topic: Annotated[
        str, typer.Argument(help="Topic name inside the org (or sys.audit, sys.dlq).")
    ],
    from_beginning: Annotated[bool, typer.Option("--from-beginning")] = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep waiting for records.")
    ] = False,
    max_records: Annotated[int | None, typer.Option("--max", min=1, help="Stop after N.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON value per line.")] = False,
    timeout: Annotated[
        float, typer.Option(help="With --follow: give up after S seconds idle.")
    ] = 0.0,
) -> None:
    """Print records of an org's topic; without --follow, stop at the end of the topic."""
    check_org_name(org)
    check_topic_name(topic)
    records = tail_records(
        settings(),
        org,
        topic,
        from_beginning=from_beginning,
        follow=follow,
        idle_timeout=timeout,
        max_records=max_records,
    )
    try:
        for item in records:
            if json_output and item.resolved:
                # A payload stored by reference is printed in place, as it was sent.
                typer.echo(item.record.model_dump_json() if item.record else _as_json(item.value))
            elif json_output:
                typer.echo(_as_json(item.value))
            else:
                console.print(_format(item), markup=False, highlight=False)
    except KeyboardInterrupt:
        pass
    finally:
        records.close()
