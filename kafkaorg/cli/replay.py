"""``kafkaorg replay ORG TOPIC --to AGENT``: re-deliver past records to one agent, on purpose.

How a replay marks, reads and delivers records is in ``kafkaorg/record_replay.py``;
this module parses the arguments (names, ``--since``/``--until``), warns, shows
progress and renders the outcome.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from kafkaorg.cli._common import (
    check_org_name,
    console,
    count_bar,
    err_console,
    print_json,
    run,
    settings,
)
from kafkaorg.config import Settings
from kafkaorg.errors import BadInputError
from kafkaorg.names import AGENT_NAME_RE, TOPIC_NAME_RE, kafka_topic
from kafkaorg.record_replay import (
    ReplayOutcome,
    check_replay_target,
    deliver_replay,
    plan_replay,
    replay_partitions,
)
from kafkaorg.redelivery import parse_time, parse_until
from kafkaorg.temporal import connect_temporal

_PROGRESS_FROM = 1000
"""Ranges at least this large show a progress bar (on stderr)."""


async def _deliver(cfg: Settings, planned: ReplayOutcome, *, show_progress: bool) -> ReplayOutcome:
    """Deliver the planned run, with a progress bar on stderr when asked for."""
    client = await connect_temporal(cfg)
    progress = count_bar("replaying {task.description}", show=show_progress)
    with progress:
        bar = progress.add_task(kafka_topic(planned.org, planned.topic), total=planned.total)
        return await deliver_replay(
            cfg, client, planned, on_progress=lambda n: progress.advance(bar, n)
        )


FromOffset = Annotated[
    int | None,
    typer.Option("--from-offset", min=0, help="First offset (in each partition) to replay."),
]
Since = Annotated[
    str | None,
    typer.Option(help="Replay records from this time: ISO-8601 (UTC if no zone) or 10m, 2h."),
]


def check_replay_names(org: str, topic: str, to: str) -> None:
    """The names a replay takes are well formed (sys topics are not replayed)."""
    check_org_name(org)
    if not TOPIC_NAME_RE.match(topic):
        raise BadInputError(
            f"topic name {topic!r} is not valid (it must match {TOPIC_NAME_RE.pattern}; "
            "sys topics cannot be replayed, see `kafkaorg dlq redrive`)"
        )
    if not AGENT_NAME_RE.match(to):
        raise BadInputError(
            f"agent name {to!r} is not valid (it must match {AGENT_NAME_RE.pattern})"
        )


def replay(
    org: Annotated[str, typer.Argument(help="Org name.")],
    topic: Annotated[str, typer.Argument(help="Topic of the org whose records to replay.")],
    to: Annotated[str, typer.Option("--to", help="The agent that receives the records again.")],
    from_offset: FromOffset = None,
    since: Since = None,
    until: Annotated[
        str | None,
        typer.Option(help="Stop before this offset (a number) or before this time."),
    ] = None,
    partition: Annotated[
        int | None, typer.Option(min=0, help="Only this partition (default: all).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Deliver past records of ORG.TOPIC to one agent again, deliberately.

    Each run gets a fresh id: the agent processes every record once more per run
    (outputs with new ids and the header kafkaorg.mark: replay:<run id>), and
    never twice within one run. Records appended after the command starts are
    not part of the range.
    """
    check_replay_names(org, topic, to)
    if (from_offset is None) == (since is None):
        raise BadInputError("say where to start: --from-offset N or --since TIME (one of them)")
    now = datetime.now(UTC)
    try:
        since_time = parse_time(since, now) if since is not None else None
        until_value = parse_until(until, now) if until is not None else None
    except ValueError as exc:
        raise BadInputError(f"--since/--until: {exc}") from None

    cfg = settings()
    target = check_replay_target(cfg, org, topic, to)
    partitions = replay_partitions(cfg, org, topic, partition)
    if not target.subscribed:
        err_console.print(
            f"warning: agent {to!r} does not subscribe to {topic!r}; replaying to it anyway",
            highlight=False,
            soft_wrap=True,
        )
    if target.status == "paused":
        err_console.print(
            f"warning: agent {to!r} is paused: the records wait in its inbox until it resumes",
            highlight=False,
            soft_wrap=True,
        )

    planned = plan_replay(
        cfg,
        org,
        topic,
        to,
        partitions,
        from_offset=from_offset,
        since=since_time,
        until=until_value,
    )
    name = kafka_topic(org, topic)
    if planned.total == 0:
        if json_output:
            print_json(planned.model_dump(mode="json"))
        else:
            console.print(
                f"nothing to replay in {name} for that range", highlight=False, soft_wrap=True
            )
        return
    if not json_output:
        console.print(
            f"replay {planned.run_id}: up to {planned.total} record(s) of {name} → agent {to} "
            f"(mark {planned.mark})",
            highlight=False,
            soft_wrap=True,
        )
    show = not json_output and planned.total >= _PROGRESS_FROM
    outcome = run(_deliver(cfg, planned, show_progress=show))

    if json_output:
        print_json(outcome.model_dump(mode="json"))
        return
    skipped = sum(outcome.skipped.values())
    details = ", ".join(f"{n} {reason}" for reason, n in sorted(outcome.skipped.items()))
    console.print(
        f"replayed {outcome.records} record(s) to {to} in {outcome.signals} signal(s)"
        + (f"; skipped {skipped} that are no kafkaorg record ({details})" if skipped else "")
        + (f"; {outcome.duplicates} repeated id(s) sent once" if outcome.duplicates else ""),
        highlight=False,
        soft_wrap=True,
    )
