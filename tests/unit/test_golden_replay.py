"""Recorded histories of every workflow type replay against today's code (offline).

A failure here means a change would break workflows that are running right now:
make the change compatible (``workflow.patched()``, a new handler instead of a
changed one). Re-record with ``scripts/record_golden_histories.py`` only for a
change that is meant to be incompatible, with running workflows migrated.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory

from kafkaorg.contracts import AgentSignal, FlowSignal, FlowUpdate, OrgSignal, OrgUpdate
from kafkaorg.flow_spec import STEP_KINDS
from kafkaorg.history_replay import (
    divergence_event_id,
    load_history_file,
    previous_run_id,
    replay_histories,
    replay_history,
    workflow_type_of,
)
from kafkaorg.names import AGENT_WORKFLOW_TYPE, DLQ_TOPIC, FLOW_WORKFLOW_TYPE, ORG_WORKFLOW_TYPE
from workers.replayer import make_replayer
from workers.worker import WORKFLOWS
from workflows.agent import AgentInput, AgentResult, AgentWorkflow
from workflows.llm_graph import GRAPH_NAME

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "golden"
GOLDEN_FILES = sorted(GOLDEN_DIR.glob("*.json"))


def _load(path: Path) -> WorkflowHistory:
    return load_history_file(path.read_text(), path.stem)


def _ends_in_continue_as_new(history: WorkflowHistory) -> bool:
    return history.events[-1].HasField("workflow_execution_continued_as_new_event_attributes")


GOLDEN = {p.stem: _load(p) for p in GOLDEN_FILES}

ACTIVITIES_COVERED = {
    # The archive: the org's schedule, a run (ArchiveWorkflow, and the org's last one).
    "archive_org",
    "ensure_archive_schedule",
    "delete_archive_schedule",
    # OrgWorkflow: specs, topics, agents, lifecycle, drift.
    "save_org",
    "save_topic",
    "ensure_topics",
    "delete_topics",
    "missing_topics",
    "publish",
    "register_agent",
    "set_agent_status",
    "set_org_status",
    "start_agents",
    "stop_agents",
    "stopped_agents",
    "command_agent",
    # Tools: propose, test in the sandbox, record, approve, roll back, run.
    "propose_version",
    "run_code",
    "record_test_result",
    "approve",
    "rollback",
    "load_current",
    # AgentWorkflow steps: echo/rule, tool, llm (the graph's model node).
    "load_agent",
    "run_agent_step",
    "publish_emissions",
    f"{GRAPH_NAME}.model",
    # llm agents' MCP tools: listed once, then called.
    "discover_mcp_tools",
    "call_mcp_tool",
}
"""Every activity a workflow schedules on the paths the golden histories record. Not yet
recorded: what only an llm agent's model asks for (find_tools, find_agents, recall_turns,
archive_turns, request_create_agent, request_create_tool)."""


def _of_type(workflow_type: str) -> list[WorkflowHistory]:
    return [h for h in GOLDEN.values() if workflow_type_of(h) == workflow_type]


def _update_names(histories: Iterable[WorkflowHistory]) -> set[str]:
    return {
        e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        for h in histories
        for e in h.events
        if e.HasField("workflow_execution_update_accepted_event_attributes")
    }


def _signal_names(histories: Iterable[WorkflowHistory]) -> set[str]:
    return {
        e.workflow_execution_signaled_event_attributes.signal_name
        for h in histories
        for e in h.events
        if e.HasField("workflow_execution_signaled_event_attributes")
    }


def _scheduled(history: WorkflowHistory) -> list[tuple[int, str, list[Any]]]:
    """(event id, activity type, decoded JSON inputs) of every activity the history ran."""
    out = []
    for e in history.events:
        if e.HasField("activity_task_scheduled_event_attributes"):
            attrs = e.activity_task_scheduled_event_attributes
            inputs = [json.loads(p.data) for p in attrs.input.payloads]
            out.append((e.event_id, attrs.activity_type.name, inputs))
    return out


def test_golden_histories_cover_every_workflow_type_and_continue_as_new() -> None:
    histories = [_load(p) for p in GOLDEN_FILES]
    types = {workflow_type_of(h) for h in histories}
    registered = {getattr(w, "__temporal_workflow_definition").name for w in WORKFLOWS}
    assert registered <= types, f"no golden history for {sorted(registered - types)}"
    agents = [h for h in histories if workflow_type_of(h) == AGENT_WORKFLOW_TYPE]
    assert any(_ends_in_continue_as_new(h) for h in agents), "a run that continued-as-new"
    assert any(previous_run_id(h) for h in agents), "a run that was continued from another"
    assert any(workflow_type_of(h) == ORG_WORKFLOW_TYPE for h in histories)


def test_golden_histories_cover_every_update_signal_and_activity() -> None:
    orgs, agents = _of_type(ORG_WORKFLOW_TYPE), _of_type(AGENT_WORKFLOW_TYPE)
    missing_updates = set(OrgUpdate) - _update_names(orgs)
    assert not missing_updates, (
        f"no golden OrgWorkflow history runs {sorted(map(str, missing_updates))}"
    )
    missing_signals = set(OrgSignal) - _signal_names(orgs)
    assert not missing_signals, (
        f"no golden OrgWorkflow history gets {sorted(map(str, missing_signals))}"
    )
    missing_agent_signals = set(AgentSignal) - _signal_names(agents)
    assert not missing_agent_signals, (
        f"no golden AgentWorkflow history gets {sorted(map(str, missing_agent_signals))}"
    )
    ran = {name for h in GOLDEN.values() for _, name, _ in _scheduled(h)}
    missing = ACTIVITIES_COVERED - ran
    assert not missing, f"no golden history schedules {sorted(missing)}"


def test_golden_histories_cover_an_llm_agents_mcp_tools() -> None:
    """Listed before the first model call, then one call that answers and one that fails."""
    ran = [(name, inputs) for _, name, inputs in _scheduled(GOLDEN["agent_mcp"])]
    names = [name for name, _ in ran]
    assert names.index("discover_mcp_tools") < names.index(f"{GRAPH_NAME}.model")
    calls = [inputs[0]["tool"] for name, inputs in ran if name == "call_mcp_tool"]
    assert calls == ["lookup", "explode"]


def test_golden_histories_cover_a_tool_agent_step() -> None:
    """A ``tool`` agent's own step (not an llm agent's call_tool): sandbox, then publish."""
    tool_steps = [
        h
        for h in _of_type(AGENT_WORKFLOW_TYPE)
        if {"load_current", "run_code", "publish_emissions"}
        <= (ran := {name for _, name, _ in _scheduled(h)})
        and f"{GRAPH_NAME}.model" not in ran
    ]
    assert tool_steps, "no golden history of a tool agent's step"


def test_golden_histories_cover_a_refusal_under_the_lock() -> None:
    """An update accepted, then refused by the same rules under the org's lock."""
    failed = [
        e
        for h in _of_type(ORG_WORKFLOW_TYPE)
        for e in h.events
        if e.HasField("workflow_execution_update_completed_event_attributes")
        and e.workflow_execution_update_completed_event_attributes.outcome.HasField("failure")
    ]
    assert failed, "no golden history has an update that failed after it was accepted"


def test_golden_histories_cover_the_dlq_path() -> None:
    """A step that failed for good: its batch to sys.dlq, the agent failed, the org told."""

    def dead_letters(history: WorkflowHistory) -> bool:
        return any(
            name == "publish" and inputs and inputs[0]["topic"] == DLQ_TOPIC
            for _, name, inputs in _scheduled(history)
        )

    def step_failed(history: WorkflowHistory) -> bool:
        return any(e.HasField("activity_task_failed_event_attributes") for e in history.events)

    failed_for_good = [
        h
        for h in _of_type(AGENT_WORKFLOW_TYPE)
        if step_failed(h)
        and dead_letters(h)
        and any(name == "set_agent_status" for _, name, _ in _scheduled(h))
    ]
    assert failed_for_good, "no golden AgentWorkflow history dead-letters a failed step"
    assert OrgSignal.AGENT_FAILED in _signal_names(_of_type(ORG_WORKFLOW_TYPE)), (
        "no golden OrgWorkflow history is told an agent failed"
    )


def test_golden_histories_cover_flow_replies_approvals_and_a_failed_run() -> None:
    """FlowWorkflow: replies signalled as the bridge does, an approval decided, a run
    whose step timed out compensated and dead-lettered."""
    flows = _of_type(FLOW_WORKFLOW_TYPE)
    assert set(FlowSignal) <= _signal_names(flows), "no golden FlowWorkflow history gets a reply"
    assert set(FlowUpdate) <= _update_names(flows), "no golden FlowWorkflow history is decided"
    assert any(
        name == "publish" and inputs and inputs[0]["topic"] == DLQ_TOPIC
        for h in flows
        for _, name, inputs in _scheduled(h)
    ), "no golden FlowWorkflow history dead-letters a failed run"


def test_golden_flow_histories_run_every_step_kind() -> None:
    """Each step kind's commands (a map's batched publish and own clocks, a handoff's two
    asks) are in some recorded FlowWorkflow history."""
    kinds: set[str] = set()
    for history in _of_type(FLOW_WORKFLOW_TYPE):
        started = history.events[0].workflow_execution_started_event_attributes
        flow = json.loads(started.input.payloads[0].data)["flow"]
        kinds |= {k for step in flow["steps"] for k in STEP_KINDS if step.get(k) is not None}
    assert kinds == set(STEP_KINDS), f"no golden FlowWorkflow runs {set(STEP_KINDS) - kinds}"


def test_golden_histories_cover_the_drift_timer_repairing_drift() -> None:
    """The reconcile timer fired, and after it the org recreated topics / restarted agents."""

    def repaired_by_timer(history: WorkflowHistory) -> bool:
        fired = [e.event_id for e in history.events if e.HasField("timer_fired_event_attributes")]
        if not fired:
            return False
        after = {name for event_id, name, _ in _scheduled(history) if event_id > fired[0]}
        return {"missing_topics", "ensure_topics", "start_agents"} <= after

    assert any(repaired_by_timer(h) for h in _of_type(ORG_WORKFLOW_TYPE)), (
        "no golden OrgWorkflow history repairs drift when its reconcile timer fires"
    )


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=[p.stem for p in GOLDEN_FILES])
async def test_golden_history_replays_with_todays_code(path: Path) -> None:
    report = await replay_history(_load(path), make_replayer())
    assert report.ok, (
        f"{path.name} diverges at event {report.divergence_event_id}: {report.error}\n"
        "this change would break running workflows; see tests/unit/test_golden_replay.py"
    )
    assert report.events > 3


# Unsandboxed: the sandbox would re-import this test module (and pytest) for every run.
@workflow.defn(name=AGENT_WORKFLOW_TYPE, sandboxed=False)
class AgentWorkflowWithExtraTimer(AgentWorkflow):
    """AgentWorkflow as someone might 'harmlessly' change it: a pause before its first step."""

    @workflow.run
    async def run(self, input: AgentInput) -> AgentResult:
        await workflow.sleep(1)
        return await super().run(input)


async def test_a_non_deterministic_change_is_caught_with_the_event_where_it_diverges() -> None:
    history = _load(GOLDEN_DIR / "agent_workflow.json")
    org_workflows = [w for w in WORKFLOWS if w is not AgentWorkflow]

    report = await replay_history(
        history, make_replayer([*org_workflows, AgentWorkflowWithExtraTimer])
    )

    assert not report.ok
    assert report.nondeterministic, report.error
    assert report.error and "nondetermin" in report.error.lower()
    # History: 1 started, 2-4 the first workflow task, 5 the first command (load_agent) —
    # where today's changed code starts a timer instead.
    assert report.divergence_event_id == 5, report.error
    assert report.workflow_type == AGENT_WORKFLOW_TYPE


async def test_one_bad_history_does_not_hide_the_others() -> None:
    histories = [_load(p) for p in GOLDEN_FILES]
    org_workflows = [w for w in WORKFLOWS if w is not AgentWorkflow]

    reports = await replay_histories(
        histories, make_replayer([*org_workflows, AgentWorkflowWithExtraTimer])
    )

    assert len(reports) == len(histories)
    by_type = {(r.workflow_id, r.workflow_type): r.ok for r in reports}
    assert all(ok for (_, t), ok in by_type.items() if t == ORG_WORKFLOW_TYPE)
    assert not any(ok for (_, t), ok in by_type.items() if t == AGENT_WORKFLOW_TYPE)


@pytest.mark.parametrize(
    ("message", "event_id"),
    [
        (
            "[TMPRL1100] Nondeterminism error: Timer machine does not handle this event: "
            "HistoryEvent(id: 5, ActivityTaskScheduled)",
            5,
        ),
        ("[TMPRL1100] Nondeterminism error: ... event 12 ...", 12),
        ("Nondeterminism error: No command scheduled for event_id: 9", 9),
        ("something else entirely", None),
    ],
)
def test_divergence_event_id_is_parsed_from_the_error_text(
    message: str, event_id: int | None
) -> None:
    assert divergence_event_id(message) == event_id
