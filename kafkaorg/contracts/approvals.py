"""Approvals: an agent's action held for a person (``policy.approvals``), and the verdict.

The OrgWorkflow holds the request itself (``PendingApproval``, in its state, so it
survives continue-as-new) and PostgreSQL has a row per approval for listings; a
verdict names the approval by id, whichever way it arrives (CLI, console, a record
on ``<org>.sys.approvals``).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"


class ApprovalKind(StrEnum):
    """What waits: an agent's request to its org, or a flow run's ``approval`` step."""

    CREATE_AGENT = "create_agent"
    CREATE_TOOL = "create_tool"
    PUBLISH = "publish"
    """An agent's record to an audit-class topic (``policy.approvals.publish``)."""
    FLOW_STEP = "flow_step"


TIMEOUT_DECIDER = "system:timeout"
"""Who decided an approval nobody decided before its deadline."""

DECISION_RECORD_TYPE = "approval.decision"
"""A person's verdict sent as a record on ``<org>.sys.approvals`` (payload: ``ApprovalVerdict``
without ``by``; the record's ``source`` says who)."""


class ApprovalVerdict(BaseModel):
    """A person's decision (``kafkaorg approval approve|deny``)."""

    id: str = Field(min_length=1, max_length=200)
    approve: bool
    by: str = "user:cli"
    reason: str = Field(default="", max_length=2000)


class ApprovalDecided(BaseModel):
    """What a verdict did: the approval, and what carrying it out said."""

    id: str
    kind: ApprovalKind
    subject: str
    approved: bool
    by: str
    reason: str = ""
    outcome: str = ""


class ApprovalRow(BaseModel):
    """An approval as PostgreSQL has it (``kafkaorg approval list``, the console)."""

    id: str
    org: str
    kind: ApprovalKind
    subject: str
    requested_by: str
    status: ApprovalStatus
    requested_at: datetime
    deadline: datetime
    timeout_default: Literal["approve", "deny"]
    decided_by: str | None = None
    reason: str | None = None
    decided_at: datetime | None = None
    outcome: str | None = None
    request: dict[str, Any] = Field(default_factory=dict)
    """The held request; for a flow step ``{"workflow_id", "run", "flow", "step"}``."""
