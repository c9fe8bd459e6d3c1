"""The model call of an ``llm`` agent: a LangGraph node the plugin runs as a Temporal activity.

The only place an agent's reasoning touches the network. It checks the org's
token budget before calling, and records the call's token use in PostgreSQL
keyed by the activity (run id + activity id), so a retried call is not counted twice.
A tool call whose arguments are not JSON stays in the turn (LangChain would set it
aside), so the workflow can tell the model what was wrong with it.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from functools import cache
from typing import Any

import openai
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    InvalidToolCall,
    convert_to_messages,
    convert_to_openai_messages,
)
from langchain_core.messages.tool import invalid_tool_call
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.directory import schema_entries, topic_types
from kafkaorg import tracing
from kafkaorg.config import get_settings
from kafkaorg.db import create_engine, create_sessionmaker
from kafkaorg.db.models import Org
from kafkaorg.llm import LLMNotConfiguredError, create_chat_model
from kafkaorg.llm.failures import MODEL_CALL_RETRY, ModelErrorType, ModelRetryType
from kafkaorg.llm.limits import OrgAtCallLimitError, org_call_slot, retry_after
from kafkaorg.llm.prompts import (
    PromptSchema,
    first_call_tool_choice,
    system_prompt,
    tool_schemas,
)
from kafkaorg.llm.state import LlmGraphState
from kafkaorg.llm.usage import (
    BudgetExceededError,
    FlowBudgetExceededError,
    TokenUsage,
    check_budget,
    record_usage,
)
from kafkaorg.mcp_tools import McpCatalog
from kafkaorg.metrics import LLM_CALL_SECONDS, LLM_CALLS, LLM_TOKENS
from kafkaorg.spec import AgentSpec

MODEL_CALL_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(minutes=3),
    "retry_policy": MODEL_CALL_RETRY,
    "summary": "model call",
}
"""Activity options of the ``model`` node (the endpoint's own retries come first)."""


@cache
def _sessions() -> sessionmaker[Session]:
    """One small pool per worker process; nodes are plain functions, not bound methods."""
    return create_sessionmaker(create_engine(get_settings().database_url, pool_size=2))


def _prompt_schemas(
    session: Session, org: str, agent: AgentSpec, record_type: str | None
) -> list[PromptSchema]:
    """The schemas of the types the agent reads and writes: its topics' declared types and
    the record's own."""
    declared = topic_types(session.scalar(select(Org.spec).where(Org.name == org)))
    types = {t for topic in (*agent.subscribes, *agent.publishes) for t in declared.get(topic, [])}
    if record_type:
        types.add(record_type)
    return [
        PromptSchema(record_type=e.record_type, version=e.version, json_schema=e.json_schema)
        for e in schema_entries(session, org, sorted(types))
    ]


def _count_call(org: str, agent: str, outcome: str, started: float) -> None:
    LLM_CALLS.labels(org, agent, outcome).inc()
    LLM_CALL_SECONDS.labels(org, agent).observe(time.perf_counter() - started)


def _usage(reply: Any) -> TokenUsage:
    meta = getattr(reply, "usage_metadata", None) or {}
    return TokenUsage(
        prompt_tokens=int(meta.get("input_tokens", 0)),
        completion_tokens=int(meta.get("output_tokens", 0)),
        total_tokens=int(meta.get("total_tokens", 0)),
    )


def keep_invalid_tool_calls(reply: Any, turn: dict[str, Any]) -> None:
    """Put the calls LangChain could not parse back into the turn, arguments verbatim.

    Dropped, a reply whose only call had bad JSON would look like a final answer and the
    record would end without a word to the model.
    """
    invalid = getattr(reply, "invalid_tool_calls", None) or []
    if not invalid:
        return
    calls = list(turn.get("tool_calls") or [])
    for n, call in enumerate(invalid):
        calls.append(
            {
                "type": "function",
                "id": call.get("id") or f"invalid_{n}",
                "function": {"name": call.get("name") or "", "arguments": call.get("args") or ""},
            }
        )
    turn["tool_calls"] = calls


def to_langchain(messages: list[dict[str, Any]]) -> list[BaseMessage]:
    """The conversation as LangChain messages; calls whose arguments are no JSON object
    go in as invalid tool calls (LangChain's own conversion would raise on them), and the
    client sends them back to the endpoint verbatim."""
    out: list[BaseMessage] = []
    for message in messages:
        invalid: list[InvalidToolCall] = []
        if message.get("role") == "assistant" and message.get("tool_calls"):
            good = []
            for call in message["tool_calls"]:
                function = call.get("function") or {}
                raw = function.get("arguments")
                if _is_json_object(raw):
                    good.append(call)
                else:
                    invalid.append(
                        invalid_tool_call(
                            name=function.get("name"),
                            args=raw if isinstance(raw, str) else str(raw),
                            id=call.get("id"),
                            error=None,
                        )
                    )
            message = {k: v for k, v in message.items() if k != "tool_calls"}
            if good:
                message["tool_calls"] = good
        (converted,) = convert_to_messages([message])
        if invalid and isinstance(converted, AIMessage):
            converted.invalid_tool_calls = [*converted.invalid_tool_calls, *invalid]
        out.append(converted)
    return out


def _is_json_object(raw: Any) -> bool:
    if isinstance(raw, dict) or raw is None or raw == "":
        return True
    try:
        return isinstance(json.loads(raw), dict)
    except (TypeError, json.JSONDecodeError):
        return False


def call_model(state: LlmGraphState) -> dict[str, Any]:
    """One chat completion over the agent's conversation; returns the assistant turn.

    Traced (when on) as an OpenInference ``LLM`` span under the record's trace: model,
    token counts, and prompt and reply only with ``KAFKAORG_TRACE_LLM_CONTENT``.
    """
    with tracing.span(
        "llm.call",
        parent=state.get("trace"),
        kind=tracing.SpanKind.CLIENT,
        attributes={
            "openinference.span.kind": "LLM",
            "llm.model_name": get_settings().llm_model,
            "kafkaorg.org": state["org"],
            "kafkaorg.agent": str(state["agent"].get("name", "")),
        },
        links=[tracing.current_span_for_link()],
        nest=True,
    ) as span:
        return _call_model(state, span)


def _trace_call(
    span: tracing.Span | None, messages: list[BaseMessage], usage: TokenUsage, turn: dict[str, Any]
) -> None:
    if span is None:
        return
    span.set_attributes(
        {
            "llm.token_count.prompt": usage.prompt_tokens,
            "llm.token_count.completion": usage.completion_tokens,
            "llm.token_count.total": usage.total_tokens,
        }
    )
    if tracing.llm_content():
        span.set_attributes(
            {
                "input.value": json.dumps(convert_to_openai_messages(messages), default=str),
                "input.mime_type": "application/json",
                "output.value": json.dumps(turn, default=str),
                "output.mime_type": "application/json",
            }
        )


def _call_model(state: LlmGraphState, span: tracing.Span | None) -> dict[str, Any]:
    settings = get_settings()
    org = state["org"]
    agent = AgentSpec.model_validate(state["agent"])
    mcp = McpCatalog.model_validate(state["mcp"]) if state.get("mcp") else None
    try:
        with _sessions()() as session:
            check_budget(session, org, agent.name, state["record"].get("correlation_id"))
            schemas = _prompt_schemas(session, org, agent, state["record"].get("type"))
        model = create_chat_model(settings).bind_tools(
            tool_schemas(agent, mcp),
            tool_choice=first_call_tool_choice(agent, state["messages"]),
        )
    except LLMNotConfiguredError as exc:
        raise ApplicationError(
            str(exc), type=ModelErrorType.NOT_CONFIGURED, non_retryable=True
        ) from None
    except BudgetExceededError as exc:
        raise ApplicationError(
            str(exc), type=ModelErrorType.BUDGET_EXCEEDED, non_retryable=True
        ) from None
    except FlowBudgetExceededError as exc:
        raise ApplicationError(
            str(exc), type=ModelErrorType.FLOW_BUDGET_EXCEEDED, non_retryable=True
        ) from None
    messages = to_langchain(
        [{"role": "system", "content": system_prompt(org, agent, mcp, schemas)}, *state["messages"]]
    )
    try:
        with org_call_slot(org, limit=settings.llm_org_concurrency, wait_s=settings.llm_org_wait_s):
            return _answer(state, span, model, messages, agent)
    except OrgAtCallLimitError as exc:
        raise ApplicationError(
            str(exc), type=ModelRetryType.ORG_AT_LIMIT, next_retry_delay=timedelta(seconds=1)
        ) from None


def _answer(
    state: LlmGraphState,
    span: tracing.Span | None,
    model: Any,
    messages: list[BaseMessage],
    agent: AgentSpec,
) -> dict[str, Any]:
    info = activity.info()
    settings = get_settings()
    org = state["org"]
    started = time.perf_counter()
    try:
        reply = model.invoke(messages)
    except openai.BadRequestError as exc:
        _count_call(org, agent.name, ModelErrorType.REQUEST_REJECTED, started)
        # The endpoint refused this conversation; asking again cannot help.
        raise ApplicationError(
            f"model endpoint rejected the request: {exc.message}",
            type=ModelErrorType.REQUEST_REJECTED,
            non_retryable=True,
        ) from None
    except openai.APIStatusError as exc:
        _count_call(org, agent.name, type(exc).__name__, started)
        delay = retry_after(exc.response.headers)
        if delay is None:
            raise  # the retry policy's backoff
        # The client already waited as asked between its own tries; the activity's next
        # attempt waits as asked too, instead of the policy's shorter interval.
        raise ApplicationError(
            f"model endpoint answered {exc.status_code} and asked to wait "
            f"{delay.total_seconds():g} s: {exc.message}",
            type=ModelRetryType.PROVIDER_WAIT,
            next_retry_delay=delay,
        ) from None
    except Exception as exc:  # retried by Temporal (timeouts, 429, 5xx after the client's own)
        _count_call(org, agent.name, type(exc).__name__, started)
        raise
    _count_call(org, agent.name, "ok", started)
    usage = _usage(reply)
    LLM_TOKENS.labels(org, agent.name, "prompt").inc(usage.prompt_tokens)
    LLM_TOKENS.labels(org, agent.name, "completion").inc(usage.completion_tokens)
    with _sessions().begin() as session:
        record_usage(
            session,
            org=org,
            agent=agent.name,
            workflow_id=info.workflow_id or "",
            call_id=f"{info.workflow_run_id}/{info.activity_id}",
            model=settings.llm_model,
            usage=usage,
            correlation_id=state["record"].get("correlation_id"),
        )
    turn = convert_to_openai_messages(reply)
    assert isinstance(turn, dict)
    keep_invalid_tool_calls(reply, turn)
    _trace_call(span, messages, usage, turn)
    return {"messages": [turn], "model_calls": 1, "tokens": usage.total_tokens}
