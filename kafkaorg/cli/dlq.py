"""``kafkaorg dlq list|redrive``: see what went to ``<org>.sys.dlq`` and send records back.

What is read and how a redrive works is in ``kafkaorg/dlq.py``; this module parses
arguments and renders its results.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from kafkaorg.cli._common import (
    check_org_name,
    check_topic_name,
    console,
    print_json,
    settings,
)
from kafkaorg.dlq import list_dlq, redrive_dlq
from kafkaorg.errors import BadInputError
from kafkaorg.names import dlq_topic

dlq_app = typer.Typer(help="Inspect an org's dead-letter queue and redrive records.")


@dlq_app.command("list")
def list_entries(
    org: Annotated[str, typer.Argument(help="Org name.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print the entries as JSON.")] = False,
    max_entries: Annotated[
        int | None, typer.Option("--max", min=1, help="Show only the newest N.")
    ] = None,
) -> None:
    """List the org's dead-lettered records: why, from where, and whether they can be redriven."""
    check_org_name(org)
    entries = list_dlq(settings(), org, max_entries)
    if json_output:
        print_json([e.model_dump(mode="json") for e in entries])
        return
    if not entries:
        console.print(f"{dlq_topic(org)} is empty")
        return
    table = Table("id", "when", "reason", "from", "agent", "error", "redrive")
    for e in entries:
        origin = e.topic or "?"
        if e.partition is not None and e.offset is not None:
            origin += f"[{e.partition}]@{e.offset}"
        table.add_row(
            e.id,
            e.when.isoformat(timespec="seconds") if e.when else "-",
            e.reason,
            origin,
            e.agent or "-",
            (e.error or "-")[:200],
            "yes" if e.redrivable else "no",
        )
    console.print(table)


@dlq_app.command("redrive")
def redrive(
    org: Annotated[str, typer.Argument(help="Org name.")],
    ids: Annotated[
        list[str] | None, typer.Option("--id", help="DLQ record id (from `dlq list`); repeatable.")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every redrivable record.")] = False,
    topic: Annotated[
        str | None,
        typer.Option(help="Topic to redrive to when the DLQ record does not name its own."),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the outcomes as JSON.")
    ] = False,
) -> None:
    """Send failed work back to its original topic (same record id, `kafkaorg.redrive` header).

    Only the agents that failed it receive it again, once per DLQ entry (marked
    ``redrive:<id>``, so it gets past their dedup exactly once). Poison records
    (not JSON, bad envelope, too large, ...) are refused: the DLQ has no usable copy.
    """
    check_org_name(org)
    if topic is not None:
        check_topic_name(topic)
    if bool(ids) == all_:
        raise BadInputError("say which records to redrive: --id ID (repeatable) or --all")
    result = redrive_dlq(settings(), org, None if all_ else ids, topic=topic)

    if json_output:
        print_json([o.model_dump() for o in result.outcomes])
    else:
        for o in result.outcomes:
            if o.redriven:
                who = f" (for {', '.join(sorted(set(o.agents)))})" if o.agents else ""
                console.print(f"redriven {o.id} → {o.topic}{who}", highlight=False)
            else:
                console.print(f"refused  {o.id}: {o.reason}", highlight=False, soft_wrap=True)
        console.print(
            f"{result.produced} record(s) redriven, {len(result.refused)} refused",
            highlight=False,
        )
    if ids and not result.produced:
        refused = result.refused[0]
        raise BadInputError(f"cannot redrive {refused.id}: {refused.reason}")
