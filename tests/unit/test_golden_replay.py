"""Recorded histories of every workflow type replay against today's code (offline).

A failure here means a change would break workflows that are running right now:
make the change compatible (``workflow.patched()``, a new handler instead of a
changed one). Re-record with ``scripts/record_golden_histories.py`` only for a
change that is meant to be incompatible, with running workflows migrated.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory

from kafkaorg.history_replay import (
    divergence_event_id,
    load_history_file,
    previous_run_id,
    replay_histories,
    replay_history,
    workflow_type_of,
)
from kafkaorg.names import AGENT_WORKFLOW_TYPE, ORG_WORKFLOW_TYPE
from workers.worker import WORKFLOWS
from workflows.agent import AgentInput, AgentResult, AgentWorkflow

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "golden"
GOLDEN_FILES = sorted(GOLDEN_DIR.glob("*.json"))


def _load(path: Path) -> WorkflowHistory:
    return load_history_file(path.read_text(), path.stem)


def _ends_in_continue_as_new(history: WorkflowHistory) -> bool:
    return history.events[-1].HasField("workflow_execution_continued_as_new_event_attributes")


def test_golden_histories_cover_every_workflow_type_and_continue_as_new() -> None:
    histories = [_load(p) for p in GOLDEN_FILES]
    types = {workflow_type_of(h) for h in histories}
    registered = {getattr(w, "__temporal_workflow_definition").name for w in WORKFLOWS}
    assert registered <= types, f"no golden history for {sorted(registered - types)}"
    agents = [h for h in histories if workflow_type_of(h) == AGENT_WORKFLOW_TYPE]
    assert any(_ends_in_continue_as_new(h) for h in agents), "a run that continued-as-new"
    assert any(previous_run_id(h) for h in agents), "a run that was continued from another"
    assert any(workflow_type_of(h) == ORG_WORKFLOW_TYPE for h in histories)


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=[p.stem for p in GOLDEN_FILES])
async def test_golden_history_replays_with_todays_code(path: Path) -> None:
    report = await replay_history(_load(path))
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

    report = await replay_history(history, workflows=[*org_workflows, AgentWorkflowWithExtraTimer])

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
        histories, workflows=[*org_workflows, AgentWorkflowWithExtraTimer]
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
