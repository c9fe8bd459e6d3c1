"""``kafkaorg demo``: the whole record path on the local stack, in one command."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Annotated

import typer
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from pydantic import JsonValue
from rich.table import Table

from kafkaorg import client as service
from kafkaorg import org_queries as queries
from kafkaorg.cli._common import console, run, settings
from kafkaorg.cli.org import start_org
from kafkaorg.config import Settings
from kafkaorg.contracts import FlowResult, FlowStatus
from kafkaorg.envelope import Record, new_record
from kafkaorg.errors import BadInputError, KafkaorgError
from kafkaorg.examples import demo_spec
from kafkaorg.kafka import Outgoing, client_config, create_admin, create_producer, produce_and_wait
from kafkaorg.names import kafka_topic
from kafkaorg.spec import OrgSpec
from kafkaorg.temporal import connect_temporal

TASKS = [
    ("Rotate the TLS certificates", "high"),
    ("Write the onboarding guide", "low"),
    ("Investigate the p99 latency spike", "high"),
    ("Tidy the backlog", "low"),
    ("Upgrade the Kafka brokers", "medium"),
]
WAIT_S = 90.0
DEMO_FLOW = "triage-batch"
FLOW_WAIT_S = 60.0


def demo_flow_input() -> dict[str, JsonValue]:
    """The demo flow's input: the first three tasks, as a list to fan out over."""
    return {"tasks": [{"title": t, "priority": p} for t, p in TASKS[:3]]}


async def run_demo_flow(cfg: Settings, org: str) -> tuple[str, FlowResult]:
    """One run of the demo org's flow (no model involved), awaited: its id and result."""
    client = await connect_temporal(cfg)
    handle = await service.start_flow(
        client, org, DEMO_FLOW, demo_flow_input(), run=f"demo-{uuid.uuid4().hex[:8]}"
    )
    try:
        result: FlowResult = await asyncio.wait_for(handle.result(), FLOW_WAIT_S)
    except TimeoutError:
        raise KafkaorgError(
            f"flow run {handle.id} did not end within {FLOW_WAIT_S:.0f}s; "
            f"see `kafkaorg flow status {org} {handle.id}`"
        ) from None
    return handle.id, result


def _show_flow(cfg: Settings, org: str) -> None:
    try:
        run_id, result = run(run_demo_flow(cfg, org))
    except BadInputError as exc:  # an older demo org, started before it had the flow
        console.print(f"flow {DEMO_FLOW!r} not run: {exc} (kafkaorg org apply updates it)")
        return
    if result.status != FlowStatus.COMPLETED:
        raise KafkaorgError(f"flow run {run_id} ended {result.status}: {result.failure}")
    table = Table(
        "task", "priority", "requested_by", title=f"Flow {DEMO_FLOW!r}: map over 3 tasks, then emit"
    )
    tasks = (result.result or {}).get("tasks")
    for row in tasks if isinstance(tasks, list) else []:
        item = row if isinstance(row, dict) else {}
        table.add_row(
            str(item.get("title", "-")),
            str(item.get("priority", "-")),
            str(item.get("requested_by", "-")),
        )
    console.print(table)
    console.print(
        f"flow run {run_id} completed; its summary is on {kafka_topic(org, 'results')} "
        f"(batch.triaged). Its state: kafkaorg flow status {org} {run_id} --json",
        soft_wrap=True,
        highlight=False,
    )


def collect_by_correlation(
    cfg: Settings, topic: str, wanted: set[str], timeout: float
) -> dict[str, Record]:
    """Read ``topic`` from the start until a record for every wanted correlation id arrived."""
    partitions = len(create_admin(cfg).list_topics(topic, timeout=10).topics[topic].partitions)
    consumer = Consumer(
        {
            **client_config(cfg),
            "group.id": f"kafkaorg-demo-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    found: dict[str, Record] = {}
    deadline = time.monotonic() + timeout
    try:
        while set(found) != wanted and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            try:
                record = Record.from_kafka_value(message.value() or b"")
            except ValueError:
                continue
            if record.correlation_id in wanted:
                found[record.correlation_id] = record
    finally:
        consumer.close()
    return found


def _show_tools(cfg: Settings, spec: OrgSpec) -> None:
    """The registry's word on each of the spec's tools: version, status, tests run."""
    for row in queries.tool_statuses(cfg, spec.org, [t.name for t in spec.tools]):
        console.print(
            f"tool {row.tool!r}: version {row.latest_version} {row.latest_status} after "
            f"{row.tests} test(s) in the sandbox"
            f" (current version: {row.current_version or 'none'})",
            highlight=False,
        )


def demo(
    llm: Annotated[
        bool,
        typer.Option(
            "--llm",
            help="Run an llm agent on the local model instead (kafkaorg dev install --llm).",
        ),
    ] = False,
) -> None:
    """Start the local stack and a two-agent org, send tasks, and show what came out."""
    if llm:
        from kafkaorg.cli.demo_llm import demo_llm

        demo_llm()
        return
    from kafkaorg.devstack import DevStack

    cfg = settings()
    stack = DevStack(cfg, console=console)
    stack.install()
    stack.up(workers=True)
    spec = demo_spec()
    try:
        run(start_org(spec, cfg))
        console.print(
            f"[green]org {spec.org!r} started[/] (rule agent 'triage' → tool agent 'scorer' "
            "→ echo agent 'recorder')"
        )
    except BadInputError:
        console.print(f"org {spec.org!r} is already running; using it")

    _show_tools(cfg, spec)
    producer = create_producer(cfg)
    sent = [
        new_record(
            org=spec.org,
            type="task.request",
            source="user:demo",
            payload={"title": title, "priority": priority},
        )
        for title, priority in TASKS
    ]
    produce_and_wait(producer, (Outgoing(kafka_topic(spec.org, "tasks"), r) for r in sent))
    console.print(f"sent {len(sent)} task.request records to {kafka_topic(spec.org, 'tasks')}")

    results_topic = kafka_topic(spec.org, "results")
    with console.status(f"Waiting for the agents' output on {results_topic} …"):
        found = collect_by_correlation(cfg, results_topic, {r.correlation_id for r in sent}, WAIT_S)

    table = Table(
        "task (sent to demo.tasks)",
        "priority",
        "score (tool)",
        "output type",
        "output source",
        "output id",
        title=f"What came out on {results_topic}",
    )
    for record in sent:
        out = found.get(record.correlation_id)
        table.add_row(
            str(record.payload["title"]),
            str(record.payload["priority"]),
            str(out.payload.get("score", "-")) if out else "-",
            out.type if out else "[red]missing[/]",
            out.source if out else "-",
            out.id if out else "-",
        )
    console.print(table)
    _show_flow(cfg, spec.org)
    url = cfg.temporal_ui_org_url(spec.org)
    console.print(f"Temporal Web UI (the agents' workflows): {url}", soft_wrap=True)
    console.print(
        f"Console (records, agents, graph, tools): {cfg.console_url}/orgs/{spec.org}",
        soft_wrap=True,
    )
    console.print("Stop everything with: kafkaorg dev down")
    if len(found) != len(sent):
        raise KafkaorgError(
            f"only {len(found)} of {len(sent)} records came out within {WAIT_S:.0f}s; "
            f"see logs under {cfg.state_dir / 'logs'}"
        )
