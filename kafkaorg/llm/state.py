"""The state an ``llm`` agent's graph passes between its nodes (one record's work)."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


class LlmGraphState(TypedDict, total=False):
    """Plain JSON all through: it crosses the activity boundary and Temporal's history."""

    org: str
    agent: dict[str, Any]
    record: dict[str, Any]
    scope: str
    """Output ids derive from it (the workflow id, plus the replay/redrive mark if any)."""
    mark: str | None
    trace: dict[str, str] | None
    """The record's trace carrier (kafkaorg/tracing.py): model calls and outputs join it."""
    messages: Annotated[list[dict[str, Any]], operator.add]
    """OpenAI chat messages (no system prompt: the model node adds it)."""
    model_calls: Annotated[int, operator.add]
    published: Annotated[int, operator.add]
    tokens: Annotated[int, operator.add]
    nudges: Annotated[int, operator.add]
    """How often the model was told its reply was empty (once per record at most)."""
    mcp: dict[str, Any]
    """The agent's MCP tools (a ``kafkaorg.mcp_tools.McpCatalog``), absent when it has none:
    the model is offered them, the ``tools`` node calls them."""
    failure: str | None
    """Why the record ends unfinished (an ``LlmFailure``); unset when the model answered."""
    failure_detail: str | None
