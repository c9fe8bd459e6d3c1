"""Current state of every org: what exists right now (Kafka tells how it got there)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kafkaorg.db.base import Base, TimestampMixin

ORG_STATUSES = ("starting", "running", "stopped")
AGENT_STATUSES = ("starting", "running", "paused", "retired", "failed")
AGENT_KINDS = ("echo", "rule", "llm", "tool")
TOPIC_CLASSES = ("work", "audit", "state", "dlq")


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

    org: Mapped[Org] = relationship(back_populates="agents")
    subscriptions: Mapped[list[Subscription]] = relationship(
        back_populates="agent", cascade="all, delete-orphan"
    )


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
