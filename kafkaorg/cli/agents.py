"""``kafkaorg agent`` and ``kafkaorg topic``: inspect and change a running org's parts.

Listings read PostgreSQL (what exists right now); changes go through the org's
OrgWorkflow, which checks permissions and quotas and announces them on the audit topic.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table
from sqlalchemy import select
from temporalio.client import Client

from kafkaorg import client as service
from kafkaorg.cli._common import check_org_name, console, db_session, print_json, run, settings
from kafkaorg.contracts import (
    AgentAction,
    AgentCommand,
    ChangeResult,
    CreateAgentRequest,
    CreateTopicRequest,
)
from kafkaorg.db import Agent, Org, Topic
from kafkaorg.db.models import ConversationTurn
from kafkaorg.errors import BadInputError
from kafkaorg.llm import require_llm_for
from kafkaorg.llm.conversation import turn_text
from kafkaorg.spec import AgentSpec, TopicClass, TopicSpec, load_agent_spec
from kafkaorg.temporal import connect_temporal

agent_app = typer.Typer(
    help="List, create, pause, resume and stop agents; read an llm agent's archived turns.",
    no_args_is_help=True,
)
topic_app = typer.Typer(help="List and create an org's topics.", no_args_is_help=True)


def _rows(org: str, query: Any) -> list[Any]:
    with db_session(settings()) as session:
        if session.scalar(select(Org.id).where(Org.name == org)) is None:
            raise BadInputError(f"unknown org {org!r}")
        return list(session.execute(query).all())


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
    rows = _rows(
        org,
        select(
            Agent.name,
            Agent.kind,
            Agent.status,
            Agent.version,
            Agent.created_by,
            Agent.parent_agent,
            Agent.spec,
            Agent.status_reason,
        )
        .join(Org)
        .where(Org.name == org)
        .order_by(Agent.name),
    )
    items = []
    for r in rows:
        spec = AgentSpec.model_validate(r.spec)
        if kind and r.kind != kind:
            continue
        if topic and topic not in spec.subscribes + spec.publishes:
            continue
        if name and name not in r.name:
            continue
        items.append(
            {
                "name": r.name,
                "kind": r.kind,
                "status": r.status,
                "version": r.version,
                "created_by": r.created_by,
                "parent_agent": r.parent_agent,
                "subscribes": spec.subscribes,
                "publishes": spec.publishes,
                "can_create_agents": spec.can_create_agents,
                "status_reason": r.status_reason,
            }
        )
    if json_output:
        print_json(items)
        return
    table = Table("agent", "kind", "status", "version", "subscribes", "publishes", "created by")
    for i in items:
        table.add_row(
            i["name"],
            i["kind"],
            i["status"],
            str(i["version"]),
            ", ".join(i["subscribes"]),
            ", ".join(i["publishes"]),
            i["created_by"],
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
    of_agent = (
        select(ConversationTurn).join(Org).where(Org.name == org, ConversationTurn.agent == agent)
    )
    # The agent's current conversation: the chain it archived into last.
    latest_chain = (
        of_agent.with_only_columns(ConversationTurn.chain_id)
        .order_by(ConversationTurn.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    rows = _rows(
        org,
        of_agent.with_only_columns(
            ConversationTurn.turn, ConversationTurn.created_at, ConversationTurn.messages
        )
        .where(ConversationTurn.chain_id == latest_chain)
        .order_by(ConversationTurn.turn),
    )
    needle = query.lower()
    items = [
        {"turn": r.turn, "archived_at": r.created_at.isoformat(), "text": text}
        for r in rows
        if needle in (text := turn_text(r.messages)).lower()
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
    rows = _rows(
        org,
        select(Topic.name, Topic.kafka_topic, Topic.topic_class, Topic.partitions, Topic.configs)
        .join(Org)
        .where(Org.name == org)
        .order_by(Topic.name),
    )
    items = [
        {
            "name": r.name,
            "kafka_topic": r.kafka_topic,
            "class": r.topic_class,
            "partitions": r.partitions,
            "configs": r.configs,
        }
        for r in rows
    ]
    if json_output:
        print_json(items)
        return
    table = Table("topic", "kafka topic", "class", "partitions")
    for i in items:
        table.add_row(i["name"], i["kafka_topic"], i["class"], str(i["partitions"]))
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
