"""What becomes of a record when an ``llm`` agent's model misbehaves or is unreachable.

Every failure mode has one defined outcome, so no record is dropped silently and no
workflow waits for ever:

- a tool call the platform cannot do (arguments that are not JSON, a tool the agent
  does not have, arguments that do not fit the tool's schema) is answered with a tool
  message naming the problem, and the model is asked again;
- a reply with neither content nor tool calls is answered once with ``EMPTY_REPLY_NUDGE``;
  a second one dead-letters the record (``llm-empty-reply``);
- a record that spends ``MAX_MODEL_CALLS_PER_RECORD`` calls without a final answer is
  dead-lettered (``llm-call-cap``);
- a provider that keeps failing (429, 5xx, timeouts) after the client's retries and the
  activity's retry policy dead-letters the record (``llm-call-failed``) and the agent
  keeps working: a provider outage is not the agent's fault. Only what no retry can
  mend for any record (no endpoint configured, the org's token budget spent) fails the
  agent.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Any, Final

from temporalio.common import RetryPolicy

MAX_MODEL_CALLS_PER_RECORD: Final = 12
EMPTY_REPLY_NUDGE: Final = "Your reply was empty; answer or call a tool."


class LlmFailure(StrEnum):
    """``dlq.reason`` of a record an ``llm`` agent could not finish."""

    CALL_FAILED = "llm-call-failed"
    EMPTY_REPLY = "llm-empty-reply"
    CALL_CAP = "llm-call-cap"


class ModelErrorType(StrEnum):
    """``ApplicationError.type`` of the model activity's for-good failures."""

    NOT_CONFIGURED = "LLMNotConfigured"
    BUDGET_EXCEEDED = "BudgetExceeded"
    REQUEST_REJECTED = "LLMRequestRejected"


AGENT_FAILURES: Final = frozenset({ModelErrorType.NOT_CONFIGURED, ModelErrorType.BUDGET_EXCEEDED})
"""Failures of the model call that stop the agent (every later record would fail alike)."""

MODEL_CALL_RETRY: Final = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
    non_retryable_error_types=[str(t) for t in ModelErrorType],
)
"""The model activity's retries, on top of the endpoint client's own
(``KAFKAORG_LLM_MAX_RETRIES``); ``AgentWorkflow`` counts a record's attempts by it."""


def is_empty_reply(message: dict[str, Any]) -> bool:
    """An assistant turn with no tool calls and no text (whitespace is no text)."""
    if message.get("tool_calls"):
        return False
    content = message.get("content")
    if isinstance(content, list):
        return not any(
            str(part.get("text") or "").strip() if isinstance(part, dict) else str(part).strip()
            for part in content
        )
    return not str(content or "").strip()
