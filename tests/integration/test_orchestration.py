"""The org as durable, reconciled state: plan/apply, lifecycle, permissions, audit."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select
from temporalio.client import WorkflowUpdateFailedError

from kafkaorg.contracts import AgentCommand, CreateAgentRequest
from kafkaorg.db import Agent, Org, Subscription, Topic
from kafkaorg.names import agent_workflow_id, org_workflow_id
from kafkaorg.spec import validate_spec
from tests.support import (
    Platform,
    db_sessions,
    echo_spec,
    raw_messages,
    run_cli,
    run_cli_raw,
    task,
    unique_org,
)
from workflows.agent import AgentWorkflow
from workflows.org import OrgWorkflow

pytestmark = pytest.mark.integration


def _write(path: Path, spec: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(spec))
    return path


def _agents(platform: Platform, org: str) -> dict[str, tuple[str, int, str]]:
    with db_sessions(platform.settings)() as session:
        rows = session.execute(
            select(Agent.name, Agent.status, Agent.version, Agent.created_by)
            .join(Org)
            .where(Org.name == org)
        ).all()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


async def test_plan_and_apply_reconcile_a_changed_spec(platform: Platform, tmp_path: Path) -> None:
    org = unique_org()
    base = echo_spec(org, partitions=1)
    base["agents"].append(
        {"name": "spare", "kind": "echo", "subscribes": ["inbox"], "publishes": ["outbox"]}
    )
    spec_file = _write(tmp_path / "org.yaml", base)
    applied = run_cli("org", "apply", str(spec_file), "--json")
    assert applied.returncode == 0, applied.stderr

    unchanged = run_cli("org", "plan", str(spec_file), "--json")
    assert unchanged.returncode == 0, unchanged.stderr
    assert json.loads(unchanged.stdout)["empty"] is True

    changed = json.loads(json.dumps(base))
    changed["topics"].append({"name": "extra", "class": "audit"})
    changed["agents"][0]["publishes"] = ["outbox", "extra"]
    changed["agents"] = [a for a in changed["agents"] if a["name"] != "spare"]
    changed["agents"].append(
        {"name": "late", "kind": "echo", "subscribes": ["extra"], "publishes": ["outbox"]}
    )
    _write(spec_file, changed)
    plan = json.loads(run_cli("org", "plan", str(spec_file), "--json").stdout)
    assert [t["name"] for t in plan["topics_to_add"]] == ["extra"]
    assert [a["name"] for a in plan["agents_to_add"]] == ["late"]
    assert [a["name"] for a in plan["agents_to_change"]] == ["echo"]
    assert plan["agents_to_retire"] == ["spare"]
    assert plan["topics_to_remove"] == [] and plan["topics_to_change"] == []

    first = run_cli("org", "apply", str(spec_file), "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["changed"] is True
    again = run_cli("org", "apply", str(spec_file), "--json")
    assert json.loads(again.stdout)["changed"] is False
    assert json.loads(run_cli("org", "plan", str(spec_file), "--json").stdout)["empty"] is True

    agents = _agents(platform, org)
    assert agents["spare"][0] == "retired"
    assert agents["echo"][1] == 2, "a changed spec rolls the agent to a new version"
    assert agents["late"][0] == "running"
    # The new version runs: the echo agent now also publishes to `extra`, which `late` echoes.
    await platform.send(org, "inbox", [task(org, 1)])
    out = await platform.collect(org, "outbox", 2, settle=1.0)
    assert sorted(c.record.source for c in out) == ["agent:echo", "agent:late"]


async def test_refusals_name_the_reason_and_leave_no_partial_state(platform: Platform) -> None:
    org = unique_org()
    spec = echo_spec(org, partitions=1)
    spec["limits"] = {"max_agents": 3, "max_spawn_depth": 1}
    spec["agents"][0]["can_create_agents"] = True
    spec["agents"].append(
        {"name": "plain", "kind": "echo", "subscribes": ["inbox"], "publishes": ["outbox"]}
    )
    await platform.start_org(spec)
    handle = platform.client.get_workflow_handle_for(OrgWorkflow.run, org_workflow_id(org))

    async def refused(request: CreateAgentRequest) -> str:
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await handle.execute_update(OrgWorkflow.create_agent, request)
        return str(getattr(info.value.cause, "message", info.value.cause))

    child = {"name": "child", "kind": "echo", "subscribes": ["inbox"], "publishes": ["outbox"]}
    no_right = await refused(
        CreateAgentRequest.model_validate({"agent": child, "requested_by": "agent:plain"})
    )
    assert "may not create agents" in no_right
    more_rights = await refused(
        CreateAgentRequest.model_validate(
            {"agent": {**child, "can_create_tools": True}, "requested_by": "agent:echo"}
        )
    )
    assert "can_create_tools" in more_rights
    other_org = await refused(
        CreateAgentRequest.model_validate(
            {"agent": {**child, "publishes": ["nope"]}, "requested_by": "agent:echo"}
        )
    )
    assert "unknown topic 'nope'" in other_org

    ok = await handle.execute_update(
        OrgWorkflow.create_agent,
        CreateAgentRequest.model_validate({"agent": child, "requested_by": "agent:echo"}),
    )
    assert ok.changed
    grandchild = {**child, "name": "grandchild"}
    too_deep = await refused(
        CreateAgentRequest.model_validate(
            {"agent": {**grandchild, "can_create_agents": False}, "requested_by": "agent:child"}
        )
    )
    assert "may not create agents" in too_deep or "spawn depth" in too_deep
    over_quota = await refused(
        CreateAgentRequest.model_validate({"agent": grandchild, "requested_by": "user:ops"})
    )
    assert "max_agents" in over_quota

    agents = _agents(platform, org)
    assert set(agents) == {"echo", "plain", "child"}
    assert agents["child"][2] == "agent:echo"
    # The spawned agent works.
    await platform.send(org, "inbox", [task(org, 5)])
    out = await platform.collect(org, "outbox", 3, settle=1.0)
    assert sorted(c.record.source for c in out) == ["agent:child", "agent:echo", "agent:plain"]


async def test_paused_agent_accumulates_and_catches_up_after_resume(platform: Platform) -> None:
    org = unique_org()
    await platform.start_org(echo_spec(org, partitions=1))
    paused = run_cli("agent", "pause", org, "echo", "--json")
    assert paused.returncode == 0, paused.stderr
    await platform.send(org, "inbox", [task(org, n) for n in range(5)])
    wf = platform.client.get_workflow_handle_for(AgentWorkflow.run, agent_workflow_id(org, "echo"))
    for _ in range(50):
        status = await wf.query(AgentWorkflow.status)
        if status.inbox == 5:
            break
        await asyncio.sleep(0.2)
    assert status.paused and status.inbox == 5 and status.processed == 0
    assert await platform.collect(org, "outbox", 1, timeout=2) == []

    assert run_cli("agent", "resume", org, "echo").returncode == 0
    out = await platform.collect(org, "outbox", 5, settle=1.0)
    assert len(out) == 5
    listed = json.loads(run_cli("agent", "list", org, "--json").stdout)
    assert [(a["name"], a["status"]) for a in listed] == [("echo", "running")]


async def test_failing_agent_is_marked_failed_and_isolated(platform: Platform) -> None:
    org = unique_org()
    spec = echo_spec(org, partitions=1)
    spec["topics"].append({"name": "big", "class": "work"})
    spec["agents"].append(
        {
            "name": "doubler",
            "kind": "rule",
            "subscribes": ["inbox"],
            "publishes": ["big"],
            "rules": [
                {
                    "on": "blob",
                    "emit": "blob.twice",
                    "to": "big",
                    "map": {"a": "$.payload.x", "b": "$.payload.x"},
                }
            ],
        }
    )
    # Payload references off: an output over the record limit still fails the step
    # for good (with them on, it would be stored by reference instead).
    refs_off = {"KAFKAORG_PAYLOAD_REF_BYTES": str(10**9)}
    with platform.replaced(platform.worker, **refs_off):
        await platform.start_org(spec)
        blob = task(org, 0, type_="blob")
        blob.payload = {"x": "y" * (platform.settings.max_record_bytes // 2 + 1000)}
        await platform.send(org, "inbox", [blob, task(org, 1)])

        out = await platform.collect(org, "outbox", 2, settle=1.0)
        assert len(out) == 2, "the echo agent keeps working"
        for _ in range(100):
            if _agents(platform, org)["doubler"][0] == "failed":
                break
            await asyncio.sleep(0.2)
        assert _agents(platform, org)["doubler"][0] == "failed"
        dlq = await asyncio.to_thread(raw_messages, platform.settings, f"{org}.sys.dlq", 1)
        headers = dict(dlq[0].headers())
        assert headers["dlq.reason"] == b"agent-step-failed"
        assert headers["dlq.agent"] == b"doubler"
        assert b"over the" in headers["dlq.error"]
        # Provenance: where the bridge read it, and how often the step ran (failed for good: once).
        assert headers["dlq.topic"] == f"{org}.inbox".encode()
        assert (headers["dlq.partition"], headers["dlq.offset"]) == (b"0", b"0")
        assert headers["dlq.attempts"] == b"1"
        handle = platform.client.get_workflow_handle_for(OrgWorkflow.run, org_workflow_id(org))
        agents = {a.name: a.status for a in await handle.query(OrgWorkflow.agents)}
        assert agents["doubler"] == "failed"


async def test_worker_killed_while_applying_20_agents(platform: Platform) -> None:
    org = unique_org()
    spec = {
        "org": org,
        "topics": [{"name": "inbox"}, {"name": "outbox"}],
        "agents": [
            {"name": f"a{i:02d}", "kind": "echo", "subscribes": ["inbox"], "publishes": ["outbox"]}
            for i in range(20)
        ],
    }
    from kafkaorg.client import launch_org

    await launch_org(platform.settings, validate_spec(spec), wait=False)
    await asyncio.sleep(0.8)
    platform.worker.restart_after_kill()
    handle = platform.client.get_workflow_handle_for(OrgWorkflow.run, org_workflow_id(org))
    phase = "unknown"
    for _ in range(300):
        try:
            phase = (await handle.query(OrgWorkflow.status)).phase
            if phase == "running":
                break
        except Exception:
            pass  # the restarted worker has not picked the workflow up yet
        await asyncio.sleep(0.2)
    assert phase == "running"
    with db_sessions(platform.settings)() as session:
        org_id = session.scalar(select(Org.id).where(Org.name == org))
        assert session.scalar(select(func.count()).where(Agent.org_id == org_id)) == 20
        assert session.scalar(select(func.count()).where(Topic.org_id == org_id)) == 2
        subs = session.scalar(
            select(func.count()).select_from(Subscription).join(Agent).where(Agent.org_id == org_id)
        )
        assert subs == 20
    expected = sorted(
        [org_workflow_id(org)] + [agent_workflow_id(org, f"a{i:02d}") for i in range(20)]
    )
    for _ in range(50):  # visibility is eventually consistent
        ids = [w.id async for w in platform.client.list_workflows(f'KafkaorgOrg = "{org}"')]
        if len(ids) >= len(expected):
            break
        await asyncio.sleep(0.3)
    assert sorted(ids) == expected, "one workflow per agent, none twice"


async def test_every_change_is_in_postgres_and_in_order_on_the_audit_topic(
    platform: Platform,
) -> None:
    org = unique_org()
    spec = echo_spec(org, partitions=1)
    spec["agents"][0]["can_create_agents"] = True
    await platform.start_org(spec)
    handle = platform.client.get_workflow_handle_for(OrgWorkflow.run, org_workflow_id(org))
    child = {"name": "kid", "kind": "echo", "subscribes": ["inbox"], "publishes": ["outbox"]}
    await handle.execute_update(
        OrgWorkflow.create_agent,
        CreateAgentRequest.model_validate({"agent": child, "requested_by": "agent:echo"}),
    )
    for action in ("pause", "resume", "retire"):
        await handle.execute_update(
            OrgWorkflow.change_agent,
            AgentCommand.model_validate({"agent": "kid", "action": action}),
        )
    assert run_cli("topic", "create", org, "later", "--class", "audit").returncode == 0

    audit = await platform.collect(org, "sys.audit", 7, settle=1.0)
    types = [c.record.type for c in sorted(audit, key=lambda c: c.offset)]
    assert types == [
        "org.applied",
        "org.running",
        "agent.created",
        "agent.paused",
        "agent.running",
        "agent.retired",
        "topic.created",
    ]
    created = next(c.record for c in audit if c.record.type == "agent.created")
    assert created.payload["created_by"] == "agent:echo"
    assert _agents(platform, org)["kid"] == ("retired", 1, "agent:echo")
    topics = json.loads(run_cli("topic", "list", org, "--json").stdout)
    assert {t["name"]: t["class"] for t in topics} == {
        "inbox": "work",
        "outbox": "work",
        "later": "audit",
    }


async def test_drift_is_detected_and_repaired(platform: Platform) -> None:
    org = unique_org()
    spec = echo_spec(org, partitions=1)
    spec["reconcile_interval_s"] = 2
    await platform.start_org(spec)
    from kafkaorg.kafka import create_admin

    admin = create_admin(platform.settings)
    for future in admin.delete_topics([f"{org}.outbox"], operation_timeout=30).values():
        future.result()
    agent = platform.client.get_workflow_handle(agent_workflow_id(org, "echo"))
    await agent.terminate(reason="terminated by hand, as in the Web UI")

    repaired = None
    for _ in range(60):  # the OrgWorkflow checks every 2 s
        audit = await platform.collect(org, "sys.audit", 3, timeout=1)
        repaired = next((c.record for c in audit if c.record.type == "org.drift-repaired"), None)
        if repaired:
            break
    assert repaired is not None
    assert repaired.payload == {"recreated_topics": [f"{org}.outbox"], "restarted_agents": ["echo"]}
    await platform.send(org, "inbox", [task(org, 1)])
    assert len(await platform.collect(org, "outbox", 1)) == 1


def test_stop_deletes_work_topics_only_when_asked(platform: Platform, tmp_path: Path) -> None:
    org = unique_org()
    spec = echo_spec(org, partitions=1)
    spec["topics"].append({"name": "ledger", "class": "audit"})
    spec_file = _write(tmp_path / "org.yaml", spec)
    assert run_cli("org", "start", str(spec_file)).returncode == 0
    stopped = run_cli("org", "stop", org, "--delete-topics")
    assert stopped.returncode == 0, stopped.stderr
    from kafkaorg.kafka import create_admin

    topics = set(create_admin(platform.settings).list_topics(timeout=10).topics)
    assert f"{org}.inbox" not in topics and f"{org}.outbox" not in topics
    assert {f"{org}.ledger", f"{org}.sys.audit", f"{org}.sys.dlq"} <= topics
    listed = json.loads(run_cli("org", "list", "--json").stdout)
    assert next(o for o in listed if o["org"] == org)["status"] == "stopped"
    assert run_cli("org", "status", org).returncode == 0


async def test_kafkaorg_and_plain_temporal_cli_start_identical_orgs(
    platform: Platform, tmp_path: Path
) -> None:
    import shutil
    import sys

    from confluent_kafka.admin import ConfigResource, ResourceType

    from kafkaorg.kafka import create_admin
    from kafkaorg.spec import spec_to_json

    def spec_for(org: str) -> dict[str, Any]:
        spec = echo_spec(org, partitions=2)
        spec["topics"].append({"name": "ledger", "class": "audit"})
        spec["topics"].append({"name": "latest", "class": "state"})
        return spec

    by_cli, by_temporal = unique_org("cli"), unique_org("tmp")
    assert (
        run_cli("org", "start", str(_write(tmp_path / "a.yaml", spec_for(by_cli)))).returncode == 0
    )
    temporal = shutil.which("temporal", path=str(Path(sys.executable).parent)) or "temporal"
    started = run_cli_raw(
        [
            temporal,
            "workflow",
            "start",
            "--address",
            platform.settings.temporal_address,
            "--type",
            "OrgWorkflow",
            "--task-queue",
            "kafkaorg",
            "--workflow-id",
            f"org:{by_temporal}",
            "--input",
            spec_to_json(validate_spec(spec_for(by_temporal))),
        ]
    )
    assert started.returncode == 0, started.stderr
    handle = platform.client.get_workflow_handle_for(OrgWorkflow.run, org_workflow_id(by_temporal))
    for _ in range(100):
        try:
            if (await handle.query(OrgWorkflow.status)).phase == "running":
                break
        except Exception:
            pass
        await asyncio.sleep(0.2)

    def rows(org: str) -> tuple[Any, Any]:
        topics = json.loads(run_cli("topic", "list", org, "--json").stdout)
        agents = json.loads(run_cli("agent", "list", org, "--json").stdout)
        for t in topics:
            t["kafka_topic"] = t["kafka_topic"].removeprefix(org)
        return topics, agents

    assert rows(by_cli) == rows(by_temporal)
    admin = create_admin(platform.settings)

    def configs(org: str) -> dict[str, dict[str, str]]:
        names = ["inbox", "outbox", "ledger", "latest", "sys.audit", "sys.dlq"]
        resources = [ConfigResource(ResourceType.TOPIC, f"{org}.{n}") for n in names]
        out = {}
        for resource, future in admin.describe_configs(resources).items():
            entries = future.result()
            out[resource.name.removeprefix(org)] = {
                k: entries[k].value for k in ("cleanup.policy", "retention.ms")
            }
        return out

    assert configs(by_cli) == configs(by_temporal)
    assert configs(by_cli)[".latest"]["cleanup.policy"] == "compact"
    assert configs(by_cli)[".ledger"]["retention.ms"] == str(90 * 24 * 3600 * 1000)

    async def running(org: str) -> list[str]:
        for _ in range(50):  # visibility is eventually consistent
            query = f'KafkaorgOrg = "{org}" AND ExecutionStatus = "Running"'
            found = sorted(
                [w.id.replace(org, "ORG") async for w in platform.client.list_workflows(query)]
            )
            if len(found) == 2:
                return found
            await asyncio.sleep(0.3)
        return found

    assert await running(by_cli) == await running(by_temporal) == ["agent:ORG:echo", "org:ORG"]
