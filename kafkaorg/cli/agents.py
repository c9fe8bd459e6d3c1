"""``kafkaorg agent`` and ``kafkaorg topic``: inspect and change a running org's parts.

Listings read PostgreSQL (what exists right now, via ``kafkaorg.org_queries``); changes
go through the org's OrgWorkflow, which checks permissions and quotas and announces them
on the audit topic.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table
from temporalio.client import Client

from kafkaorg import client as service
from kafkaorg import org_queries as queries
from kafkaorg.cli._common import check_org_name, console, print_json, run, settings
from kafkaorg.contracts import (
    AgentAction,
    AgentCommand,
    ChangeResult,
    CreateAgentRequest,
    CreateTopicRequest,
)
from kafkaorg.errors import BadInputError
from kafkaorg.llm import require_llm_for
from kafkaorg.spec import TopicClass, TopicSpec, load_agent_spec
from kafkaorg.temporal import connect_temporal

agent_app = typer.Typer(
    help="List, create, pause, resume and stop agents; read an llm agent's archived turns.",
    no_args_is_help=True,
)
topic_app = typer.Typer(help="List and create an org's topics.", no_args_is_help=True)


@agent_app.command("list")
def list_agents(
    org: Annotated[str, typer.Argument(help="Org name.")],
    kind: Annotated[str | None, typer.Option(help="Only agents of this kind.")] = None,
    topic: Annotated[str | None, typer.Option(help="Only agents reading or writing it.")] = None,
    name: Annotated[str | None, typer.Option(help="Only names containing this.")] = None,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Find agents by name, kind or the topics they serve."""
    check_org_name(org)
    rows = queries.list_agents(settings(), org, kind=kind, topic=topic, name=name)
    if json_output:
        print_json([r.model_dump() for r in rows])
        return
    table = Table("agent", "kind", "status", "version", "subscribes", "publishes", "created by")
    for r in rows:
        table.add_row(
            r.name,
            r.kind,
            r.status,
            str(r.version),
            ", ".join(r.subscribes),
            ", ".join(r.publishes),
            r.created_by,
        )
    console.print(table)


def _change(make: Callable[[Client], Awaitable[ChangeResult]]) -> ChangeResult:
    async def _go() -> ChangeResult:
        return await make(await connect_temporal(settings()))

    return run(_go())


def _print(result: ChangeResult, json_output: bool) -> None:
    if json_output:
        print_json(result.model_dump())
        return
    for line in result.summary:
        console.print(line, markup=False, highlight=False)


@agent_app.command("conversation")
def conversation(
    org: Annotated[str, typer.Argument(help="Org name.")],
    agent: Annotated[str, typer.Argument(help="An llm agent of the org.")],
    query: Annotated[str, typer.Option(help="Only turns containing this text.")] = "",
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Turns an llm agent's conversation outgrew (archived in PostgreSQL), oldest first.

    The recent turns are in the agent's workflow state (the Web UI shows them).
    """
    check_org_name(org)
    turns = queries.conversation_turns(settings(), org, agent, query)
    items = [
        {"turn": t.turn, "archived_at": t.archived_at.isoformat(), "text": t.text} for t in turns
    ]
    if json_output:
        print_json(items)
        return
    if not items:
        console.print(f"no archived turns for agent {agent} of org {org}")
    for i in items:
        console.rule(f"turn {i['turn']} (archived {i['archived_at']})")
        console.print(i["text"], markup=False, highlight=False)


@agent_app.command("create")
def create_agent(
    org: Annotated[str, typer.Argument(help="Org name.")],
    file: Annotated[Path, typer.Argument(help="One agent's spec, YAML or JSON.")],
    requested_by: Annotated[str, typer.Option("--as", help="user:<name> or agent:<name>.")] = (
        "user:cli"
    ),
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create an agent in a running org (permissions and quotas apply)."""
    check_org_name(org)
    spec = load_agent_spec(file)
    require_llm_for([spec], settings())
    request = CreateAgentRequest(agent=spec, requested_by=requested_by)
    _print(_change(lambda c: service.create_agent(c, org, request)), json_output)


def _lifecycle(org: str, agent: str, action: AgentAction, reason: str, json_output: bool) -> None:
    check_org_name(org)
    request = AgentCommand(agent=agent, action=action, reason=reason)
    _print(_change(lambda c: service.change_agent(c, org, request)), json_output)


@agent_app.command("pause")
def pause(
    org: str,
    agent: str,
    reason: str = "",
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Pause an agent: its records wait in its inbox until resume."""
    _lifecycle(org, agent, AgentAction.PAUSE, reason, json_output)


@agent_app.command("resume")
def resume(
    org: str,
    agent: str,
    reason: str = "",
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Resume a paused agent; it processes what accumulated."""
    _lifecycle(org, agent, AgentAction.RESUME, reason, json_output)


@agent_app.command("stop")
def stop(
    org: str,
    agent: str,
    reason: str = "",
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Retire an agent for good (its records stay in Kafka)."""
    _lifecycle(org, agent, AgentAction.RETIRE, reason, json_output)


@topic_app.command("list")
def list_topics(
    org: Annotated[str, typer.Argument(help="Org name.")],
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The org's topics with their class, partitions and Kafka configs."""
    check_org_name(org)
    rows = queries.list_topics(settings(), org)
    if json_output:
        print_json([r.model_dump(by_alias=True) for r in rows])
        return
    table = Table("topic", "kafka topic", "class", "partitions")
    for r in rows:
        table.add_row(r.name, r.kafka_topic, r.topic_class, str(r.partitions))
    console.print(table)


@topic_app.command("create")
def create_topic(
    org: Annotated[str, typer.Argument(help="Org name.")],
    name: Annotated[str, typer.Argument(help="Topic name inside the org.")],
    topic_class: Annotated[TopicClass, typer.Option("--class", help="Retention class.")] = (
        TopicClass.WORK
    ),
    partitions: Annotated[int, typer.Option(min=1, max=64)] = 1,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create a topic in a running org, with its class's Kafka configs."""
    check_org_name(org)
    try:
        topic = TopicSpec(name=name, topic_class=topic_class, partitions=partitions)
    except ValidationError as exc:
        raise BadInputError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
    request = CreateTopicRequest(topic=topic)
    _print(_change(lambda c: service.create_topic(c, org, request)), json_output)
