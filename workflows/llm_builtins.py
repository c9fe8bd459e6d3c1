"""The built-in tools of ``llm`` agents, run inside the AgentWorkflow (deterministic code).

Each tool call becomes the activity that does its side effect: a publish, a
sandbox run on the ``kafkaorg-sandbox`` queue, a registry read, or an update of
the OrgWorkflow (which checks rights and quotas). Whatever goes wrong with one
call, bad arguments included, is answered to the model as an error it can act on:
arguments that are not a JSON object, a tool the agent does not have, arguments that
do not fit the tool's schema (``kafkaorg.llm.failures`` lists every outcome).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.agent_step import SCHEMA_VIOLATION_ERROR, AgentStepActivities, EmissionsInput
    from activities.approvals import ApprovalActivities, PublishCheck
    from activities.conversation import ConversationActivities, RecallQuery
    from activities.directory import DirectoryActivities, DirectoryQuery, SchemaQuery
    from activities.org_requests import OrgRequestActivities, RequestOutcome
    from activities.sandbox import (
        RUN_CODE_HEARTBEAT_TIMEOUT,
        RUN_CODE_RETRY,
        SandboxRequest,
        run_code_timeout,
    )
    from activities.tool_registry import ToolActivities, ToolRef
    from kafkaorg.contracts import (
        CreateAgentRequest,
        CreateToolRequest,
        PublishRequest,
        StartFlowOutcome,
        StartFlowRequest,
    )
    from kafkaorg.contracts.org import NOT_HELD
    from kafkaorg.envelope import Record, caused_by, derived_id
    from kafkaorg.kinds import Emission
    from kafkaorg.llm.prompts import allowed_tools, argument_problems
    from kafkaorg.llm.state import LlmGraphState
    from kafkaorg.mcp_tools import (
        CALL_ACTIVITY,
        McpCallInput,
        McpCallResult,
        McpCatalog,
        McpErrorType,
        allows,
    )
    from kafkaorg.names import SANDBOX_TASK_QUEUE
    from kafkaorg.sandbox import SandboxPolicy, SandboxResult, ToolOutputError
    from kafkaorg.spec import AgentSpec, ToolSpec
    from kafkaorg.tool_programs import call_program, call_result

TOOL_ARGS_PATCH = "llm-tool-arguments-checked"
"""Calls checked against the tool's schema (and non-object JSON refused) before they run;
histories from before ran such calls with what they could make of the arguments."""

PUBLISH_APPROVALS_PATCH = "llm-publish-approvals"
"""Histories from before a publish to an audit-class topic could wait for a person."""

_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10), maximum_attempts=10)
MCP_CALL_MARGIN = timedelta(seconds=10)
"""Over a server's ``timeout_s``: connecting and the session's set-up."""
MAX_OUTPUT_CHARS = 4000
"""Sandbox output handed back to the model; the rest is cut (it is in the activity result)."""


class ToolCallError(Exception):
    """What the model is told when a call cannot be done (bad args, no right, refused)."""


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


class BuiltinTools:
    """The calls of one model turn, for one agent working on one record."""

    def __init__(self, state: LlmGraphState) -> None:
        self._org: str = state["org"]
        self._agent = AgentSpec.model_validate(state["agent"])
        self._record = Record.model_validate(state["record"])
        self._scope: str = state["scope"]
        self._mark: str | None = state.get("mark")
        self._trace: dict[str, str] | None = state.get("trace")
        self._published_before: int = state.get("published", 0)
        self._mcp = McpCatalog.model_validate(state["mcp"]) if state.get("mcp") else None
        self.published = 0

    @property
    def requester(self) -> str:
        return f"agent:{self._org}:{self._agent.name}"

    async def call(self, name: str, args: dict[str, Any]) -> str:
        """The tool message content for one call: JSON with ``ok`` and a result or an error."""
        names = allowed_tools(self._agent)
        if name not in names:
            if self._mcp is not None and self._mcp.tool(name) is not None:
                return await self._mcp_call(name, args)
            names += [t.name for t in self._mcp.tools] if self._mcp else []
            return _json(
                {
                    "ok": False,
                    "error": f"no tool {name!r} for agent {self._agent.name}; "
                    f"your tools: {', '.join(names)}",
                }
            )
        problems = argument_problems(name, args)
        if problems and workflow.patched(TOOL_ARGS_PATCH):
            return _json(
                {"ok": False, "error": f"invalid arguments for {name}: {'; '.join(problems)}"}
            )
        try:
            result = await getattr(self, f"_{name}")(args)
        except ToolCallError as exc:
            return _json({"ok": False, "error": str(exc)})
        except ValidationError as exc:
            found = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'args'}: {e['msg']}" for e in exc.errors()
            )
            return _json({"ok": False, "error": f"invalid arguments for {name}: {found}"})
        except ActivityError as err:
            return _json({"ok": False, "error": f"{name} failed: {err.cause or err}"})
        return _json({"ok": True, **result})

    async def _mcp_call(self, name: str, args: dict[str, Any]) -> str:
        """One MCP tool call as an activity; whatever goes wrong is told to the model."""
        assert self._mcp is not None
        tool = self._mcp.tool(name)
        server = self._mcp.server(tool.server) if tool else None
        if tool is None or server is None or not allows(self._agent.mcp, tool.server, tool.tool):
            return _json({"ok": False, "error": f"agent {self._agent.name} may not call {name}"})
        try:
            result: McpCallResult = await workflow.execute_activity(
                CALL_ACTIVITY,
                McpCallInput(
                    server=server,
                    tool=tool.tool,
                    arguments=args,
                    input_schema=tool.input_schema,
                    agent=self._agent.name,
                    trace=self._trace,
                ),
                result_type=McpCallResult,
                # A stdio server runs jailed, on the sandbox worker.
                task_queue=SANDBOX_TASK_QUEUE if server.command is not None else None,
                start_to_close_timeout=timedelta(seconds=server.timeout_s) + MCP_CALL_MARGIN,
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=1),
                    maximum_interval=timedelta(seconds=10),
                    maximum_attempts=server.max_attempts,
                    non_retryable_error_types=list(McpErrorType.NON_RETRYABLE),
                ),
                summary=f"mcp {tool.server}/{tool.tool}",
            )
        except ActivityError as err:
            return _json({"ok": False, "error": f"{name} failed: {err.cause or err}"})
        answer: dict[str, Any] = {"ok": not result.is_error, "server": tool.server}
        answer |= {"tool": tool.tool, "error" if result.is_error else "content": result.text}
        if result.truncated:
            answer["truncated"] = f"{result.size_bytes} bytes in all"
        return _json(answer)

    async def _publish(self, args: dict[str, Any]) -> dict[str, Any]:
        topic = args.get("topic")
        if topic not in self._agent.publishes:
            allowed = ", ".join(self._agent.publishes) or "none"
            raise ToolCallError(
                f"agent {self._agent.name} may not publish to {topic!r} (only: {allowed})"
            )
        index = self._published_before + self.published
        record = Record.model_validate(
            {
                "id": derived_id(self._scope, self._record.id, "llm", index),
                "type": args.get("type", ""),
                "source": f"agent:{self._agent.name}",
                "timestamp": workflow.now(),
                "payload": args.get("payload") if isinstance(args.get("payload"), dict) else {},
                **caused_by(self._record),
            }
        )
        if workflow.patched(PUBLISH_APPROVALS_PATCH):
            held = await self._held(topic, record)
            if held is not None:
                self.published += 1  # the id is taken: the next record gets the next index
                return held
        try:
            await workflow.execute_activity_method(
                AgentStepActivities.publish_emissions,
                EmissionsInput(
                    org=self._org,
                    emissions=[Emission(topic=topic, record=record)],
                    marks=[self._mark],
                    kind=self._agent.kind,
                    traces=[self._trace],
                    refuse_invalid=True,
                ),
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=_RETRY,
            )
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type == SCHEMA_VIOLATION_ERROR:
                # The model sees why and may publish a corrected record (a new index).
                self.published += 1
                raise ToolCallError(f"record not published: {cause.message}") from None
            raise
        self.published += 1
        return {"record_id": record.id, "topic": topic}

    async def _held(self, topic: str, record: Record) -> dict[str, Any] | None:
        """The answer for a record the org's ``policy.approvals.publish`` holds for a
        person (published as it is if approved), or None to publish it now."""
        rule = await workflow.execute_local_activity_method(
            ApprovalActivities.publish_rule,
            PublishCheck(org=self._org, topic=topic),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=_RETRY,
        )
        if rule is None:
            return None
        outcome = await self._org_request(
            OrgRequestActivities.request_publish,
            PublishRequest(org=self._org, topic=topic, record=record, requested_by=self.requester),
            limit=timedelta(seconds=30),
        )
        if outcome.pending_approval is not None:
            return {
                "record_id": record.id,
                "topic": topic,
                "pending_approval": outcome.pending_approval,
                "summary": outcome.summary,
            }
        if not outcome.accepted and outcome.summary != [NOT_HELD]:
            raise ToolCallError(f"record not published: {'; '.join(outcome.summary)}")
        return None

    async def _sandbox(self, code: str, stdin: str) -> SandboxResult:
        return await workflow.execute_activity(
            "run_code",
            SandboxRequest(code=code, stdin=stdin, trace=self._trace),
            task_queue=SANDBOX_TASK_QUEUE,
            result_type=SandboxResult,
            start_to_close_timeout=run_code_timeout(SandboxPolicy()),
            heartbeat_timeout=RUN_CODE_HEARTBEAT_TIMEOUT,
            retry_policy=RUN_CODE_RETRY,
        )

    async def _run_code(self, args: dict[str, Any]) -> dict[str, Any]:
        code = args.get("code")
        if not isinstance(code, str) or not code.strip():
            raise ToolCallError("run_code needs `code`, a non-empty string")
        result = await self._sandbox(code, str(args.get("stdin") or ""))
        return {
            "exit_code": result.exit_code,
            "limit_hit": result.limit_hit.value if result.limit_hit else None,
            "stdout": result.stdout[-MAX_OUTPUT_CHARS:],
            "stderr": result.stderr[-MAX_OUTPUT_CHARS:],
            "duration_s": round(result.duration_s, 3),
        }

    async def _call_tool(self, args: dict[str, Any]) -> dict[str, Any]:
        name = str(args.get("name") or "")
        tool_args = args.get("args") if isinstance(args.get("args"), dict) else {}
        current = await workflow.execute_activity_method(
            ToolActivities.load_current,
            ToolRef(org=self._org, name=name),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=_RETRY,
        )
        if current.version is None:
            raise ToolCallError(f"tool {name!r}: {current.reason or 'no active version'}")
        result = await self._sandbox(call_program(current.code), json.dumps(tool_args))
        try:
            value = call_result(result)
        except ToolOutputError as exc:
            raise ToolCallError(f"tool {name} v{current.version}: {exc}") from None
        return {"tool": name, "version": current.version, "result": value}

    async def _find_tools(self, args: dict[str, Any]) -> dict[str, Any]:
        found = await workflow.execute_activity_method(
            DirectoryActivities.find_tools,
            DirectoryQuery(org=self._org, query=str(args.get("query") or "")),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=_RETRY,
        )
        return {"tools": [t.model_dump() for t in found]}

    async def _find_schemas(self, args: dict[str, Any]) -> dict[str, Any]:
        types = args.get("types")
        topic = args.get("topic")
        found = await workflow.execute_activity_method(
            DirectoryActivities.find_schemas,
            SchemaQuery(
                org=self._org,
                types=[str(t) for t in types] if isinstance(types, list) else [],
                topic=str(topic) if topic else None,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=_RETRY,
        )
        return {"schemas": [s.model_dump() for s in found]}

    async def _find_agents(self, args: dict[str, Any]) -> dict[str, Any]:
        found = await workflow.execute_activity_method(
            DirectoryActivities.find_agents,
            DirectoryQuery(org=self._org, query=str(args.get("query") or "")),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=_RETRY,
        )
        return {"agents": [a.model_dump() for a in found]}

    async def _recall_conversation(self, args: dict[str, Any]) -> dict[str, Any]:
        query = RecallQuery.model_validate(
            {k: v for k, v in args.items() if k in ("query", "turn", "limit")}
            | {
                "org": self._org,
                "agent": self._agent.name,
                "chain_id": workflow.info().first_execution_run_id,
            }
        )
        found = await workflow.execute_activity_method(
            ConversationActivities.recall_turns,
            query,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=_RETRY,
        )
        return {"turns": [t.model_dump() for t in found]}

    async def _create_tool(self, args: dict[str, Any]) -> dict[str, Any]:
        tool = ToolSpec.model_validate(
            {k: v for k, v in args.items() if k in ("name", "description", "code", "tests")}
            | {"args_schema": args.get("args_schema") or {}}
        )
        outcome = await self._org_request(
            OrgRequestActivities.request_create_tool,
            CreateToolRequest(org=self._org, tool=tool, requested_by=self.requester),
            limit=timedelta(minutes=2),
        )
        if outcome.pending_approval is not None:
            return {"pending_approval": outcome.pending_approval, "summary": outcome.summary}
        if not outcome.accepted:
            raise ToolCallError(f"tool {tool.name} not registered: {'; '.join(outcome.summary)}")
        return {"registered": outcome.summary}

    async def _create_agent(self, args: dict[str, Any]) -> dict[str, Any]:
        spec = AgentSpec.model_validate(args)
        outcome = await self._org_request(
            OrgRequestActivities.request_create_agent,
            CreateAgentRequest(org=self._org, agent=spec, requested_by=self.requester),
            limit=timedelta(minutes=1),
        )
        if outcome.pending_approval is not None:
            return {"pending_approval": outcome.pending_approval, "summary": outcome.summary}
        if not outcome.accepted:
            raise ToolCallError(f"agent {spec.name} not created: {'; '.join(outcome.summary)}")
        return {"created": outcome.summary}

    async def _start_flow(self, args: dict[str, Any]) -> dict[str, Any]:
        flow = str(args.get("flow") or "")
        given = args.get("input")
        request = StartFlowRequest(
            org=self._org,
            flow=flow,
            input=given if isinstance(given, dict) else {},
            # One run per (record answered, flow): a retried call, a replay, a redelivered
            # record all find the run the first call started.
            run=derived_id(self._scope, self._record.id, "start_flow", flow),
            requested_by=self.requester,
        )
        outcome: StartFlowOutcome = await workflow.execute_activity_method(
            OrgRequestActivities.request_start_flow,
            request,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=_RETRY,
        )
        if not outcome.started:
            raise ToolCallError(f"flow {flow!r} not started: {outcome.reason}")
        return {
            "flow": flow,
            "run": request.run,
            "workflow_id": outcome.workflow_id,
            "already_started": outcome.already,
        }

    async def _org_request(self, method: Any, request: Any, limit: timedelta) -> RequestOutcome:
        outcome: RequestOutcome = await workflow.execute_activity_method(
            method, request, start_to_close_timeout=limit, retry_policy=_RETRY
        )
        return outcome


def _arguments(call: dict[str, Any]) -> dict[str, Any] | str:
    """A tool call's arguments as a dict (OpenAI sends a JSON string), or what is wrong."""
    name = call.get("function", {}).get("name", "")
    raw = call.get("function", {}).get("arguments") or "{}"
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as exc:
        return f"arguments of {name} are not valid JSON ({exc}): {str(raw)[:200]}"
    if isinstance(value, dict):
        return value
    if workflow.patched(TOOL_ARGS_PATCH):
        return f"arguments of {name} must be a JSON object, got: {str(raw)[:200]}"
    return {}


async def run_tools(state: LlmGraphState) -> dict[str, Any]:
    """The ``tools`` node: answer every tool call of the last assistant turn, in order."""
    tools = BuiltinTools(state)
    last = state["messages"][-1]
    replies: list[dict[str, Any]] = []
    for call in last.get("tool_calls") or []:
        name = call.get("function", {}).get("name", "")
        args = _arguments(call)
        if isinstance(args, str):
            content = _json({"ok": False, "error": args})
        else:
            content = await tools.call(name, args)
        replies.append({"role": "tool", "tool_call_id": call.get("id", ""), "content": content})
    return {"messages": replies, "published": tools.published}


def unanswered_calls(state: LlmGraphState, why: str) -> list[dict[str, Any]]:
    """Tool messages for the last turn's calls that will not run, so the conversation
    the agent carries on stays well-formed (every call answered)."""
    last = state["messages"][-1]
    error = _json({"ok": False, "error": why})
    return [
        {"role": "tool", "tool_call_id": call.get("id", ""), "content": error}
        for call in last.get("tool_calls") or []
    ]
