"""AgentWorkflow: one long-lived workflow per agent, fed by the Kafka bridge.

The bridge signals batches of records into the inbox; the workflow drops ids it
has already seen (effectively-once processing on top of at-least-once delivery),
processes the inbox in steps of one activity each, and continues-as-new before
its history grows large, carrying inbox, dedup window and counters across.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, RetryState

with workflow.unsafe.imports_passed_through():
    from activities.agent_step import AgentStepActivities, EmissionsInput, StepInput
    from activities.conversation import ArchiveInput, ConversationActivities
    from activities.kafka import KafkaActivities, PublishInput
    from activities.sandbox import (
        RUN_CODE_HEARTBEAT_TIMEOUT,
        RUN_CODE_RETRY,
        SandboxRequest,
        StoredStdin,
        run_code_timeout,
    )
    from activities.state import AgentRef, AgentStatusChange, StateActivities
    from activities.tool_registry import ToolActivities, ToolRef, ToolRun, ToolRunsInput
    from kafkaorg.contracts import (
        AgentConversation,
        AgentInput,
        AgentQuery,
        AgentReport,
        AgentResult,
        AgentSignal,
        AgentState,
        AgentStatus,
        Delivery,
        OrgSignal,
        SpecUpdate,
        StopRequest,
        TextReply,
    )
    from kafkaorg.envelope import Record, caused_by, derived_id
    from kafkaorg.kinds import Emission, tool_emissions
    from kafkaorg.llm.conversation import MAX_CONVERSATION_CHARS, trim_conversation, with_note
    from kafkaorg.llm.prompts import record_message
    from kafkaorg.llm.state import LlmGraphState
    from kafkaorg.mcp_tools import (
        DISCOVER_ACTIVITY,
        LIST_JAILED_ACTIVITY,
        McpCatalog,
        McpDiscoverInput,
        McpErrorType,
        McpListInput,
    )
    from kafkaorg.names import (
        AGENT_WORKFLOW_TYPE,
        AUDIT_TOPIC,
        DLQ_TOPIC,
        SANDBOX_TASK_QUEUE,
        org_workflow_id,
    )
    from kafkaorg.sandbox import SandboxPolicy, SandboxResult, ToolOutputError
    from kafkaorg.spec import AgentSpec
    from kafkaorg.tool_programs import call_program, call_result
    from workflows.llm_graph import GRAPH_NAME, MAX_MODEL_CALLS_PER_RECORD

DEDUP_WINDOW = 5000
"""Record ids remembered per agent; redeliveries arrive within seconds, not thousands of records."""
MAX_STEP_RECORDS = 1000
MAX_STEP_BYTES = 1_000_000
"""One step's activity input stays well under Temporal's 2 MB payload limit."""
MAX_CARRIED_STATE_BYTES = 1_500_000
"""Continue-as-new input stays under Temporal's 2 MB payload limit (inbox included)."""
HISTORY_EVENTS_BEFORE_CONTINUE = 1000
"""A worker taking an agent over (a cache miss, a dead worker) replays the whole run in one
workflow task: about 1 s at 1,000 events here, 6.8 s at 4,000 (bench/bench_replay.py), and
that task must end well within ``AGENT_TASK_TIMEOUT``."""
SHORT_RUNS_PATCH = "continue-as-new-at-1000-events"
"""Runs started before it continue-as-new at the old bound (replaying them stays exact)."""
LEGACY_HISTORY_EVENTS_BEFORE_CONTINUE = 4000
STEP_HEARTBEAT_TIMEOUT = timedelta(seconds=3)
"""A step on a worker that died is retried this soon (the step heartbeats from a thread
while it produces, activities/heartbeat.py, so a slow broker does not trip it)."""
HISTORY_BYTES_BEFORE_CONTINUE = 10_000_000
"""``llm`` agents put conversations into history; stay far below Temporal's 50 MB."""
ARCHIVE_CONVERSATION_PATCH = "archive-conversation-turns"
"""Histories from before turns were archived (they were dropped) replay without the activity."""
TOOL_RUN_HISTORY_PATCH = "tool-run-history"
"""Histories from before tool runs were recorded replay without the local activity."""
FAILURE_AUDITED_PATCH = "agent-failure-audited"
"""Histories from before an agent's failure was announced on the audit topic."""
AGENT_FAILED_RECORD_TYPE = "agent.failed"
PAYLOAD_BY_REFERENCE = "payload-by-reference"
PAYLOAD_BY_REFERENCE_ERROR = "tool agents do not take payloads stored by reference yet"
TOOL_PAYLOAD_BY_REFERENCE_PATCH = "tool-payload-by-reference"
"""Histories from before the sandbox read stored payloads dead-lettered such records."""
MCP_CATALOG_TTL = timedelta(minutes=10)
"""How long an llm agent uses the MCP tools it listed before listing them again (each
run lists them afresh, and so does a change of the agent's ``mcp``)."""
MCP_DISCOVERY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=5),
    maximum_attempts=3,
    non_retryable_error_types=list(McpErrorType.NON_RETRYABLE),
)
MAX_TOOL_CALLS_PER_STEP = 16
"""A ``tool`` agent's step runs this many sandbox calls at most (each is a few events)."""


_STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=8,
    non_retryable_error_types=["AgentStepError"],
)


def _attempts(err: ActivityError, policy: RetryPolicy) -> int:
    """How often the failed step ran: all its attempts, or once for a for-good failure."""
    if err.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED and policy.maximum_attempts:
        return policy.maximum_attempts
    return 1


def _record_bytes(record: Record) -> int:
    return len(record.model_dump_json())


def _batch_length(sizes: list[int]) -> int:
    """How many of the inbox's first records one step takes: bounded by count and by
    serialized size, at least one."""
    total = 0
    for i, size in enumerate(sizes[:MAX_STEP_RECORDS]):
        total += size
        if total > MAX_STEP_BYTES and i > 0:
            return i
    return min(len(sizes), MAX_STEP_RECORDS)


@workflow.defn(name=AGENT_WORKFLOW_TYPE)
class AgentWorkflow:
    @workflow.init
    def __init__(self, input: AgentInput) -> None:
        self._input = input
        self._state = input.state or AgentState()
        self._seen = set(self._state.seen_ids)
        missing = len(self._state.inbox) - len(self._state.inbox_marks)
        self._state.inbox_marks.extend([None] * max(0, missing))
        # Serialized size of each inbox record, measured once on arrival: sizes the steps
        # and answers the bridge's byte bound. Recomputed per run rather than carried.
        self._inbox_sizes = [_record_bytes(r) for r in self._state.inbox]
        self._stop: StopRequest | None = None
        self._mcp: McpCatalog | None = None
        """The llm agent's MCP tools, listed once per run (not carried: a new run lists
        them afresh, so a changed server is seen)."""
        self._steps_this_run = 0
        self._step_retry = _STEP_RETRY
        if input.step_max_attempts is not None:
            self._step_retry = dataclasses.replace(
                _STEP_RETRY,
                initial_interval=timedelta(milliseconds=200),
                maximum_attempts=input.step_max_attempts,
            )

    @workflow.run
    async def run(self, input: AgentInput) -> AgentResult:
        state = self._state
        if state.spec is None:
            loaded = await workflow.execute_activity_method(
                StateActivities.load_agent,
                AgentRef(org=input.org, agent=input.agent),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
            )
            state.spec, state.version = loaded.spec, loaded.version
            # A pause may come before the agent first runs.
            state.paused = state.paused or loaded.status == AgentStatus.PAUSED
            if loaded.status in (AgentStatus.RETIRED, AgentStatus.FAILED):
                # Started by a late delivery: this agent no longer works, its records go to the DLQ.
                self._stop = StopRequest(reason=f"agent is {loaded.status}")
        while state.failed_reason is None:
            await workflow.wait_condition(
                lambda: (bool(state.inbox) and not state.paused) or self._stop is not None
            )
            if self._stop is not None and (state.paused or not state.inbox):
                break  # a paused agent keeps its unprocessed inbox in the final state
            assert state.spec is not None
            await self._step(state.spec)
            state.last_step_at = workflow.now()
            if self._should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                state.seen_ids = [i for i in state.seen_ids if i in self._seen][-DEDUP_WINDOW:]
                state.runs += 1
                workflow.continue_as_new(
                    AgentInput(
                        org=input.org,
                        agent=input.agent,
                        state=state,
                        continue_as_new_after_steps=input.continue_as_new_after_steps,
                        conversation_max_chars=input.conversation_max_chars,
                        step_max_attempts=input.step_max_attempts,
                    )
                )
        await workflow.wait_condition(workflow.all_handlers_finished)
        if state.inbox:
            reason = state.failed_reason or (self._stop.reason if self._stop else "stopped")
            await self._dead_letter(list(state.inbox), "agent-not-running", reason)
            self._take_from_inbox(len(state.inbox))
            state.origins.clear()
            state.traces.clear()
        return AgentResult(processed=state.processed, published=state.published)

    async def _step(self, spec: AgentSpec) -> None:
        if spec.kind == "tool":
            await self._tool_step(spec)
            return
        if spec.kind == "llm":
            await self._llm_step(spec)
            return
        state = self._state
        batch = state.inbox[: _batch_length(self._inbox_sizes)]
        try:
            result = await workflow.execute_activity_method(
                AgentStepActivities.run_agent_step,
                StepInput(
                    org=self._input.org,
                    workflow_id=workflow.info().workflow_id,
                    agent=spec,
                    records=batch,
                    marks=state.inbox_marks[: len(batch)],
                    traces=[state.traces.get(r.id) for r in batch],
                ),
                start_to_close_timeout=timedelta(seconds=60),
                # A worker that dies mid-step is noticed in seconds, not after the full timeout.
                heartbeat_timeout=STEP_HEARTBEAT_TIMEOUT,
                retry_policy=self._step_retry,
            )
            state.published += result.published
        except ActivityError as err:
            await self._fail(batch, err)
        self._forget(batch)
        self._take_from_inbox(len(batch))
        state.processed += len(batch)
        self._steps_this_run += 1

    def _take_from_inbox(self, count: int) -> None:
        """Drop the inbox's first ``count`` records (processed or dead-lettered)."""
        state = self._state
        del self._inbox_sizes[:count]
        del state.inbox[:count]
        del state.inbox_marks[:count]

    def _forget(self, records: list[Record]) -> None:
        for record in records:
            self._state.origins.pop(record.id, None)
            self._state.traces.pop(record.id, None)

    async def _fail(self, batch: list[Record], err: ActivityError) -> None:
        """Failed work is never dropped silently: to the DLQ, the agent stops, the org knows."""
        state = self._state
        reason = str(err.cause) if err.cause else str(err)
        await self._dead_letter(
            batch, "agent-step-failed", reason, attempts=_attempts(err, self._step_retry)
        )
        state.failed_reason = reason[:500]
        await workflow.execute_activity_method(
            StateActivities.set_agent_status,
            AgentStatusChange(
                org=self._input.org,
                agent=self._input.agent,
                status=AgentStatus.FAILED,
                reason=state.failed_reason,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
        )
        if workflow.patched(FAILURE_AUDITED_PATCH):
            await workflow.execute_activity_method(
                KafkaActivities.publish,
                PublishInput(
                    org=self._input.org,
                    topic=AUDIT_TOPIC,
                    records=[
                        Record(
                            id=str(workflow.uuid4()),
                            type=AGENT_FAILED_RECORD_TYPE,
                            org=self._input.org,
                            source="system:agent-workflow",
                            correlation_id=workflow.info().workflow_id,
                            timestamp=workflow.now(),
                            payload={"agent": self._input.agent, "reason": state.failed_reason},
                        )
                    ],
                ),
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
            )
        # The org's meta-agent learns it too; the rest of the org keeps working.
        await workflow.get_external_workflow_handle(org_workflow_id(self._input.org)).signal(
            OrgSignal.AGENT_FAILED,
            AgentStatusChange(
                org=self._input.org,
                agent=self._input.agent,
                status=AgentStatus.FAILED,
                reason=state.failed_reason,
            ),
        )

    async def _llm_step(self, spec: AgentSpec) -> None:
        """One record through the agent's LangGraph graph, the conversation carried along.

        A record the model cannot finish goes to the DLQ with the reason and the agent
        goes on (``kafkaorg.llm.failures``); only a model call no retry can mend for any
        record (no endpoint, the org's budget spent) fails the agent.
        """
        from temporalio.exceptions import ApplicationError
        from temporalio.langgraph import graph

        with workflow.unsafe.imports_passed_through():
            from kafkaorg.llm.failures import (
                AGENT_FAILURES,
                MODEL_CALL_RETRY,
                LlmFailure,
                ModelErrorType,
                reply_text,
            )
            from workflows.llm_graph import CALL_FAILURE_PATCH, TEXT_REPLY_PATCH

        state = self._state
        record, mark = state.inbox[0], state.inbox_marks[0]
        workflow_id = workflow.info().workflow_id
        history = with_note(state.conversation, state.conversation_dropped)
        max_chars = self._input.conversation_max_chars or MAX_CONVERSATION_CHARS
        graph_input = LlmGraphState(
            org=self._input.org,
            agent=spec.model_dump(mode="json"),
            record=record.model_dump(mode="json"),
            scope=f"{workflow_id}#{mark}" if mark else workflow_id,
            mark=mark,
            messages=[*history, record_message(None, record)],
            **({"trace": state.traces[record.id]} if record.id in state.traces else {}),
        )
        if spec.mcp:
            catalog = await self._mcp_catalog(spec, record)
            if catalog is None:  # dead-lettered: the record is done with
                self._forget([record])
                self._take_from_inbox(1)
                state.processed += 1
                self._steps_this_run += 1
                return
            graph_input["mcp"] = catalog.model_dump(mode="json")
        try:
            result = (
                await graph(GRAPH_NAME)
                .compile()
                .ainvoke(graph_input, {"recursion_limit": 2 * MAX_MODEL_CALLS_PER_RECORD + 4})
            )
        except ActivityError as err:
            cause = err.cause
            kind = (
                cause.type
                if isinstance(cause, ApplicationError) and cause.type
                else type(cause or err).__name__
            )
            # A provider outage (429, 5xx, timeouts, after every retry) costs this record,
            # not the agent; histories from before failed the agent for it.
            why = str(cause or err)
            if kind not in AGENT_FAILURES and workflow.patched(CALL_FAILURE_PATCH):
                await self._dead_letter(
                    [record],
                    (
                        LlmFailure.FLOW_BUDGET.value
                        if kind == ModelErrorType.FLOW_BUDGET_EXCEEDED
                        else LlmFailure.CALL_FAILED.value
                    ),
                    why if why.startswith(kind) else f"{kind}: {why}",
                    attempts=_attempts(err, MODEL_CALL_RETRY),
                )
            else:
                await self._fail([record], err)
        else:
            if result.get("failure"):
                await self._dead_letter(
                    [record], result["failure"], result.get("failure_detail") or ""
                )
            elif not result.get("published"):
                text = reply_text(result["messages"][-1])
                if text and workflow.patched(TEXT_REPLY_PATCH):
                    await self._text_reply(spec, record, mark, text)
            kept, moved = trim_conversation(result["messages"], max_chars)
            if moved and workflow.patched(ARCHIVE_CONVERSATION_PATCH):
                # Stored before it leaves the state: a crash here retries, never loses a turn.
                await workflow.execute_activity_method(
                    ConversationActivities.archive_turns,
                    ArchiveInput(
                        org=self._input.org,
                        agent=self._input.agent,
                        workflow_id=workflow_id,
                        chain_id=workflow.info().first_execution_run_id,
                        first_turn=state.conversation_dropped + 1,
                        turns=moved,
                    ),
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
                )
            state.conversation = kept
            state.conversation_dropped += len(moved)
            state.published += result.get("published", 0)
            state.tokens += result.get("tokens", 0)
        self._forget([record])
        self._take_from_inbox(1)
        state.processed += 1
        self._steps_this_run += 1

    async def _mcp_catalog(self, spec: AgentSpec, record: Record) -> McpCatalog | None:
        """The MCP tools the agent may call: listed by an activity, then cached for this
        run (``MCP_CATALOG_TTL``). A server that cannot list them dead-letters the record
        (``mcp-unavailable``, the server and the reason in ``dlq.error``) and ``None`` is
        returned; the next record tries again."""
        with workflow.unsafe.imports_passed_through():
            from kafkaorg.llm.failures import LlmFailure
            from kafkaorg.llm.prompts import allowed_tools

        now = workflow.now()
        cached = self._mcp
        if (
            cached is not None
            and cached.allowed == spec.mcp
            and cached.listed_at is not None
            and now - cached.listed_at < MCP_CATALOG_TTL
        ):
            return cached
        try:
            catalog: McpCatalog = await workflow.execute_activity(
                DISCOVER_ACTIVITY,
                McpDiscoverInput(
                    org=self._input.org,
                    agent=spec.name,
                    allowed=list(spec.mcp),
                    reserved_names=allowed_tools(spec),
                ),
                result_type=McpCatalog,
                start_to_close_timeout=timedelta(seconds=90),
                retry_policy=MCP_DISCOVERY_RETRY,
                summary="list MCP tools",
            )
            if catalog.unlisted:  # stdio servers: the sandbox worker lists them, jailed
                jailed: McpCatalog = await workflow.execute_activity(
                    LIST_JAILED_ACTIVITY,
                    McpListInput(
                        agent=spec.name,
                        servers=[s for s in catalog.servers if s.name in catalog.unlisted],
                        allowed=list(spec.mcp),
                        reserved_names=allowed_tools(spec) + [t.name for t in catalog.tools],
                    ),
                    result_type=McpCatalog,
                    task_queue=SANDBOX_TASK_QUEUE,
                    start_to_close_timeout=timedelta(seconds=90),
                    retry_policy=MCP_DISCOVERY_RETRY,
                    summary="list MCP tools in the sandbox",
                )
                catalog.tools += jailed.tools
                catalog.unlisted = []
        except ActivityError as err:
            self._mcp = None
            await self._dead_letter(
                [record],
                LlmFailure.MCP_UNAVAILABLE.value,
                str(err.cause or err),
                attempts=_attempts(err, MCP_DISCOVERY_RETRY),
            )
            return None
        catalog.listed_at = now
        self._mcp = catalog
        return catalog

    async def _text_reply(
        self, spec: AgentSpec, record: Record, mark: str | None, text: str
    ) -> None:
        """``on_text_reply``: an answer in prose (the agent published nothing for the
        record) is published, dropped or dead-lettered; never lost unseen."""
        with workflow.unsafe.imports_passed_through():
            from kafkaorg.llm.failures import LLM_REPLY_TYPE, LlmFailure

        state = self._state
        outcome = TextReply(spec.on_text_reply)
        if outcome is TextReply.DLQ:
            await self._dead_letter([record], LlmFailure.TEXT_REPLY.value, text)
            return
        if outcome is TextReply.DROP or not spec.publishes:
            state.text_replies_dropped += 1
            return
        workflow_id = workflow.info().workflow_id
        scope = f"{workflow_id}#{mark}" if mark else workflow_id
        reply = Record.model_validate(
            {
                "id": derived_id(scope, record.id, "llm-text-reply"),
                "type": LLM_REPLY_TYPE,
                "source": f"agent:{spec.name}",
                "timestamp": workflow.now(),
                "payload": {"text": text},
                **caused_by(record),
            }
        )
        await workflow.execute_activity_method(
            AgentStepActivities.publish_emissions,
            EmissionsInput(
                org=self._input.org,
                emissions=[Emission(topic=spec.publishes[0], record=reply)],
                marks=[mark],
                kind=spec.kind,
                traces=[state.traces.get(record.id)],
            ),
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
        )
        state.published += 1

    async def _tool_step(self, spec: AgentSpec) -> None:
        """Run the agent's tool in the sandbox on each record and publish each result.

        One bad input (the tool fails on it, hits a limit, prints no JSON) sends that
        record to the DLQ with the sandbox's reason; the agent keeps working.
        """
        state = self._state
        batch = state.inbox[: min(_batch_length(self._inbox_sizes), MAX_TOOL_CALLS_PER_STEP)]
        marks = state.inbox_marks[: len(batch)]
        assert spec.tool is not None
        current = await workflow.execute_activity_method(
            ToolActivities.load_current,
            ToolRef(org=self._input.org, name=spec.tool),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
        )
        failures: dict[tuple[str, str], list[Record]] = {}
        emissions: list[Emission] = []
        emission_marks: list[str | None] = []
        emission_traces: list[dict[str, str] | None] = []
        if current.version is None:
            failures[("tool-unavailable", current.reason or "no active version")] = list(batch)
        else:
            # A payload stored by reference: the sandbox worker reads it from PostgreSQL (it
            # never reaches the jail as an empty object, nor passes through Temporal).
            by_reference = [r for r in batch if r.payload_ref is not None]
            readable = not by_reference or workflow.patched(TOOL_PAYLOAD_BY_REFERENCE_PATCH)
            if not readable:
                failures[(PAYLOAD_BY_REFERENCE, PAYLOAD_BY_REFERENCE_ERROR)] = by_reference
            runnable = [
                (r, m)
                for r, m in zip(batch, marks, strict=True)
                if readable or r.payload_ref is None
            ]
            records = [r for r, _ in runnable]
            program = call_program(current.code)
            calls = await asyncio.gather(*(self._call_tool(program, r) for r in records))
            if records and workflow.patched(TOOL_RUN_HISTORY_PATCH):
                await self._record_tool_runs(spec.tool, current.version, records, list(calls))
            now = workflow.now()
            workflow_id = workflow.info().workflow_id
            outcomes = [outcome for outcome, _ in calls]
            for (record, mark), outcome in zip(runnable, outcomes, strict=True):
                if isinstance(outcome, str):
                    error = f"tool {spec.tool} v{current.version}: {outcome}"
                    failures.setdefault(("tool-call-failed", error), []).append(record)
                    continue
                scope = f"{workflow_id}#{mark}" if mark else workflow_id
                for emission in tool_emissions(spec, scope, record, outcome, now):
                    emissions.append(emission)
                    emission_marks.append(mark)
                    emission_traces.append(state.traces.get(record.id))
        if emissions:
            try:
                result = await workflow.execute_activity_method(
                    AgentStepActivities.publish_emissions,
                    EmissionsInput(
                        org=self._input.org,
                        emissions=emissions,
                        marks=emission_marks,
                        kind=spec.kind,
                        traces=emission_traces,
                    ),
                    start_to_close_timeout=timedelta(seconds=60),
                    heartbeat_timeout=STEP_HEARTBEAT_TIMEOUT,
                    retry_policy=self._step_retry,
                )
                state.published += result.published
            except ActivityError as err:
                done = {id(r) for records in failures.values() for r in records}
                error = str(err.cause) if err.cause else str(err)
                failures[("agent-step-failed", error)] = [r for r in batch if id(r) not in done]
        for (why, error), records in failures.items():
            await self._dead_letter(records, why, error)
        self._forget(batch)
        self._take_from_inbox(len(batch))
        state.processed += len(batch)
        self._steps_this_run += 1

    async def _call_tool(
        self, program: str, record: Record
    ) -> tuple[dict[str, Any] | str, SandboxResult | None]:
        """The tool's result for one record, or why there is none; and the sandbox's run."""
        try:
            result = await workflow.execute_activity(
                "run_code",
                SandboxRequest(
                    code=program,
                    stdin=json.dumps(record.payload),
                    trace=self._state.traces.get(record.id),
                    stdin_ref=(
                        StoredStdin(org=record.org, sha256=record.payload_ref.sha256)
                        if record.payload_ref is not None
                        else None
                    ),
                ),
                task_queue=SANDBOX_TASK_QUEUE,
                result_type=SandboxResult,
                start_to_close_timeout=run_code_timeout(SandboxPolicy()),
                heartbeat_timeout=RUN_CODE_HEARTBEAT_TIMEOUT,
                retry_policy=RUN_CODE_RETRY,
            )
        except ActivityError as err:
            return f"sandbox: {err.cause or err}", None
        try:
            return call_result(result), result
        except ToolOutputError as exc:
            return str(exc), result

    async def _record_tool_runs(
        self,
        tool: str,
        version: int,
        batch: list[Record],
        outcomes: list[tuple[dict[str, Any] | str, SandboxResult | None]],
    ) -> None:
        """The tool's run history in PostgreSQL; losing it never holds up the records."""
        runs = [
            ToolRun(
                record_id=record.id,
                input=record.payload,
                result=outcome if isinstance(outcome, dict) else None,
                error=outcome if isinstance(outcome, str) else None,
                duration_s=run.duration_s if run else None,
                cpu_s=run.cpu_s if run else None,
                limit_hit=run.limit_hit.value if run and run.limit_hit else None,
            )
            for record, (outcome, run) in zip(batch, outcomes, strict=True)
        ]
        try:
            await workflow.execute_local_activity_method(
                ToolActivities.record_runs,
                ToolRunsInput(
                    org=self._input.org,
                    agent=self._input.agent,
                    tool=tool,
                    version=version,
                    workflow_id=workflow.info().workflow_id,
                    runs=runs,
                ),
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        except ActivityError as err:
            workflow.logger.warning("tool run history not recorded: %s", err.cause or err)

    async def _dead_letter(
        self, records: list[Record], why: str, error: str, attempts: int | None = None
    ) -> None:
        """Failed or undeliverable work is never dropped: it goes to the org's DLQ, each
        record with where it was read and how often its step was tried."""
        headers = {
            "dlq.reason": why,
            "dlq.error": error[:500],
            "dlq.agent": self._input.agent,
            "dlq.workflow_id": workflow.info().workflow_id,
        }
        if attempts is not None:
            headers["dlq.attempts"] = str(attempts)
        per_record: dict[str, dict[str, str]] = {}
        traces = self._state.traces
        for record in records:
            origin = self._state.origins.get(record.id)
            if origin:
                topic, partition, offset = origin.rsplit(":", 2)
                per_record[record.id] = {
                    "dlq.topic": topic,
                    "dlq.partition": partition,
                    "dlq.offset": offset,
                }
        await workflow.execute_activity_method(
            KafkaActivities.publish,
            PublishInput(
                org=self._input.org,
                topic=DLQ_TOPIC,
                records=records,
                headers=headers,
                record_headers=per_record,
                traces={r.id: traces[r.id] for r in records if r.id in traces},
            ),
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
        )
        self._state.dead_lettered += len(records)

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        limit = self._input.continue_as_new_after_steps
        events = info.get_current_history_length()
        due = (
            info.is_continue_as_new_suggested()
            or events > LEGACY_HISTORY_EVENTS_BEFORE_CONTINUE
            or (events > HISTORY_EVENTS_BEFORE_CONTINUE and workflow.patched(SHORT_RUNS_PATCH))
            or info.get_current_history_size() > HISTORY_BYTES_BEFORE_CONTINUE
            or (limit is not None and self._steps_this_run >= limit)
        )
        # The next run's input is this state: with a big inbox, work it down first (each
        # step takes up to 1 MB of it; the bridge stops delivering at the inbox bound).
        return due and len(self._state.model_dump_json()) <= MAX_CARRIED_STATE_BYTES

    @workflow.signal(name=AgentSignal.DELIVER)
    def deliver(self, delivery: Delivery) -> None:
        state = self._state
        for record in delivery.records:
            state.received += 1
            mark = delivery.marks.get(record.id)
            key = f"{record.id}#{mark}" if mark else record.id
            if key in self._seen:
                state.duplicates += 1
                continue
            self._seen.add(key)
            state.seen_ids.append(key)
            state.inbox.append(record)
            state.inbox_marks.append(mark)
            self._inbox_sizes.append(_record_bytes(record))
            if record.id in delivery.origins:
                state.origins[record.id] = delivery.origins[record.id]
            if record.id in delivery.traces:
                state.traces[record.id] = delivery.traces[record.id]
        if len(state.seen_ids) > 2 * DEDUP_WINDOW:
            forget = state.seen_ids[:-DEDUP_WINDOW]
            del state.seen_ids[:-DEDUP_WINDOW]
            self._seen.difference_update(forget)

    @workflow.signal(name=AgentSignal.STOP)
    def stop(self, request: StopRequest) -> None:
        self._stop = request

    @workflow.signal(name=AgentSignal.PAUSE)
    def pause(self) -> None:
        """Records keep arriving and wait in the inbox until ``resume``."""
        self._state.paused = True

    @workflow.signal(name=AgentSignal.RESUME)
    def resume(self) -> None:
        self._state.paused = False

    @workflow.signal(name=AgentSignal.UPDATE_SPEC)
    def update_spec(self, update: SpecUpdate) -> None:
        if update.version >= self._state.version:
            self._state.spec = update.spec
            self._state.version = update.version

    @workflow.query(name=AgentQuery.CONVERSATION)
    def conversation(self) -> AgentConversation:
        s = self._state
        return AgentConversation(messages=s.conversation, archived_turns=s.conversation_dropped)

    @workflow.query(name=AgentQuery.STATUS)
    def status(self) -> AgentReport:
        s = self._state
        return AgentReport(
            org=self._input.org,
            agent=self._input.agent,
            inbox=len(s.inbox),
            inbox_bytes=sum(self._inbox_sizes),
            received=s.received,
            duplicates=s.duplicates,
            processed=s.processed,
            published=s.published,
            dead_lettered=s.dead_lettered,
            runs=s.runs,
            stopping=self._stop is not None,
            paused=s.paused,
            version=s.version,
            failed_reason=s.failed_reason,
            tokens=s.tokens,
            conversation_messages=len(s.conversation),
            last_step_at=s.last_step_at,
            text_replies_dropped=s.text_replies_dropped,
        )
