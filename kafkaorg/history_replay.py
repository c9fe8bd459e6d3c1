"""Determinism checks: replay recorded workflow histories against today's workflow code.

A workflow's history is the record of every command its code issued. Replaying
it with the current code must issue the same commands in the same order; if it
does not, running workflows of that type would fail their next task after a
deploy. ``kafkaorg workflow replay`` and the golden-history tests use this.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

from pydantic import BaseModel
from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer, WorkflowReplayResult
from temporalio.workflow import NondeterminismError

from kafkaorg.errors import BadInputError
from kafkaorg.names import ORG_ATTR

# Core's messages name the event in one of these shapes (the first match wins):
#   "... HistoryEvent(id: 12, ActivityTaskScheduled) ..."   "... event 12 ..."
#   "... event_id: 12 ..."   "... event id 12 ..."
_EVENT_ID_PATTERNS = (
    re.compile(r"HistoryEvent\(\s*id:\s*(\d+)"),
    re.compile(r"\bevent[ _]id[:=\s]+(\d+)", re.IGNORECASE),
    re.compile(r"\bevent\s+#?(\d+)\b", re.IGNORECASE),
)
# Core nests failures as `Failure { message: "...", ..., cause: Some(Failure { message: ...`.
_FAILURE_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')
_SUMMARY_CHARS = 500


class ReplayReport(BaseModel):
    """The verdict on one run of one workflow."""

    workflow_id: str
    run_id: str
    workflow_type: str
    events: int
    ok: bool
    nondeterministic: bool = False
    divergence_event_id: int | None = None
    """The history event where today's code issued a different command, if known."""
    error: str | None = None
    """One line: the failure's messages, outermost first."""
    error_detail: str | None = None
    """The replayer's full failure text (nested failures, stack traces)."""


def divergence_event_id(message: str) -> int | None:
    """The event id a non-determinism error names, e.g. ``... event 12 ...`` → 12."""
    for pattern in _EVENT_ID_PATTERNS:
        match = pattern.search(message)
        if match:
            return int(match.group(1))
    return None


def summarize_failure(message: str) -> str:
    """The messages of a nested core failure on one line, without stack traces."""
    parts = []
    for match in _FAILURE_MESSAGE.finditer(message):
        text = match.group(1).encode().decode("unicode_escape", errors="replace")
        lines = [ln.strip() for ln in text.splitlines() if not ln.strip().startswith("For further")]
        if any(lines):
            parts.append(" ".join(ln for ln in lines if ln))
    text = ": ".join(parts) if parts else " ".join(message.split())
    return text if len(text) <= _SUMMARY_CHARS else text[: _SUMMARY_CHARS - 1] + "…"


def workflow_type_of(history: WorkflowHistory) -> str:
    if not history.events:
        return "?"
    first = history.events[0]
    if not first.HasField("workflow_execution_started_event_attributes"):
        return "?"
    return first.workflow_execution_started_event_attributes.workflow_type.name


def _run_id_of(history: WorkflowHistory) -> str:
    try:
        return history.run_id
    except RuntimeError:
        return "?"


def previous_run_id(history: WorkflowHistory) -> str | None:
    """The run this one continued from (continue-as-new), if any."""
    if not history.events or not history.events[0].HasField(
        "workflow_execution_started_event_attributes"
    ):
        return None
    attrs = history.events[0].workflow_execution_started_event_attributes
    return attrs.continued_execution_run_id or None


@contextmanager
def _quiet_sdk_logs() -> Iterator[None]:
    """The SDK logs a traceback per failed replay task; the report carries the failure."""
    logger = logging.getLogger("temporalio.worker")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


def report_of(result: WorkflowReplayResult) -> ReplayReport:
    history = result.history
    failure = result.replay_failure
    report = ReplayReport(
        workflow_id=history.workflow_id,
        run_id=_run_id_of(history),
        workflow_type=workflow_type_of(history),
        events=len(history.events),
        ok=failure is None,
    )
    if failure is not None:
        message = str(failure) or type(failure).__name__
        report.error = summarize_failure(message)
        report.error_detail = message
        report.nondeterministic = isinstance(failure, NondeterminismError) or (
            "nondetermin" in message.lower()
        )
        if report.nondeterministic:
            report.divergence_event_id = divergence_event_id(message)
    return report


async def replay_histories(
    histories: Iterable[WorkflowHistory], replayer: Replayer
) -> list[ReplayReport]:
    """Replay every history with ``replayer`` (``workers.replayer.make_replayer``: the
    worker's workflows and converter); never raises for a diverging history."""
    items = list(histories)
    if not items:
        return []

    async def _iterate() -> AsyncIterator[WorkflowHistory]:
        for history in items:
            yield history

    reports: list[ReplayReport] = []
    with _quiet_sdk_logs():
        async with replayer.workflow_replay_iterator(_iterate()) as results:
            async for result in results:
                reports.append(report_of(result))
    return reports


async def replay_history(history: WorkflowHistory, replayer: Replayer) -> ReplayReport:
    return (await replay_histories([history], replayer))[0]


def load_history_file(text: str, workflow_id: str) -> WorkflowHistory:
    """A history saved by ``WorkflowHistory.to_json()`` or ``temporal workflow show -o json``."""
    return WorkflowHistory.from_json(workflow_id, text)


# --- fetching from a live Temporal ----------------------------------------------------


class RunRef(BaseModel):
    workflow_id: str
    run_id: str
    start_time: datetime | None = None


async def _visible_runs(client: Client, query: str) -> list[RunRef]:
    runs = [
        RunRef(workflow_id=e.id, run_id=e.run_id, start_time=e.start_time)
        async for e in client.list_workflows(query)
    ]
    return sorted(runs, key=lambda r: (r.workflow_id, r.start_time or datetime.min))


async def fetch_workflow_histories(
    client: Client, workflow_id: str, run_id: str | None = None
) -> list[WorkflowHistory]:
    """Histories of one workflow id: the given run, or every run (continue-as-new chains too).

    Raises:
        BadInputError: no workflow (or run) with that id exists.
    """
    if run_id is not None:
        return [await _fetch(client, workflow_id, run_id)]
    # Walk the current chain back through continue-as-new; visibility adds earlier executions
    # of the same id (an agent stopped and started again) and is eventually consistent, so
    # it is only a supplement.
    latest = await _fetch(client, workflow_id, None)
    chain = [latest]
    seen = {_run_id_of(latest)}
    previous = previous_run_id(latest)
    while previous and previous not in seen:
        history = await _fetch(client, workflow_id, previous)
        chain.append(history)
        seen.add(previous)
        previous = previous_run_id(history)
    escaped = workflow_id.replace("\\", "\\\\").replace('"', '\\"')
    extra = [
        await _fetch(client, workflow_id, ref.run_id)
        for ref in await _visible_runs(client, f'WorkflowId = "{escaped}"')
        if ref.run_id not in seen
    ]
    histories = [*extra, *reversed(chain)]
    return sorted(histories, key=_start_time)


def _start_time(history: WorkflowHistory) -> datetime:
    if not history.events:
        return datetime.min
    return history.events[0].event_time.ToDatetime()


async def fetch_org_histories(client: Client, org: str) -> list[WorkflowHistory]:
    """Every run of every workflow tagged with the org (``KafkaorgOrg``), oldest first per id.

    Raises:
        BadInputError: no workflow carries the org's search attribute.
    """
    runs = await _visible_runs(client, f'{ORG_ATTR.name} = "{org}"')
    if not runs:
        raise BadInputError(f"no workflows found for org {org!r} (searched {ORG_ATTR.name})")
    return [await _fetch(client, r.workflow_id, r.run_id) for r in runs]


async def _fetch(client: Client, workflow_id: str, run_id: str | None) -> WorkflowHistory:
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    try:
        return await handle.fetch_history()
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            what = f"run {run_id} of workflow {workflow_id!r}" if run_id else repr(workflow_id)
            raise BadInputError(f"unknown workflow {what}: {exc.message}") from None
        raise
