"""The model call of an ``llm`` agent: a LangGraph node the plugin runs as a Temporal activity.

The only place an agent's reasoning touches the network. It checks the org's
token budget before calling, and records the call's token use in PostgreSQL
keyed by the activity (run id + activity id), so a retried call is not counted twice.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cache
from typing import Any

import openai
from langchain_core.messages import convert_to_messages, convert_to_openai_messages
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

from kafkaorg.config import get_settings
from kafkaorg.db import create_engine, create_sessionmaker
from kafkaorg.llm import LLMNotConfiguredError, create_chat_model
from kafkaorg.llm.prompts import system_prompt, tool_schemas
from kafkaorg.llm.state import LlmGraphState
from kafkaorg.llm.usage import BudgetExceededError, TokenUsage, check_budget, record_usage
from kafkaorg.spec import AgentSpec

MODEL_CALL_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(minutes=3),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(seconds=2),
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=5,
        non_retryable_error_types=["LLMNotConfigured", "BudgetExceeded", "LLMRequestRejected"],
    ),
    "summary": "model call",
}
"""Activity options of the ``model`` node (the endpoint's own retries come first)."""


@cache
def _sessions() -> sessionmaker[Session]:
    """One small pool per worker process; nodes are plain functions, not bound methods."""
    return create_sessionmaker(create_engine(get_settings().database_url, pool_size=2))


def _usage(reply: Any) -> TokenUsage:
    meta = getattr(reply, "usage_metadata", None) or {}
    return TokenUsage(
        prompt_tokens=int(meta.get("input_tokens", 0)),
        completion_tokens=int(meta.get("output_tokens", 0)),
        total_tokens=int(meta.get("total_tokens", 0)),
    )


def call_model(state: LlmGraphState) -> dict[str, Any]:
    """One chat completion over the agent's conversation; returns the assistant turn."""
    info = activity.info()
    settings = get_settings()
    org = state["org"]
    agent = AgentSpec.model_validate(state["agent"])
    try:
        with _sessions()() as session:
            check_budget(session, org)
        model = create_chat_model(settings).bind_tools(tool_schemas(agent))
    except LLMNotConfiguredError as exc:
        raise ApplicationError(str(exc), type="LLMNotConfigured", non_retryable=True) from None
    except BudgetExceededError as exc:
        raise ApplicationError(str(exc), type="BudgetExceeded", non_retryable=True) from None
    messages = convert_to_messages(
        [{"role": "system", "content": system_prompt(org, agent)}, *state["messages"]]
    )
    try:
        reply = model.invoke(messages)
    except openai.BadRequestError as exc:
        # The endpoint refused this conversation; asking again cannot help.
        raise ApplicationError(
            f"model endpoint rejected the request: {exc.message}",
            type="LLMRequestRejected",
            non_retryable=True,
        ) from None
    usage = _usage(reply)
    with _sessions().begin() as session:
        record_usage(
            session,
            org=org,
            agent=agent.name,
            workflow_id=info.workflow_id or "",
            call_id=f"{info.workflow_run_id}/{info.activity_id}",
            model=settings.llm_model,
            usage=usage,
        )
    turn = convert_to_openai_messages(reply)
    assert isinstance(turn, dict)
    return {"messages": [turn], "model_calls": 1, "tokens": usage.total_tokens}
