"""Reads of an org's current state in PostgreSQL: its agents, topics, tools, usage, spec.

What exists right now lives in PostgreSQL (activities write it as the OrgWorkflow applies
changes); how it got there is in Kafka and the workflows' histories. The CLI, the demo
and the console read it through these functions, so a listing means the same wherever it
is shown and the callers only render. Each call opens one short-lived session
(``db_session``): no connection is held between calls, and an unreachable database is
one clear line.

An org PostgreSQL does not know is bad input (``unknown org 'x'``), not an empty list,
so a typo in an org name is not mistaken for an org with nothing in it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kafkaorg.config import Settings
from kafkaorg.contracts.approvals import ApprovalKind, ApprovalRow, ApprovalStatus
from kafkaorg.db.models import (
    Agent,
    Approval,
    ConversationTurn,
    Org,
    Tool,
    ToolRun,
    ToolVersion,
    Topic,
)
from kafkaorg.db.session import db_session
from kafkaorg.errors import BadInputError
from kafkaorg.llm.conversation import turn_text
from kafkaorg.llm.usage import TokenUsage, org_token_budget, tokens_by_agent
from kafkaorg.spec import AgentSpec, OrgSpec


class AgentRow(BaseModel):
    """One agent as ``agent list`` shows it: its row and what its spec reads and writes."""

    name: str
    kind: str
    status: str
    version: int
    created_by: str
    parent_agent: str | None = None
    subscribes: list[str] = []
    publishes: list[str] = []
    can_create_agents: bool = False
    status_reason: str | None = None

    def matches(
        self, *, kind: str | None = None, topic: str | None = None, name: str | None = None
    ) -> bool:
        """Whether the agent passes ``agent list``'s filters (None: no filter)."""
        if kind and self.kind != kind:
            return False
        if topic and topic not in self.subscribes + self.publishes:
            return False
        return not (name and name not in self.name)


class TopicRow(BaseModel):
    """One topic of an org; serialized with ``by_alias`` its class is the key ``class``."""

    name: str
    kafka_topic: str
    topic_class: str = Field(serialization_alias="class")
    partitions: int
    configs: dict[str, str] = {}


class OrgRow(BaseModel):
    """One org PostgreSQL knows, with how many agents and topics it has."""

    org: str
    status: str
    agents: int
    topics: int
    created_at: datetime


class ConversationTurnRow(BaseModel):
    """One archived turn of an llm agent's conversation, as text."""

    turn: int
    archived_at: datetime
    text: str
    messages: list[dict[str, Any]] = Field(default_factory=list, exclude=True)
    """The turn as it was (OpenAI messages), for the console's decisions view."""


class OrgUsage(BaseModel):
    """LLM tokens an org's agents used (by agent name, sorted) and the org's budget."""

    org: str
    agents: dict[str, TokenUsage]
    total_tokens: int
    budget: int | None = None
    """``limits.llm_token_budget`` of the org's spec; None: no limit."""


class ToolVersionRow(BaseModel):
    """One immutable version of a tool, with whether it is the tool's current one."""

    tool: str
    version: int
    status: str
    current: bool
    description: str
    author: str
    created_at: datetime | None = None
    args_schema: dict[str, Any] = {}
    test_result: dict[str, Any] | None = None
    code: str
    tests: str

    @property
    def reason(self) -> str:
        """Why its tests failed ("" when they passed or have not run)."""
        return str((self.test_result or {}).get("reason") or "")

    @property
    def tests_run(self) -> int:
        return int((self.test_result or {}).get("tests", 0))


class ToolSummaryRow(BaseModel):
    """One tool as ``tool list`` shows it: its current version and its latest one."""

    tool: str
    current_version: int | None = None
    latest_version: int
    latest_status: str
    description: str
    reason: str | None = None
    """Why the latest version's tests failed."""


class ToolDetail(BaseModel):
    """A tool and every version of it, newest first."""

    tool: str
    current_version: int | None = None
    versions: list[ToolVersionRow]


class ToolRunRow(BaseModel):
    """One call of a tool in the sandbox by a tool agent."""

    tool: str
    version: int
    agent: str
    record_id: str
    input: dict[str, Any]
    result: dict[str, Any] | None = None
    error: str | None = None
    ok: bool
    duration_s: float | None = None
    cpu_s: float | None = None
    limit_hit: str | None = None
    at: datetime


class ToolStatusRow(BaseModel):
    """The registry's word on a tool's latest version: status and tests run."""

    tool: str
    current_version: int | None = None
    latest_version: int
    latest_status: str
    tests: int


def _require_org(session: Session, org: str) -> int:
    org_id = session.scalar(select(Org.id).where(Org.name == org))
    if org_id is None:
        raise BadInputError(f"unknown org {org!r}")
    return org_id


# ---- orgs -------------------------------------------------------------------------------


def list_orgs(cfg: Settings) -> list[OrgRow]:
    """Every org PostgreSQL knows, by name, with its agent and topic counts."""
    agents = select(func.count()).where(Agent.org_id == Org.id).scalar_subquery()
    topics = select(func.count()).where(Topic.org_id == Org.id).scalar_subquery()
    with db_session(cfg) as session:
        rows = session.execute(
            select(Org.name, Org.status, agents, topics, Org.created_at).order_by(Org.name)
        ).all()
    return [
        OrgRow(org=name, status=status, agents=n_agents, topics=n_topics, created_at=created)
        for name, status, n_agents, n_topics, created in rows
    ]


def current_spec(cfg: Settings, org: str) -> OrgSpec | None:
    """The spec PostgreSQL holds for ``org`` (None: the org was never started)."""
    with db_session(cfg) as session:
        data = session.scalar(select(Org.spec).where(Org.name == org))
    return OrgSpec.model_validate(data) if data is not None else None


def org_usage(cfg: Settings, org: str) -> OrgUsage:
    """Tokens per agent, their total and the budget (recorded by the model-call activity)."""
    with db_session(cfg) as session:
        _require_org(session, org)
        by_agent = tokens_by_agent(session, org)
        budget = org_token_budget(session, org)
    total = sum(u.total_tokens for u in by_agent.values())
    return OrgUsage(org=org, agents=by_agent, total_tokens=total, budget=budget)


# ---- agents and topics ------------------------------------------------------------------


def list_agents(
    cfg: Settings,
    org: str,
    *,
    kind: str | None = None,
    topic: str | None = None,
    name: str | None = None,
) -> list[AgentRow]:
    """The org's agents by name; ``kind``, ``topic`` (read or written) and ``name``
    (a substring) narrow them down."""
    query = (
        select(
            Agent.name,
            Agent.kind,
            Agent.status,
            Agent.version,
            Agent.created_by,
            Agent.parent_agent,
            Agent.spec,
            Agent.status_reason,
        )
        .join(Org)
        .where(Org.name == org)
        .order_by(Agent.name)
    )
    with db_session(cfg) as session:
        _require_org(session, org)
        rows = session.execute(query).all()
    items = []
    for r in rows:
        spec = AgentSpec.model_validate(r.spec)
        items.append(
            AgentRow(
                name=r.name,
                kind=r.kind,
                status=r.status,
                version=r.version,
                created_by=r.created_by,
                parent_agent=r.parent_agent,
                subscribes=spec.subscribes,
                publishes=spec.publishes,
                can_create_agents=spec.can_create_agents,
                status_reason=r.status_reason,
            )
        )
    return [a for a in items if a.matches(kind=kind, topic=topic, name=name)]


def list_topics(cfg: Settings, org: str) -> list[TopicRow]:
    """The org's topics by name, with their class, partitions and Kafka configs."""
    query = (
        select(Topic.name, Topic.kafka_topic, Topic.topic_class, Topic.partitions, Topic.configs)
        .join(Org)
        .where(Org.name == org)
        .order_by(Topic.name)
    )
    with db_session(cfg) as session:
        _require_org(session, org)
        rows = session.execute(query).all()
    return [
        TopicRow(
            name=r.name,
            kafka_topic=r.kafka_topic,
            topic_class=r.topic_class,
            partitions=r.partitions,
            configs=r.configs,
        )
        for r in rows
    ]


def matching_turns(turns: list[ConversationTurnRow], query: str) -> list[ConversationTurnRow]:
    """The turns whose text contains ``query``, ignoring case ("" keeps them all)."""
    needle = query.lower()
    return [t for t in turns if needle in t.text.lower()]


def conversation_turns(
    cfg: Settings, org: str, agent: str, query: str = ""
) -> list[ConversationTurnRow]:
    """The turns an llm agent's current conversation outgrew, oldest first.

    Only the chain it archived into last: a restarted agent has a new conversation, and
    its old turns are not part of it. The recent turns are in the workflow's state.
    """
    of_agent = (
        select(ConversationTurn).join(Org).where(Org.name == org, ConversationTurn.agent == agent)
    )
    latest_chain = (
        of_agent.with_only_columns(ConversationTurn.chain_id)
        .order_by(ConversationTurn.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    turns = (
        of_agent.with_only_columns(
            ConversationTurn.turn, ConversationTurn.created_at, ConversationTurn.messages
        )
        .where(ConversationTurn.chain_id == latest_chain)
        .order_by(ConversationTurn.turn)
    )
    with db_session(cfg) as session:
        _require_org(session, org)
        rows = session.execute(turns).all()
    return matching_turns(
        [
            ConversationTurnRow(
                turn=r.turn,
                archived_at=r.created_at,
                text=turn_text(r.messages),
                messages=r.messages,
            )
            for r in rows
        ],
        query,
    )


# ---- tools ------------------------------------------------------------------------------


def tool_versions(cfg: Settings, org: str, tool: str | None = None) -> list[ToolVersionRow]:
    """Every version of the org's tools (or of ``tool``), by tool, newest first within one."""
    query = (
        select(Tool.name, Tool.current_version, ToolVersion)
        .join(Org, Org.id == Tool.org_id)
        .join(ToolVersion, ToolVersion.tool_id == Tool.id)
        .where(Org.name == org)
        .order_by(Tool.name, ToolVersion.version.desc())
    )
    if tool is not None:
        query = query.where(Tool.name == tool)
    with db_session(cfg) as session:
        _require_org(session, org)
        return [
            ToolVersionRow(
                tool=name,
                version=v.version,
                status=v.status,
                current=current == v.version,
                description=v.description,
                author=v.author,
                created_at=v.created_at,
                args_schema=v.args_schema,
                test_result=v.test_result,
                code=v.code,
                tests=v.tests,
            )
            for name, current, v in session.execute(query).tuples().all()
        ]


def summarize_tools(versions: list[ToolVersionRow]) -> list[ToolSummaryRow]:
    """One row per tool from its versions (newest first within a tool, as
    ``tool_versions`` returns them): the current version and the latest's status."""
    latest: dict[str, ToolVersionRow] = {}
    currents: dict[str, int | None] = {}
    for v in versions:
        latest.setdefault(v.tool, v)
        currents.setdefault(v.tool, None)
        if v.current:
            currents[v.tool] = v.version
    return [
        ToolSummaryRow(
            tool=name,
            current_version=currents[name],
            latest_version=v.version,
            latest_status=v.status,
            description=v.description,
            reason=v.reason or None,
        )
        for name, v in latest.items()
    ]


def list_tools(cfg: Settings, org: str) -> list[ToolSummaryRow]:
    """Every tool of the org with its current version and its latest version's status."""
    return summarize_tools(tool_versions(cfg, org))


def tool_detail(cfg: Settings, org: str, tool: str) -> ToolDetail:
    """A tool's versions, newest first; a tool the org does not have is bad input."""
    versions = tool_versions(cfg, org, tool)
    if not versions:
        raise BadInputError(f"unknown tool {tool!r} in org {org!r}")
    current = next((v.version for v in versions if v.current), None)
    return ToolDetail(tool=tool, current_version=current, versions=versions)


def tool_statuses(cfg: Settings, org: str, tools: list[str]) -> list[ToolStatusRow]:
    """The latest version of each of ``tools`` the org has registered, by tool name.

    Reads only status columns (no code), and an org or tool not registered yet is simply
    absent: the demo shows this right after starting an org, before every tool is in.
    """
    query = (
        select(Tool.name, Tool.current_version, ToolVersion.version, ToolVersion.status)
        .add_columns(ToolVersion.test_result)
        .join(Org, Org.id == Tool.org_id)
        .join(ToolVersion, ToolVersion.tool_id == Tool.id)
        .where(Org.name == org, Tool.name.in_(tools))
        .order_by(Tool.name, ToolVersion.version.desc())
    )
    with db_session(cfg) as session:
        rows = session.execute(query).all()
    out: dict[str, ToolStatusRow] = {}
    for name, current, version, status, result in rows:
        out.setdefault(
            name,
            ToolStatusRow(
                tool=name,
                current_version=current,
                latest_version=version,
                latest_status=status,
                tests=(result or {}).get("tests", 0),
            ),
        )
    return list(out.values())


__all__ = [
    "AgentRow",
    "ConversationTurnRow",
    "OrgRow",
    "OrgUsage",
    "ToolDetail",
    "ToolStatusRow",
    "ToolSummaryRow",
    "ToolVersionRow",
    "TopicRow",
    "conversation_turns",
    "current_spec",
    "list_agents",
    "list_orgs",
    "list_tools",
    "list_topics",
    "matching_turns",
    "org_usage",
    "summarize_tools",
    "tool_detail",
    "tool_statuses",
    "tool_versions",
]


def tool_runs(cfg: Settings, org: str, tool: str, limit: int = 50) -> list[ToolRunRow]:
    """The tool's newest runs first (every version, every agent that calls it)."""
    query = (
        select(ToolRun)
        .join(Org)
        .where(Org.name == org, ToolRun.tool == tool)
        .order_by(ToolRun.id.desc())
        .limit(limit)
    )
    with db_session(cfg) as session:
        _require_org(session, org)
        rows = session.scalars(query).all()
        return [
            ToolRunRow(
                tool=r.tool,
                version=r.version,
                agent=r.agent,
                record_id=r.record_id,
                input=r.input,
                result=r.result,
                error=r.error,
                ok=r.ok,
                duration_s=r.duration_s,
                cpu_s=r.cpu_s,
                limit_hit=r.limit_hit,
                at=r.created_at,
            )
            for r in rows
        ]


# ---- approvals ----------------------------------------------------------------------------


def _approval_row(org: str, row: Approval) -> ApprovalRow:
    return ApprovalRow(
        id=row.approval_id,
        org=org,
        kind=ApprovalKind(row.action),
        subject=row.subject,
        requested_by=row.requested_by,
        status=ApprovalStatus(row.status),
        requested_at=row.created_at,
        deadline=row.deadline,
        timeout_default="approve" if row.timeout_default == "approve" else "deny",
        decided_by=row.decided_by,
        reason=row.reason,
        decided_at=row.decided_at,
        outcome=row.outcome,
        request=row.request,
    )


def list_approvals(
    cfg: Settings, org: str, *, include_decided: bool = False, limit: int = 200
) -> list[ApprovalRow]:
    """The org's approvals waiting for a person, oldest first; with ``include_decided``
    the decided ones too (newest decisions last)."""
    with db_session(cfg) as session:
        org_id = _require_org(session, org)
        query = select(Approval).where(Approval.org_id == org_id)
        if not include_decided:
            query = query.where(Approval.status == ApprovalStatus.PENDING.value)
        rows = session.scalars(query.order_by(Approval.id).limit(limit)).all()
        return [_approval_row(org, row) for row in rows]


def find_approval(cfg: Settings, org: str, approval_id: str) -> ApprovalRow:
    """One approval by id; an id the org never had is bad input naming the waiting ones."""
    with db_session(cfg) as session:
        org_id = _require_org(session, org)
        row = session.scalar(
            select(Approval).where(Approval.org_id == org_id, Approval.approval_id == approval_id)
        )
        if row is None:
            waiting = session.scalars(
                select(Approval.approval_id).where(
                    Approval.org_id == org_id, Approval.status == ApprovalStatus.PENDING.value
                )
            ).all()
            raise BadInputError(
                f"org {org!r} has no approval {approval_id!r} "
                f"(waiting: {', '.join(waiting) or 'none'})"
            )
        return _approval_row(org, row)
