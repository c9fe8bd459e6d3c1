"""Human approval of agents' risky actions (``policy.approvals``) and of flow steps.

An agent's request the policy holds waits in its OrgWorkflow until a person decides,
through the CLI, the service layer or a record on ``<org>.sys.approvals``, or until
the deadline applies the rule's default. Each verdict is recorded in PostgreSQL and
announced (audit and approvals topics) with who made it.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from kafkaorg import client as service
from kafkaorg import org_queries as queries
from kafkaorg.contracts import (
    ApprovalKind,
    ApprovalRow,
    ApprovalStatus,
    ApprovalVerdict,
    CreateAgentRequest,
    CreateToolRequest,
    FlowStatus,
    OrgStopRequest,
)
from kafkaorg.contracts.approvals import DECISION_RECORD_TYPE
from kafkaorg.envelope import new_record
from kafkaorg.errors import BadInputError
from kafkaorg.names import dlq_topic
from kafkaorg.spec import AgentSpec, ToolSpec
from tests.llm_server import ScriptedLLM, ScriptedReply, ScriptedToolCall
from tests.support import (
    Platform,
    assert_one_clear_line,
    raw_messages,
    run_cli_async,
    unique_org,
)

pytestmark = pytest.mark.integration

IO = {"subscribes": ["inbox"], "publishes": ["outbox"]}


def _spec(org: str, approvals: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "org": org,
        "topics": [{"name": "inbox"}, {"name": "outbox"}],
        "agents": [
            {
                "name": "boss",
                "kind": "echo",
                "can_create_agents": True,
                "can_create_tools": True,
                **IO,
            }
        ],
        "policy": {"approvals": approvals},
        **extra,
    }


def _minion(name: str) -> AgentSpec:
    return AgentSpec.model_validate({"name": name, "kind": "echo", **IO})


def _by_boss(org: str) -> str:
    return f"agent:{org}:boss"


async def _rows(platform: Platform, org: str, *, decided: bool = False) -> list[ApprovalRow]:
    return await asyncio.to_thread(
        queries.list_approvals, platform.settings, org, include_decided=decided
    )


async def _row_once(
    platform: Platform, org: str, approval_id: str, status: ApprovalStatus, timeout: float = 30
) -> ApprovalRow:
    deadline = time.monotonic() + timeout
    while True:
        row = await asyncio.to_thread(queries.find_approval, platform.settings, org, approval_id)
        if row.status is status or time.monotonic() > deadline:
            assert row.status is status, row
            return row
        await asyncio.sleep(0.3)


async def _agents(platform: Platform, org: str) -> set[str]:
    return {a.name for a in await asyncio.to_thread(queries.list_agents, platform.settings, org)}


async def test_an_agents_new_agent_waits_for_a_person_who_approves_or_denies_it(
    platform: Platform,
) -> None:
    org = unique_org("appr")
    await platform.start_org(_spec(org, {"create_agent": {"timeout_s": 600}, "create_tool": {}}))

    held = await service.create_agent(
        platform.client, org, CreateAgentRequest(agent=_minion("m1"), requested_by=_by_boss(org))
    )
    assert held.changed is False and held.pending_approval is not None
    assert "waits for a person's approval" in held.summary[0]
    assert "m1" not in await _agents(platform, org)
    # One request per agent waits at a time; a person's own request is never held.
    with pytest.raises(BadInputError, match="already waits for approval"):
        await service.create_agent(
            platform.client,
            org,
            CreateAgentRequest(agent=_minion("m1"), requested_by=_by_boss(org)),
        )
    direct = await service.create_agent(
        platform.client, org, CreateAgentRequest(agent=_minion("p1"), requested_by="user:ann")
    )
    assert direct.changed and direct.pending_approval is None

    listed = await run_cli_async("approval", "list", org, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["id"], r["kind"], r["subject"], r["requested_by"], r["status"]) for r in rows] == [
        (held.pending_approval, "create_agent", "m1", _by_boss(org), "pending")
    ]
    assert rows[0]["request"]["agent"]["name"] == "m1"

    # Bad verdicts: a clear line each, nothing decided.
    unknown = await run_cli_async("approval", "approve", org, "ap-nope")
    assert_one_clear_line(unknown, 2, "no approval 'ap-nope'", held.pending_approval)
    by_agent = await run_cli_async(
        "approval", "approve", org, held.pending_approval, "--as", "agent:x"
    )
    assert_one_clear_line(by_agent, 2, "only people decide")

    ok = await run_cli_async(
        "approval", "approve", org, held.pending_approval, "--reason", "fine", "--as", "user:alice"
    )
    assert ok.returncode == 0, ok.stderr
    assert "approved by user:alice" in ok.stdout and "+ agent m1" in ok.stdout
    assert "m1" in await _agents(platform, org)
    row = await _row_once(platform, org, held.pending_approval, ApprovalStatus.APPROVED)
    assert (row.decided_by, row.reason) == ("user:alice", "fine")
    again = await run_cli_async("approval", "deny", org, held.pending_approval)
    assert_one_clear_line(again, 2, "already approved by user:alice")

    # A tool the agent asks for, denied: nothing registered, the denial recorded.
    tool = ToolSpec(name="noop", code="def run(args):\n    return {}\n")
    held_tool = await service.create_tool(
        platform.client, org, CreateToolRequest(tool=tool, requested_by=_by_boss(org))
    )
    assert held_tool.pending_approval is not None
    no = await run_cli_async("approval", "deny", org, held_tool.pending_approval, "--json")
    assert no.returncode == 0, no.stderr
    denied = json.loads(no.stdout)
    assert (denied["approved"], denied["kind"], denied["subject"]) == (False, "create_tool", "noop")
    assert await asyncio.to_thread(queries.list_tools, platform.settings, org) == []

    audit = await platform.collect(org, "sys.audit", 1, timeout=10, settle=1.0)
    approval_audit = [
        (c.record.type, c.record.payload.get("id"), c.record.payload.get("by"))
        for c in audit
        if c.record.type.startswith("approval.")
    ]
    assert approval_audit == [
        ("approval.requested", held.pending_approval, None),
        ("approval.decided", held.pending_approval, "user:alice"),
        ("approval.requested", held_tool.pending_approval, None),
        ("approval.decided", held_tool.pending_approval, "user:cli"),
    ]
    created = next(
        c.record
        for c in audit
        if c.record.type == "agent.created" and c.record.payload["agent"] == "m1"
    )
    assert created.payload["created_by"] == _by_boss(org)
    told = await platform.collect(org, "sys.approvals", 4, timeout=10)
    assert [c.record.type for c in told] == ["approval.requested", "approval.decided"] * 2


async def test_two_people_deciding_one_approval_at_once_one_verdict_counts(
    platform: Platform,
) -> None:
    org = unique_org("appr")
    await platform.start_org(_spec(org, {"create_agent": {"timeout_s": 600}}))
    held = await service.create_agent(
        platform.client, org, CreateAgentRequest(agent=_minion("m2"), requested_by=_by_boss(org))
    )
    assert held.pending_approval is not None
    row = await asyncio.to_thread(
        queries.find_approval, platform.settings, org, held.pending_approval
    )
    verdicts = [
        ApprovalVerdict(id=row.id, approve=True, by="user:ann"),
        ApprovalVerdict(id=row.id, approve=False, by="user:bob"),
    ]
    outcomes = await asyncio.gather(
        *(service.decide(platform.client, row, v) for v in verdicts), return_exceptions=True
    )
    won = [o for o in outcomes if not isinstance(o, BaseException)]
    lost = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert isinstance(lost[0], BadInputError) and "no approval" in str(lost[0])
    final = await _row_once(
        platform,
        org,
        row.id,
        ApprovalStatus.APPROVED if won[0].approved else ApprovalStatus.DENIED,
    )
    assert final.decided_by == won[0].by
    assert ("m2" in await _agents(platform, org)) is won[0].approved


async def test_a_verdict_record_on_sys_approvals_is_carried_out_and_a_bad_one_dead_lettered(
    platform: Platform,
) -> None:
    org = unique_org("appr")
    await platform.start_org(_spec(org, {"create_agent": {"timeout_s": 600}}))
    held = await service.create_agent(
        platform.client, org, CreateAgentRequest(agent=_minion("m3"), requested_by=_by_boss(org))
    )
    assert held.pending_approval is not None

    def verdict(payload: dict[str, Any]) -> Any:
        return new_record(org=org, type=DECISION_RECORD_TYPE, source="user:bob", payload=payload)

    good = verdict({"id": held.pending_approval, "approve": True, "reason": "ok by me"})
    await platform.send(org, "sys.approvals", [good])
    row = await _row_once(platform, org, held.pending_approval, ApprovalStatus.APPROVED)
    assert (row.decided_by, row.reason) == ("user:bob", "ok by me")
    assert "m3" in await _agents(platform, org)

    # The same verdict again (a redelivery) is no error; a verdict on a decided one is.
    await platform.send(org, "sys.approvals", [good])
    late = verdict({"id": held.pending_approval, "approve": False})
    missing_field = verdict({"approve": True})
    await platform.send(org, "sys.approvals", [late, missing_field])
    dlq = await asyncio.to_thread(raw_messages, platform.settings, dlq_topic(org), 2)
    reasons = {}
    for message in dlq:
        headers = {k: (v or b"").decode() for k, v in message.headers()}
        preview = json.loads(message.value())["payload"]["value_preview"]
        original = next(r.id for r in (late, missing_field) if r.id in preview)
        reasons[original] = (headers["dlq.reason"], headers["dlq.error"])
    assert set(reasons) == {late.id, missing_field.id}
    assert reasons[late.id][0] == "approval-refused"
    assert "already approved by user:bob" in reasons[late.id][1]
    assert reasons[missing_field.id] == ("approval-refused", "not a verdict: id: Field required")


async def test_a_request_nobody_decides_gets_the_rules_default_at_its_deadline(
    platform: Platform,
) -> None:
    org = unique_org("appr")
    await platform.start_org(
        _spec(
            org,
            {"create_agent": {"timeout_s": 2, "default": "approve"}},
            reconcile_interval_s=3600,  # the deadline, not a reconcile, wakes the org
        )
    )
    held = await service.create_agent(
        platform.client, org, CreateAgentRequest(agent=_minion("m4"), requested_by=_by_boss(org))
    )
    assert held.pending_approval is not None
    row = await _row_once(platform, org, held.pending_approval, ApprovalStatus.APPROVED, 30)
    assert row.decided_by == "system:timeout"
    assert row.outcome and "+ agent m4" in row.outcome
    assert "m4" in await _agents(platform, org)


async def test_stopping_an_org_denies_what_still_waits(platform: Platform) -> None:
    org = unique_org("appr")
    await platform.start_org(_spec(org, {"create_agent": {"timeout_s": 600}}))
    held = await service.create_agent(
        platform.client, org, CreateAgentRequest(agent=_minion("m5"), requested_by=_by_boss(org))
    )
    assert held.pending_approval is not None
    stopped = await service.stop_org(platform.client, org, OrgStopRequest(reason="done"))
    await asyncio.wait_for(stopped.result(), 60)
    row = await _row_once(platform, org, held.pending_approval, ApprovalStatus.DENIED)
    assert row.decided_by == "system:org-stopped"
    assert await _rows(platform, org) == []


async def test_a_flow_runs_approval_step_is_listed_and_decided_with_the_approval_commands(
    platform: Platform,
) -> None:
    org = unique_org("appr")
    flows = [
        {
            "name": "gate",
            "steps": [
                {"id": "sign-off", "approval": {"timeout_s": 600}},
                {"id": "publish", "emit": {"topic": "outbox", "type": "gate.done"}},
            ],
        }
    ]
    await platform.start_org(_spec(org, {}, flows=flows))
    handle = await service.start_flow(platform.client, org, "gate", {"x": 1}, run="g1")

    async def waiting() -> list[ApprovalRow]:
        deadline = time.monotonic() + 30
        while True:
            rows = await _rows(platform, org)
            if rows or time.monotonic() > deadline:
                return rows
            await asyncio.sleep(0.3)

    rows = await waiting()
    assert [(r.kind, r.subject, r.request["run"], r.request["step"]) for r in rows] == [
        (ApprovalKind.FLOW_STEP, "flow gate run g1 step sign-off", "g1", "sign-off")
    ]
    ok = await run_cli_async("approval", "approve", org, rows[0].id, "--as", "user:carol")
    assert ok.returncode == 0, ok.stderr
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.status == FlowStatus.COMPLETED
    state = (await service.flow_status(platform.client, org, "g1")).state
    assert [(d.choice, d.by) for d in state.decisions] == [("approve", "user:carol")]
    row = await _row_once(platform, org, rows[0].id, ApprovalStatus.APPROVED)
    assert row.decided_by == "user:carol"


async def test_an_llm_agent_is_told_its_new_agent_waits_for_approval(
    platform: Platform, scripted_llm: ScriptedLLM
) -> None:
    org, planner = unique_org("appr"), "planner-ap"
    scripted_llm.script(
        planner,
        [
            ScriptedReply(
                tool_calls=[
                    ScriptedToolCall(
                        name="create_agent",
                        arguments={"name": "helper", "kind": "echo", **IO},
                    )
                ]
            ),
            ScriptedReply(content="Asked for a helper."),
        ],
    )
    spec = _spec(org, {"create_agent": {"timeout_s": 600}})
    spec["agents"] = [
        {
            "name": planner,
            "kind": "llm",
            "instructions": "Create a helper.",
            "can_create_agents": True,
            **IO,
        }
    ]
    await platform.start_org(spec)
    await platform.send(
        org, "inbox", [new_record(org=org, type="task", source="user:t", payload={})]
    )
    requests = await scripted_llm.wait_for_requests(planner, 2, timeout=120)
    tool_messages = [m for m in requests[1]["messages"] if m.get("role") == "tool"]
    told = json.loads(tool_messages[-1]["content"])
    rows = await _rows(platform, org)
    assert [(r.subject, r.requested_by) for r in rows] == [("helper", f"agent:{org}:{planner}")]
    assert told["pending_approval"] == rows[0].id
    assert "waits for a person's approval" in told["summary"][0]


def _publish(topic: str, type_: str, **payload: Any) -> ScriptedReply:
    return ScriptedReply(
        tool_calls=[
            ScriptedToolCall(
                name="publish", arguments={"topic": topic, "type": type_, "payload": payload}
            )
        ]
    )


async def test_an_llm_agents_record_to_an_audit_topic_waits_and_is_published_if_approved(
    platform: Platform, scripted_llm: ScriptedLLM
) -> None:
    """``policy.approvals.publish``: records to audit-class topics wait for a person (work
    topics do not); approved, the very record is published; denied, nothing is."""
    org, scribe = unique_org("appr"), "scribe-ap"
    scripted_llm.script(
        scribe,
        [
            _publish("outbox", "note", n=1),
            _publish("ledger", "ledger.entry", amount=10),
            ScriptedReply(content="Noted and entered."),
            _publish("ledger", "ledger.entry", amount=99),
            ScriptedReply(content="Entered."),
        ],
    )
    spec = _spec(org, {"publish": {"timeout_s": 600}})
    spec["topics"].append({"name": "ledger", "class": "audit"})
    spec["agents"] = [
        {
            "name": scribe,
            "kind": "llm",
            "instructions": "Record what you are told.",
            "subscribes": ["inbox"],
            "publishes": ["outbox", "ledger"],
        }
    ]
    await platform.start_org(spec)
    first = new_record(org=org, type="task", source="user:t", payload={})
    await platform.send(org, "inbox", [first])
    requests = await scripted_llm.wait_for_requests(scribe, 3, timeout=120)
    told = json.loads(
        [m for m in requests[2]["messages"] if m.get("role") == "tool"][-1]["content"]
    )
    rows = await _rows(platform, org)
    assert [(r.kind, r.requested_by) for r in rows] == [
        (ApprovalKind.PUBLISH, f"agent:{org}:{scribe}")
    ]
    assert rows[0].subject == f"ledger.entry to ledger ({told['record_id']})"
    assert told["pending_approval"] == rows[0].id
    assert "waits for a person's approval" in told["summary"][0]
    # The work topic's record went at once; the audit topic's waits.
    notes = await platform.collect(org, "outbox", 1, timeout=30)
    assert [c.record.type for c in notes] == ["note"]
    assert await platform.collect(org, "ledger", 1, timeout=3) == []

    approved = await run_cli_async(
        "approval", "approve", org, rows[0].id, "--reason", "checked", "--json"
    )
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["outcome"] == (
        f"published ledger.entry {told['record_id']} to ledger"
    )
    ledger = await platform.collect(org, "ledger", 1, timeout=30)
    assert [(c.record.id, c.record.payload) for c in ledger] == [
        (told["record_id"], {"amount": 10})
    ]
    assert ledger[0].record.causation_id == first.id
    assert ledger[0].record.source == f"agent:{scribe}"

    second = new_record(org=org, type="task", source="user:t", payload={})
    await platform.send(org, "inbox", [second])
    await scripted_llm.wait_for_requests(scribe, 5, timeout=120)
    waiting = await _rows(platform, org)
    assert len(waiting) == 1 and waiting[0].kind is ApprovalKind.PUBLISH
    denied = await run_cli_async("approval", "deny", org, waiting[0].id, "--reason", "too much")
    assert denied.returncode == 0, denied.stderr
    row = await _row_once(platform, org, waiting[0].id, ApprovalStatus.DENIED)
    assert (row.decided_by, row.reason) == ("user:cli", "too much")
    ledger = await platform.collect(org, "ledger", 2, timeout=5)
    assert [c.record.payload for c in ledger] == [{"amount": 10}]
