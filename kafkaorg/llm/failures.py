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
- a final answer in plain text for a record the agent published nothing for follows the
  agent's ``on_text_reply``: published as an ``llm.reply`` record (the default), dropped
  (counted), or dead-lettered (``llm-text-reply``);
- an MCP server of the agent's that cannot list its tools (after retries) dead-letters
  the record (``mcp-unavailable``); an MCP tool call that fails (the tool's error, bad
  arguments, the server unreachable after its retries) is answered to the model;
- a provider that keeps failing (429, 5xx, timeouts) after the client's retries and the
  activity's retry policy dead-letters the record (``llm-call-failed``) and the agent
  keeps working: a provider outage is not the agent's fault. Only what no retry can
  mend for any record (no endpoint configured, the org's or the agent's lineage's token
  budget spent) fails the agent;
- a record of a flow run that spent its ``token_budget`` is dead-lettered
  (``flow-budget-spent``) before its model call, and the agent keeps working.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Any, Final

from temporalio.common import RetryPolicy

MAX_MODEL_CALLS_PER_RECORD: Final = 12
EMPTY_REPLY_NUDGE: Final = "Your reply was empty; answer or call a tool."
LLM_REPLY_TYPE: Final = "llm.reply"
"""The type of a prose answer published for ``on_text_reply: publish`` (payload ``text``)."""


class LlmFailure(StrEnum):
    """``dlq.reason`` of a record an ``llm`` agent could not finish."""

    CALL_FAILED = "llm-call-failed"
    EMPTY_REPLY = "llm-empty-reply"
    CALL_CAP = "llm-call-cap"
    MCP_UNAVAILABLE = "mcp-unavailable"
    """The agent's MCP servers could not list their tools (after retries): the record
    waits in the DLQ (redrive it once the server is back); the agent goes on."""
    FLOW_BUDGET = "flow-budget-spent"
    """The flow run the record serves spent its ``token_budget``: its records are refused
    a model call (redrive one after raising the budget); the agent serves the rest."""
    TEXT_REPLY = "llm-text-reply"
    """Not a failure of the model: the agent's ``on_text_reply: dlq`` sends a record it
    answered in prose (publishing nothing) here, the text as the detail."""


class ModelErrorType(StrEnum):
    """``ApplicationError.type`` of the model activity's for-good failures."""

    NOT_CONFIGURED = "LLMNotConfigured"
    BUDGET_EXCEEDED = "BudgetExceeded"
    """The org's or a lineage's budget: the agent stops."""
    FLOW_BUDGET_EXCEEDED = "FlowBudgetExceeded"
    """A flow run's budget: the record is dead-lettered (``LlmFailure.FLOW_BUDGET``)."""
    REQUEST_REJECTED = "LLMRequestRejected"


class ModelRetryType(StrEnum):
    """``ApplicationError.type`` of the model activity's failures that are retried at a
    time the failure names (``next_retry_delay``), not the retry policy's."""

    PROVIDER_WAIT = "LLMProviderAskedToWait"
    """429/503 with ``Retry-After``: the next attempt comes when the provider asked."""
    ORG_AT_LIMIT = "LLMOrgAtCallLimit"
    """The org had ``KAFKAORG_LLM_ORG_CONCURRENCY`` calls in flight for the whole wait."""


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


def reply_text(message: dict[str, Any]) -> str:
    """The text of an assistant turn without tool calls ("" for one with tool calls), its
    parts joined (a provider may send content as a list of parts), stripped."""
    if message.get("tool_calls"):
        return ""
    content = message.get("content")
    if isinstance(content, list):
        parts = (
            str(part.get("text") or "") if isinstance(part, dict) else str(part) for part in content
        )
        return "\n".join(p.strip() for p in parts if p.strip())
    return str(content or "").strip()


def is_empty_reply(message: dict[str, Any]) -> bool:
    """An assistant turn with no tool calls and no text (whitespace is no text)."""
    return not message.get("tool_calls") and not reply_text(message)
