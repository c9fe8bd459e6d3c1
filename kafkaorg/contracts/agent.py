"""What crosses the AgentWorkflow's boundary: its input and state, deliveries, commands."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from kafkaorg.envelope import Record
from kafkaorg.spec import AgentSpec


class Delivery(BaseModel):
    """A batch of records for this agent from one bridge poll."""

    records: list[Record]
    origins: dict[str, str] = Field(default_factory=dict)
    """Record id → ``topic:partition:offset`` the bridge read it at (for DLQ headers)."""
    marks: dict[str, str] = Field(default_factory=dict)
    """Record id → ``replay:<run>`` or ``redrive:<dlq id>``: a deliberate second delivery.

    A marked record is deduplicated on ``id#mark``, so it gets past the dedup window
    once per replay run or DLQ entry, and never twice for the same one.
    """
    traces: dict[str, dict[str, str]] = Field(default_factory=dict)
    """Record id → W3C trace carrier (``traceparent``/``tracestate``) of the bridge's span
    for that record; empty when tracing is off. Workflow code only passes it on to the
    activities that work on the record, which start their spans under it."""


class StopRequest(BaseModel):
    reason: str = "stopped"


class SpecUpdate(BaseModel):
    """A new version of this agent's spec; the inbox is kept and processed with it."""

    spec: AgentSpec
    version: int


class AgentState(BaseModel):
    """Everything that survives continue-as-new."""

    spec: AgentSpec | None = None
    version: int = 1
    paused: bool = False
    failed_reason: str | None = None
    inbox: list[Record] = Field(default_factory=list)
    inbox_marks: list[str | None] = Field(default_factory=list)
    """Parallel to ``inbox``: the replay/redrive mark of each record, if any."""
    origins: dict[str, str] = Field(default_factory=dict)
    """Inbox record id → where the bridge read it (``topic:partition:offset``)."""
    traces: dict[str, dict[str, str]] = Field(default_factory=dict)
    """Inbox record id → its trace carrier (``Delivery.traces``), until it is processed."""
    seen_ids: list[str] = Field(default_factory=list)
    received: int = 0
    duplicates: int = 0
    processed: int = 0
    published: int = 0
    dead_lettered: int = 0
    runs: int = 1
    conversation: list[dict[str, Any]] = Field(default_factory=list)
    """``llm`` agents: the recent chat (OpenAI message format); older turns are archived."""
    conversation_dropped: int = 0
    """Earlier turns moved out to PostgreSQL (the model is told how many, and can recall them)."""
    tokens: int = 0
    last_step_at: datetime | None = None
    """When the agent last finished a step (workflow time): the console's last activity."""
    text_replies_dropped: int = 0
    """``llm`` agents: plain-text answers not published (``on_text_reply: drop``, or no
    output topic to publish them on)."""


class AgentInput(BaseModel):
    org: str
    agent: str
    state: AgentState | None = None
    continue_as_new_after_steps: int | None = None
    """Test hook: continue-as-new after this many steps so the path is exercised."""
    conversation_max_chars: int | None = None
    """Test hook: archive conversation turns past this size (default ``MAX_CONVERSATION_CHARS``)."""
    step_max_attempts: int | None = None
    """Test hook: give up on a failing step after this many attempts (default 8)."""


class AgentReport(BaseModel):
    """The ``status`` query's answer (the bridge's backpressure reads ``inbox*``)."""

    org: str
    agent: str
    inbox: int
    received: int
    duplicates: int
    processed: int
    published: int
    dead_lettered: int
    runs: int
    stopping: bool
    paused: bool
    version: int
    failed_reason: str | None
    tokens: int = 0
    conversation_messages: int = 0
    inbox_bytes: int = 0
    """Serialized size of the inbox (the bridge's byte bound compares against it)."""
    last_step_at: datetime | None = None
    text_replies_dropped: int = 0


class AgentConversation(BaseModel):
    """The ``conversation`` query's answer: an llm agent's recent turns (OpenAI messages)
    and how many earlier turns were archived to PostgreSQL."""

    messages: list[dict[str, Any]]
    archived_turns: int


class AgentResult(BaseModel):
    processed: int
    published: int
