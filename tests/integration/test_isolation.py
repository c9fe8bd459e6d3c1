"""Adversarial isolation: an agent of org A tries to reach org B; every attempt is refused.

Both orgs share topic and agent names on purpose (``inbox``, ``outbox``, ``echo``),
so anything keyed by name alone instead of by (org, name) would leak. Each refusal
checks its reason and that PostgreSQL's agents and topics of both orgs are unchanged.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from temporalio.client import WorkflowUpdateFailedError

from kafkaorg.contracts import AgentCommand, CreateAgentRequest
from kafkaorg.db import Agent, Org, Topic
from kafkaorg.envelope import Record
from kafkaorg.names import agent_workflow_id, dlq_topic, kafka_topic, org_workflow_id
from kafkaorg.spec import AgentSpec, SpecError, validate_spec
from tests.support import Platform, db_sessions, raw_messages, run_cli, task, unique_org
from workflows.agent import AgentWorkflow
from workflows.org import OrgWorkflow

pytestmark = pytest.mark.integration


def _spec(org: str, own: str) -> dict[str, Any]:
    return {
        "org": org,
        "topics": [
            {"name": "inbox", "class": "work", "partitions": 1},
            {"name": "outbox", "class": "work", "partitions": 1},
            {"name": "tasks", "class": "work", "partitions": 1},
        ],
        "agents": [
            {"name": "echo", "kind": "echo", "subscribes": ["inbox"], "publishes": ["outbox"]},
            {
                "name": "boss",
                "kind": "echo",
                "subscribes": ["tasks"],
                "publishes": ["outbox"],
                "can_create_agents": True,
            },
            {"name": own, "kind": "echo", "subscribes": ["tasks"], "publishes": ["outbox"]},
        ],
    }


def _counts(platform: Platform, *orgs: str) -> dict[str, tuple[int, int, list[str]]]:
    """Per org: (agents, topics, agent names) as PostgreSQL holds them."""
    out = {}
    with db_sessions(platform.settings)() as session:
        for org in orgs:
            org_id = session.scalar(select(Org.id).where(Org.name == org))
            agents = session.scalar(select(func.count()).where(Agent.org_id == org_id))
            topics = session.scalar(select(func.count()).where(Topic.org_id == org_id))
            names = sorted(session.scalars(select(Agent.name).where(Agent.org_id == org_id)))
            out[org] = (agents or 0, topics or 0, names)
    return out


async def _refused(call: Any) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await call
    cause = info.value.cause
    return str(getattr(cause, "message", None) or cause)


@pytest.fixture
async def orgs(platform: Platform) -> tuple[str, str]:
    a, b = unique_org("iso-a"), unique_org("iso-b")
    await platform.start_org(_spec(a, "a-only"))
    await platform.start_org(_spec(b, "b-only"))
    return a, b


async def test_agents_of_one_org_cannot_change_another(
    platform: Platform, orgs: tuple[str, str]
) -> None:
    a, b = orgs
    before = await asyncio.to_thread(_counts, platform, a, b)
    org_b = platform.client.get_workflow_handle_for(OrgWorkflow.run, org_workflow_id(b))
    org_a = platform.client.get_workflow_handle_for(OrgWorkflow.run, org_workflow_id(a))
    child = AgentSpec(name="spy", kind="echo", subscribes=["inbox"], publishes=["outbox"])

    # (a) An agent of A asks B's meta-agent for an agent: it is not an agent of B.
    reason = await _refused(
        org_b.execute_update(
            OrgWorkflow.create_agent,
            CreateAgentRequest(agent=child, requested_by="agent:a-only"),
        )
    )
    assert "requester 'agent:a-only' is not a live agent of this org" in reason

    # (b) A privileged agent of A asks for an agent wired to B's topics or to escapes.
    for bad in (f"{b}.tasks", f"../{b}", "other.tasks", f"{b}.inbox"):
        for field in ("subscribes", "publishes"):
            wiring = {"subscribes": ["tasks"], "publishes": ["outbox"], field: [bad]}
            spec = AgentSpec.model_validate({"name": "spy", "kind": "echo", **wiring})
            reason = await _refused(
                org_a.execute_update(
                    OrgWorkflow.create_agent,
                    CreateAgentRequest(agent=spec, requested_by="agent:boss"),
                )
            )
            assert f"unknown topic {bad!r}" in reason, reason

    # (g) An agent of A pauses or retires B's agents: refused, whatever the action.
    for action in ("pause", "resume", "retire"):
        for target in ("echo", "b-only", "boss"):
            reason = await _refused(
                org_b.execute_update(
                    OrgWorkflow.change_agent,
                    AgentCommand(agent=target, action=action, requested_by="agent:a-only"),
                )
            )
            assert "requester 'agent:a-only' is not a live agent of this org" in reason, reason

    after = await asyncio.to_thread(_counts, platform, a, b)
    assert after == before
    statuses = {i.name: i.status for i in await org_b.query(OrgWorkflow.agents)}
    assert "spy" not in statuses and all(s != "paused" for s in statuses.values()), statuses


async def test_a_same_named_agent_of_another_org_cannot_create_agents(
    platform: Platform, orgs: tuple[str, str]
) -> None:
    a, b = orgs
    before = await asyncio.to_thread(_counts, platform, b)
    org_b = platform.client.get_workflow_handle_for(OrgWorkflow.run, org_workflow_id(b))
    child = AgentSpec(name="spy", kind="echo", subscribes=["tasks"], publishes=["outbox"])
    # A's boss, named as agents are named when they ask (agent:<org>:<name>): refused by B.
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await org_b.execute_update(
            OrgWorkflow.create_agent,
            CreateAgentRequest(agent=child, requested_by=f"agent:{a}:boss"),
        )
    assert f"belongs to org {a!r}" in str(getattr(info.value.cause, "message", info.value.cause))
    assert await asyncio.to_thread(_counts, platform, b) == before


async def test_records_never_cross_orgs(platform: Platform, orgs: tuple[str, str]) -> None:
    a, b = orgs
    before = await asyncio.to_thread(_counts, platform, a, b)

    # (c) An envelope claiming org B on A's topic: A's DLQ, reason wrong-org; B gets nothing.
    forged = task(b, 1)
    await platform.send(a, "inbox", [forged])
    dlq = await asyncio.to_thread(raw_messages, platform.settings, dlq_topic(a), 1, 60.0)
    assert len(dlq) == 1
    headers = dict(dlq[0].headers() or [])
    assert headers["dlq.reason"] == b"wrong-org"
    assert f"record org {b!r} on a topic of {a!r}".encode() in headers["dlq.error"]

    # (d) A record on B's topic reaches B's echo, never A's echo of the same name.
    genuine = task(b, 2)
    await platform.send(b, "inbox", [genuine])
    out_b = await platform.collect(b, "outbox", 1)
    assert [c.record.causation_id for c in out_b] == [genuine.id]
    assert all(c.record.org == b for c in out_b)

    # A sentinel through A proves A's pipeline ran past the forged and the foreign record.
    sentinel = task(a, 3)
    await platform.send(a, "inbox", [sentinel])
    out_a = await platform.collect(a, "outbox", 1, settle=2.0)
    assert [c.record.causation_id for c in out_a] == [sentinel.id]
    out_b = await platform.collect(b, "outbox", 1, settle=2.0)
    assert [c.record.causation_id for c in out_b] == [genuine.id], "forged record reached B"
    for topic in ("inbox", "tasks"):
        leaked = await asyncio.to_thread(
            raw_messages, platform.settings, kafka_topic(b, topic), 5, 2.0
        )
        ids = {Record.from_kafka_value(m.value()).id for m in leaked}
        assert forged.id not in ids and sentinel.id not in ids
    echo_a = platform.client.get_workflow_handle_for(
        AgentWorkflow.run, agent_workflow_id(a, "echo")
    )
    status_a = await echo_a.query(AgentWorkflow.status)
    assert status_a.received == 1 and status_a.org == a
    assert await asyncio.to_thread(_counts, platform, a, b) == before


async def test_state_of_one_org_is_invisible_to_another(
    platform: Platform, orgs: tuple[str, str], tmp_path: Path
) -> None:
    a, b = orgs
    before = await asyncio.to_thread(_counts, platform, a, b)

    # (f) Queries are per org; the listings of A never name B's agents.
    org_a = platform.client.get_workflow_handle_for(OrgWorkflow.run, org_workflow_id(a))
    infos = await org_a.query(OrgWorkflow.agents)
    assert sorted(i.name for i in infos) == ["a-only", "boss", "echo"]
    status = await org_a.query(OrgWorkflow.status)
    assert status.org == a and "b-only" not in status.agents
    listed = await asyncio.to_thread(run_cli, "agent", "list", a, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert sorted(r["name"] for r in rows) == ["a-only", "boss", "echo"]
    assert "b-only" not in listed.stdout and b not in listed.stdout

    # (e) An org spec declaring a topic 'sys' or with a dot or slash is refused before anything.
    for bad in ("sys", f"{b}.tasks", "a/b", "sys.audit"):
        name = unique_org("iso-e")
        data = {"org": name, "topics": [{"name": bad, "class": "work"}], "agents": []}
        with pytest.raises(SpecError) as info:
            validate_spec(data)
        assert bad in str(info.value.problems), info.value.problems
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(data))
        started: subprocess.CompletedProcess[str] = await asyncio.to_thread(
            run_cli, "org", "start", str(path)
        )
        assert started.returncode == 2, started.stderr + started.stdout
        assert "reserved" in started.stderr or "must match" in started.stderr, started.stderr
        with db_sessions(platform.settings)() as session:
            assert session.scalar(select(Org.id).where(Org.name == name)) is None
    assert await asyncio.to_thread(_counts, platform, a, b) == before
