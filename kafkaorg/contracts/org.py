"""What crosses the OrgWorkflow's boundary: its input and state, handler inputs and results."""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, Field

from kafkaorg.contracts.approvals import ApprovalKind
from kafkaorg.contracts.enums import AgentAction, AgentStatus, OrgPhase, ToolStatus
from kafkaorg.envelope import Record
from kafkaorg.spec import AgentSpec, OrgSpec, ToolSpec, TopicSpec


class AgentRegistration(BaseModel):
    """An agent created at run time (not declared in the spec): who asked, and how deep
    in a line of agents spawning agents it stands."""

    spec: AgentSpec
    created_by: str
    parent_agent: str | None = None
    depth: int = 0


class ToolVersionState(BaseModel):
    """What the org knows of one tool version (PostgreSQL has the code and test result)."""

    name: str
    version: int
    status: ToolStatus


class OrgState(BaseModel):
    """Everything that survives continue-as-new."""

    tools: list[ToolVersionState] = Field(default_factory=list)
    dynamic_agents: list[AgentRegistration] = Field(default_factory=list)
    statuses: dict[str, AgentStatus] = Field(default_factory=dict)
    versions: dict[str, int] = Field(default_factory=dict)
    spawn_times: list[float] = Field(default_factory=list)
    """Unix times of recent agent creations by agents (the spawn-rate quota)."""
    audit_records: int = 0
    applied: bool = False
    archive_scheduled: bool = False
    """The org's archive schedule exists (an org started before the archive: False)."""
    approvals: list[PendingApproval] = Field(default_factory=list)
    """Agents' requests waiting for a person (``policy.approvals``)."""


class OrgInput(OrgSpec):
    """The spec, exactly as users write it; ``state`` is only set by continue-as-new."""

    state: OrgState | None = None


class OrgStopRequest(BaseModel):
    reason: str = "stopped by user"
    delete_work_topics: bool = False
    """Work topics may go with the org; audit, state and DLQ topics are always kept."""


class OrgRequest(BaseModel):
    """What every request to an org carries: who asks, and (from activities) which org."""

    requested_by: str = "user:cli"
    """``user:<name>`` or ``agent:<org>:<name>``; agents are held to their own rights."""
    org: str | None = None
    """Set by callers that address the org by name (an agent's activity); checked, not used."""


class CreateAgentRequest(OrgRequest):
    agent: AgentSpec


class AgentCommand(OrgRequest):
    """Pause, resume or retire an agent (the ``change_agent`` update), or, from the
    OrgWorkflow to an AgentWorkflow, also ``update`` it to a new spec version."""

    agent: str
    action: AgentAction
    reason: str = ""
    spec: AgentSpec | None = None
    version: int | None = None


class CreateTopicRequest(OrgRequest):
    topic: TopicSpec


class CreateToolRequest(OrgRequest):
    """An agent (or person) registers a tool at run time; it must pass its tests first."""

    tool: ToolSpec
    based_on_version: int | None = None
    """The newest version the requester saw. Set, the request is refused if another
    version was registered since (two writers never silently overwrite each other)."""


class PublishRequest(OrgRequest):
    """An agent's record the policy may hold: published as it is (same id) if approved."""

    topic: str
    record: Record


NOT_HELD: Final = "not held"
"""``hold_publish``'s summary for a record the policy lets through: the agent publishes it."""


class PendingApproval(BaseModel):
    """An agent's request held for a person, and its deadline (Unix seconds, workflow time)."""

    id: str
    kind: ApprovalKind
    subject: str
    requested_by: str
    deadline: float
    default: Literal["approve", "deny"]
    create_agent: CreateAgentRequest | None = None
    create_tool: CreateToolRequest | None = None
    publish: PublishRequest | None = None


class RollbackToolRequest(OrgRequest):
    tool: str
    version: int


class ApproveToolRequest(BaseModel):
    tool: str
    version: int
    approved_by: str = "user:cli"


class ChangeResult(BaseModel):
    """What an update did, in words a caller can print."""

    changed: bool
    summary: list[str]
    pending_approval: str | None = None
    """Set when the request waits for a person: the approval's id."""


class AgentInfo(BaseModel):
    name: str
    kind: str
    status: AgentStatus
    version: int
    created_by: str
    subscribes: list[str]
    publishes: list[str]


class OrgStatus(BaseModel):
    org: str
    phase: OrgPhase
    topics: list[str]
    agents: list[str]
    audit_records: int = 0
    problems: list[str] = Field(default_factory=list)


OrgState.model_rebuild()
