"""``kafkaorg archive``: what is archived, whether it is intact, and reading it back.

The archive itself is ``kafkaorg.archive``; this module parses arguments, shows progress
and renders results. ``verify`` exits 1 when a file is damaged or missing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table
from sqlalchemy import select

from kafkaorg import client as service
from kafkaorg.archive import manifest
from kafkaorg.archive.files import ArchiveStorage
from kafkaorg.archive.reader import verify as verify_archive
from kafkaorg.archive.replay import (
    ArchiveReplayOutcome,
    deliver_archive_replay,
    plan_archive_replay,
)
from kafkaorg.archive.restore import archived_partitions
from kafkaorg.archive.restore import restore as restore_archive
from kafkaorg.archive.schedule import run_archive_now
from kafkaorg.cli._common import (
    check_org_name,
    check_topic_name,
    console,
    count_bar,
    err_console,
    print_json,
    run,
    settings,
)
from kafkaorg.cli.replay import FromOffset, Since, check_replay_names
from kafkaorg.config import Settings
from kafkaorg.contracts import ArchiveResult, CreateTopicRequest
from kafkaorg.db import Topic
from kafkaorg.db.session import db_session
from kafkaorg.errors import BadInputError
from kafkaorg.names import TOPIC_NAME_RE, kafka_topic
from kafkaorg.record_replay import check_replay_target, replay_partitions
from kafkaorg.redelivery import parse_time
from kafkaorg.spec import TopicClass, TopicSpec
from kafkaorg.temporal import connect_temporal

archive_app = typer.Typer(
    help="The archive of audit topics (Parquet): list, verify, replay, restore.",
    no_args_is_help=True,
)

Org = Annotated[str, typer.Argument(help="Org name.")]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


@archive_app.command("list")
def list_archive(
    org: Org,
    topic: Annotated[str | None, typer.Argument(help="Only this topic (e.g. sys.audit).")] = None,
    json_output: JsonOutput = False,
) -> None:
    """The archive's files: topic, partition, offsets, records, size, day."""
    check_org_name(org)
    if topic is not None:
        check_topic_name(topic)
    with db_session(settings()) as session:
        rows = manifest.segments(session, manifest.org_id_or_refuse(session, org), topic)
    if json_output:
        print_json([r.model_dump(mode="json") for r in rows])
        return
    if not rows:
        console.print(f"nothing archived for org {org}" + (f" topic {topic}" if topic else ""))
        return
    table = Table("topic", "partition", "offsets", "records", "size", "first record", "file")
    for r in rows:
        table.add_row(
            r.topic,
            str(r.partition),
            f"{r.start_offset}..{r.end_offset - 1}",
            str(r.records),
            _size(r.bytes),
            r.first_timestamp.strftime("%Y-%m-%d %H:%M:%S") if r.first_timestamp else "-",
            r.path,
        )
    console.print(table)
    console.print(
        f"{len(rows)} file(s), {sum(r.records for r in rows)} record(s), "
        f"{_size(sum(r.bytes for r in rows))} in {settings().archive_location}",
        highlight=False,
        soft_wrap=True,
    )


@archive_app.command("run")
def run_now(org: Org, json_output: JsonOutput = False) -> None:
    """Archive what is new now, without waiting for the org's schedule."""
    check_org_name(org)
    cfg = settings()

    async def go() -> ArchiveResult:
        client = await connect_temporal(cfg)
        return await run_archive_now(client, org)

    with console.status(f"archiving org {org}…"):
        result = run(go())
    if json_output:
        print_json(result.model_dump(mode="json"))
        return
    console.print(
        f"archived {result.records} record(s) in {len(result.segments)} file(s)"
        + (
            f"; {result.expired_unarchived} offset(s) expired before they were archived"
            if result.expired_unarchived
            else ""
        ),
        highlight=False,
    )


@archive_app.command("verify")
def verify(org: Org, json_output: JsonOutput = False) -> None:
    """Read every archived file: present, checksum, readable, the offsets the manifest
    says. Exit 1 if any file is damaged or missing."""
    check_org_name(org)
    cfg = settings()
    with db_session(cfg) as session:
        rows = manifest.segments(session, manifest.org_id_or_refuse(session, org))
    progress = count_bar("verifying {task.description}", show=not json_output and len(rows) > 20)
    with progress:
        bar = progress.add_task(org, total=len(rows))
        report = verify_archive(
            ArchiveStorage(cfg.archive_location), org, rows, lambda: progress.advance(bar)
        )
    if json_output:
        print_json(report.model_dump(mode="json") | {"ok": report.ok})
    else:
        for p in report.problems:
            console.print(
                f"DAMAGED {p.path} ({p.topic}[{p.partition}] from offset {p.start_offset}): "
                f"{p.kind}: {p.detail}",
                highlight=False,
                soft_wrap=True,
            )
        for g in report.gaps:
            console.print(
                f"gap {g.topic}[{g.partition}] offsets {g.start}..{g.end - 1}: expired from "
                "Kafka before they were archived",
                highlight=False,
                soft_wrap=True,
            )
        verdict = "ok" if report.ok else f"{len(report.problems)} damaged"
        console.print(
            f"{report.files} file(s), {report.records} record(s), {_size(report.bytes)}: {verdict}",
            highlight=False,
        )
    if not report.ok:
        raise typer.Exit(1)


async def _deliver(
    cfg: Settings, planned: ArchiveReplayOutcome, *, show_progress: bool
) -> ArchiveReplayOutcome:
    client = await connect_temporal(cfg)
    progress = count_bar("replaying {task.description}", show=show_progress)
    with progress:
        bar = progress.add_task(kafka_topic(planned.org, planned.topic), total=planned.total)
        return await deliver_archive_replay(
            cfg, client, planned, on_progress=lambda n: progress.advance(bar, n)
        )


@archive_app.command("replay")
def replay(
    org: Org,
    topic: Annotated[str, typer.Argument(help="Topic of the org whose records to replay.")],
    to: Annotated[str, typer.Option("--to", help="The agent that receives the records again.")],
    from_offset: FromOffset = None,
    since: Since = None,
    json_output: JsonOutput = False,
) -> None:
    """Like `kafkaorg replay`, past Kafka's retention: the archive serves what Kafka no
    longer has, Kafka what is not archived yet; each record once per run."""
    check_replay_names(org, topic, to)
    if (from_offset is None) == (since is None):
        raise BadInputError("say where to start: --from-offset N or --since TIME (one of them)")
    try:
        since_time = parse_time(since, datetime.now(UTC)) if since is not None else None
    except ValueError as exc:
        raise BadInputError(f"--since: {exc}") from None
    cfg = settings()
    target = check_replay_target(cfg, org, topic, to)
    if not target.subscribed:
        err_console.print(
            f"warning: agent {to!r} does not subscribe to {topic!r}; replaying to it anyway",
            highlight=False,
            soft_wrap=True,
        )
    partitions = replay_partitions(cfg, org, topic, None)
    planned = plan_archive_replay(
        cfg, org, topic, to, partitions, from_offset=from_offset, since=since_time
    )
    name = kafka_topic(org, topic)
    if planned.total == 0:
        if json_output:
            print_json(planned.model_dump(mode="json"))
        else:
            console.print(f"nothing to replay in {name} for that range", highlight=False)
        return
    if not json_output:
        archived = sum(r.count for r in planned.archive_ranges)
        console.print(
            f"replay {planned.run_id}: up to {planned.total} record(s) of {name} "
            f"({archived} from the archive) → agent {to} (mark {planned.mark})",
            highlight=False,
            soft_wrap=True,
        )
        if planned.missing:
            err_console.print(
                f"warning: {planned.missing} offset(s) of the range are neither in Kafka nor "
                "in the archive (they expired before an archive run reached them)",
                highlight=False,
                soft_wrap=True,
            )
    outcome = run(_deliver(cfg, planned, show_progress=not json_output and planned.total >= 1000))
    if json_output:
        print_json(outcome.model_dump(mode="json"))
        return
    console.print(
        f"replayed {outcome.records} record(s) to {to} in {outcome.signals} signal(s): "
        f"{outcome.from_archive} from the archive, {outcome.records - outcome.from_archive} "
        "from Kafka"
        + (f"; {outcome.duplicates} repeated id(s) sent once" if outcome.duplicates else ""),
        highlight=False,
        soft_wrap=True,
    )


def _source_class(cfg: Settings, org: str, topic: str) -> TopicClass:
    if topic.startswith("sys."):
        return TopicClass.AUDIT
    with db_session(cfg) as session:
        found = session.scalar(
            select(Topic.topic_class).where(Topic.kafka_topic == kafka_topic(org, topic))
        )
    return TopicClass(found) if found else TopicClass.AUDIT


@archive_app.command("restore")
def restore(
    org: Org,
    topic: Annotated[str, typer.Argument(help="The archived topic (e.g. sys.audit).")],
    to_topic: Annotated[
        str,
        typer.Option("--to-topic", help="A new (or empty) topic of the org to restore into."),
    ],
    json_output: JsonOutput = False,
) -> None:
    """Write every archived record of TOPIC into another topic of the org, byte for byte
    (same partitions, keys, headers, timestamps). The topic is created (same class,
    enough partitions) if the org does not have it; it must be empty."""
    check_org_name(org)
    check_topic_name(topic)
    if not TOPIC_NAME_RE.match(to_topic):
        raise BadInputError(
            f"--to-topic {to_topic!r} is not valid (it must match {TOPIC_NAME_RE.pattern})"
        )
    if to_topic == topic:
        raise BadInputError("--to-topic must differ from the archived topic")
    cfg = settings()
    rows = archived_partitions(cfg, org, topic)
    with db_session(cfg) as session:
        exists = session.scalar(
            select(Topic.id).where(Topic.kafka_topic == kafka_topic(org, to_topic))
        )
    if exists is None:
        try:
            spec = TopicSpec(
                name=to_topic,
                topic_class=_source_class(cfg, org, topic),
                partitions=max(r.partition for r in rows) + 1,
            )
        except ValidationError as exc:
            raise BadInputError(exc.errors()[0]["msg"]) from None

        async def create() -> None:
            client = await connect_temporal(cfg)
            await service.create_topic(client, org, CreateTopicRequest(topic=spec))

        run(create())
        if not json_output:
            console.print(f"created topic {to_topic} ({spec.topic_class.value})", highlight=False)
    total = sum(r.records for r in rows)
    progress = count_bar("restoring {task.description}", show=not json_output and total >= 1000)
    with progress:
        bar = progress.add_task(kafka_topic(org, to_topic), total=total)
        outcome = restore_archive(
            cfg, org, topic, to_topic, on_progress=lambda n: progress.advance(bar, n)
        )
    if json_output:
        print_json(outcome.model_dump(mode="json"))
        return
    console.print(
        f"restored {outcome.records} record(s) of {topic} from {outcome.files} file(s) "
        f"into {kafka_topic(org, to_topic)}",
        highlight=False,
        soft_wrap=True,
    )
