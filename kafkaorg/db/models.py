"""Current state of every org: what exists right now (Kafka tells how it got there)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kafkaorg.db.base import Base, TimestampMixin

ORG_STATUSES = ("starting", "running", "stopped")
AGENT_STATUSES = ("starting", "running", "paused", "retired", "failed")
AGENT_KINDS = ("echo", "rule", "llm", "tool")
TOPIC_CLASSES = ("work", "audit", "state", "dlq")
COMPATIBILITY_MODES = ("BACKWARD", "FORWARD", "FULL", "NONE")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Org(TimestampMixin, Base):
    __tablename__ = "orgs"
    __table_args__ = (CheckConstraint(_in("status", ORG_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="starting")
    spec: Mapped[dict[str, Any]] = mapped_column(JSONB)
    workflow_id: Mapped[str] = mapped_column(String(100))

    topics: Mapped[list[Topic]] = relationship(back_populates="org", cascade="all, delete-orphan")
    agents: Mapped[list[Agent]] = relationship(back_populates="org", cascade="all, delete-orphan")


class Topic(TimestampMixin, Base):
    __tablename__ = "topics"
    __table_args__ = (
        UniqueConstraint("org_id", "name"),
        CheckConstraint(_in("topic_class", TOPIC_CLASSES), name="topic_class"),
        CheckConstraint("partitions >= 1", name="partitions"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    kafka_topic: Mapped[str] = mapped_column(String(200), unique=True)
    topic_class: Mapped[str] = mapped_column(String(16))
    partitions: Mapped[int] = mapped_column(Integer)
    configs: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict)
    archive: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Archived to Parquet like audit-class topics (``archive: true`` in the spec)."""

    org: Mapped[Org] = relationship(back_populates="topics")


class Agent(TimestampMixin, Base):
    __tablename__ = "agents"
    __table_args__ = (
        UniqueConstraint("org_id", "name"),
        CheckConstraint(_in("status", AGENT_STATUSES), name="status"),
        CheckConstraint(_in("kind", AGENT_KINDS), name="kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="starting")
    version: Mapped[int] = mapped_column(Integer, default=1)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONB)
    workflow_id: Mapped[str] = mapped_column(String(200), unique=True)
    status_reason: Mapped[str | None] = mapped_column(Text, default=None)
    created_by: Mapped[str] = mapped_column(String(120), default="spec", server_default="spec")
    """``spec`` for agents a spec declares, else who asked (``user:<name>``, ``agent:<name>``)."""
    parent_agent: Mapped[str | None] = mapped_column(String(63), default=None)
    spawn_depth: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)

    org: Mapped[Org] = relationship(back_populates="agents")
    subscriptions: Mapped[list[Subscription]] = relationship(
        back_populates="agent", cascade="all, delete-orphan"
    )


TOOL_STATUSES = ("testing", "failed", "pending_approval", "active", "retired")


class Tool(TimestampMixin, Base):
    """A named capability of an org; its code lives in immutable versions."""

    __tablename__ = "tools"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    current_version: Mapped[int | None] = mapped_column(Integer, default=None)


class ToolVersion(TimestampMixin, Base):
    __tablename__ = "tool_versions"
    __table_args__ = (
        UniqueConstraint("tool_id", "version"),
        CheckConstraint(_in("status", TOOL_STATUSES), name="status"),
        CheckConstraint("version >= 1", name="version"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tool_id: Mapped[int] = mapped_column(ForeignKey("tools.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(Text, default="")
    args_schema: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    code: Mapped[str] = mapped_column(Text)
    tests: Mapped[str] = mapped_column(Text, default="")
    test_result: Mapped[dict[str, Any] | None] = mapped_column(JSONB, default=None)
    author: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(20), default="testing")


class ToolRun(Base):
    """One call of a tool in the sandbox by a tool agent: its run history.

    ``run_key`` (workflow id, record id, version) makes recording idempotent.
    """

    __tablename__ = "tool_runs"
    __table_args__ = (Index("ix_tool_runs_org_tool", "org_id", "tool", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    tool: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    agent: Mapped[str] = mapped_column(String(63))
    run_key: Mapped[str] = mapped_column(String(400), unique=True)
    record_id: Mapped[str] = mapped_column(String(100))
    input: Mapped[dict[str, Any]] = mapped_column(JSONB)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    ok: Mapped[bool] = mapped_column(Boolean)
    duration_s: Mapped[float | None] = mapped_column(Float, default=None)
    cpu_s: Mapped[float | None] = mapped_column(Float, default=None)
    limit_hit: Mapped[str | None] = mapped_column(String(40), default=None)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class RecordType(TimestampMixin, Base):
    """A record type with registered schemas: its compatibility mode, and the row a new
    version locks (``kafkaorg.schema_registry.store``), so two registrations never race."""

    __tablename__ = "record_types"
    __table_args__ = (
        UniqueConstraint("org_id", "record_type"),
        CheckConstraint(_in("compatibility", COMPATIBILITY_MODES), name="compatibility"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    record_type: Mapped[str] = mapped_column(String(100))
    compatibility: Mapped[str] = mapped_column(String(10), default="BACKWARD")


class PayloadBlob(Base):
    """A payload too large to travel in its record, stored once per org by its SHA-256;
    ``referenced_at`` is when a record last pointed at it (``kafkaorg.payloads``)."""

    __tablename__ = "payload_blobs"

    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    referenced_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False, index=True
    )


class ArchiveSegment(Base):
    """One Parquet file of the archive: a partition's ``[start_offset, end_offset)``,
    written once; a partition's segments follow each other with no gap and no overlap
    (kafkaorg/archive)."""

    __tablename__ = "archive_segments"
    __table_args__ = (
        UniqueConstraint("kafka_topic", "partition", "start_offset"),
        CheckConstraint("end_offset > start_offset", name="offsets"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    topic: Mapped[str] = mapped_column(String(100))
    """The org's topic name (``sys.audit`` for the audit topic)."""
    kafka_topic: Mapped[str] = mapped_column(String(200))
    partition: Mapped[int] = mapped_column(Integer)
    start_offset: Mapped[int] = mapped_column(BigInteger)
    end_offset: Mapped[int] = mapped_column(BigInteger)
    records: Mapped[int] = mapped_column(Integer)
    """Fewer than the offsets when the range holds transaction markers."""
    first_timestamp: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_timestamp: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    path: Mapped[str] = mapped_column(String(500))
    """Relative to the archive's root (``KAFKAORG_ARCHIVE_URL``)."""
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    announced: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Told on ``<org>.sys.audit`` (``archive.written``); a run announces every file not
    told yet, so a crash between writing and telling is made up by the next run."""
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class RecordSchema(TimestampMixin, Base):
    """A JSON schema for one record type and version inside an org; never changed once
    written (its ``id`` is the Confluent-style global schema id)."""

    __tablename__ = "record_schemas"
    __table_args__ = (UniqueConstraint("org_id", "record_type", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    record_type: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer, default=1)
    json_schema: Mapped[dict[str, Any]] = mapped_column(JSONB)


class Subscription(TimestampMixin, Base):
    """An agent receives every record of a topic (the bridge reads these)."""

    __tablename__ = "subscriptions"

    agent_id: Mapped[int] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    topic_id: Mapped[int] = mapped_column(
        ForeignKey("topics.id", ondelete="CASCADE"), primary_key=True, index=True
    )

    agent: Mapped[Agent] = relationship(back_populates="subscriptions")
    topic: Mapped[Topic] = relationship()


APPROVAL_ACTIONS = ("create_agent", "create_tool", "publish", "flow_step")
APPROVAL_STATUSES = ("pending", "approved", "denied")


class Approval(TimestampMixin, Base):
    """An action waiting for a person (``policy.approvals``, a flow's ``approval`` step),
    and once decided, who decided what: the org's pending and past approvals."""

    __tablename__ = "approvals"
    __table_args__ = (
        UniqueConstraint("org_id", "approval_id"),
        CheckConstraint(_in("action", APPROVAL_ACTIONS), name="action"),
        CheckConstraint(_in("status", APPROVAL_STATUSES), name="status"),
        Index("ix_approvals_org_status", "org_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    approval_id: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str] = mapped_column(String(300))
    """What the action is about: the agent or tool to create, the topic to publish on."""
    requested_by: Mapped[str] = mapped_column(String(120))
    request: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    deadline: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    timeout_default: Mapped[str] = mapped_column(String(16))
    """``approve`` or ``deny``: what the deadline decides if nobody does."""
    decided_by: Mapped[str | None] = mapped_column(String(120), default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    outcome: Mapped[str | None] = mapped_column(Text, default=None)
    """What carrying out the approved action said (or why it could not be)."""


class LlmUsage(Base):
    """Tokens of one model call; ``call_id`` (run id / activity id) makes recording idempotent."""

    __tablename__ = "llm_usage"

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    agent: Mapped[str] = mapped_column(String(63))
    workflow_id: Mapped[str] = mapped_column(String(200))
    call_id: Mapped[str] = mapped_column(String(300), unique=True)
    model: Mapped[str] = mapped_column(String(200))
    correlation_id: Mapped[str | None] = mapped_column(String(200), default=None, index=True)
    """The record's; a flow run's id when the call served one of its asks (its budget)."""
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    total_tokens: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class ConversationTurn(Base):
    """A turn an ``llm`` agent's conversation outgrew: kept here, recalled on request.

    ``chain_id`` is the workflow's first run id, constant across continue-as-new,
    so a restarted agent (a new conversation) never mixes with its old turns.
    """

    __tablename__ = "conversation_turns"
    __table_args__ = (UniqueConstraint("chain_id", "turn"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    agent: Mapped[str] = mapped_column(String(63))
    workflow_id: Mapped[str] = mapped_column(String(200))
    chain_id: Mapped[str] = mapped_column(String(64))
    turn: Mapped[int] = mapped_column(Integer)
    messages: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
