"""Statuses, kinds and actions as ``StrEnum``s: one spelling for every process.

They are ``str`` subclasses, so they compare equal to the strings already in
PostgreSQL rows and in running workflows' histories.
"""

from __future__ import annotations

from enum import StrEnum


class AgentKind(StrEnum):
    ECHO = "echo"
    RULE = "rule"
    LLM = "llm"
    TOOL = "tool"


class TextReply(StrEnum):
    """What an ``llm`` agent does with a plain-text answer to a record it published nothing
    for (``on_text_reply``): small models often answer in prose instead of calling
    ``publish``, and an answer must never vanish unseen."""

    PUBLISH = "publish"
    """The text goes to the agent's first output topic as an ``llm.reply`` record."""
    DROP = "drop"
    """Kept in the conversation only; counted in the agent's status."""
    DLQ = "dlq"
    """The record is dead-lettered (``llm-text-reply``) with the text as the detail."""


class AgentStatus(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    RETIRED = "retired"
    FAILED = "failed"


LIVE_AGENT_STATUSES = frozenset({AgentStatus.STARTING, AgentStatus.RUNNING, AgentStatus.PAUSED})
"""Statuses of agents whose workflow should be running."""


class AgentAction(StrEnum):
    """What an OrgWorkflow tells an AgentWorkflow (``update`` carries a new spec)."""

    PAUSE = "pause"
    RESUME = "resume"
    RETIRE = "retire"
    UPDATE = "update"


class ToolStatus(StrEnum):
    TESTING = "testing"
    FAILED = "failed"
    PENDING_APPROVAL = "pending_approval"
    ACTIVE = "active"


class OrgPhase(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    REFUSED = "refused"
    STOPPING = "stopping"
    STOPPED = "stopped"


class RefusalType(StrEnum):
    """``ApplicationError.type`` of a refused request: callers branch on it, people read
    the message."""

    INVALID_REQUEST = "InvalidRequest"
    INVALID_SPEC = "InvalidSpec"
    ALREADY_EXISTS = "AlreadyExists"
    NOT_FOUND = "NotFound"
    NOT_PERMITTED = "NotPermitted"
    QUOTA_EXCEEDED = "QuotaExceeded"
    CONFLICT = "Conflict"
    """The request no longer fits the org (it changed since the request was checked)."""
    INTERNAL = "InternalError"
    """A handler bug, reported to the caller instead of failing the workflow task."""
