"""What an agent can find out about its own org: agents and tools, read from PostgreSQL.

Always scoped to one org by name: an agent never reads another org's state.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.state import org_id_of
from kafkaorg.db.models import Agent, Tool, ToolVersion


class DirectoryQuery(BaseModel):
    org: str
    query: str = ""
    """Case-insensitive substring of name, description or instructions; empty: everything."""


class ToolEntry(BaseModel):
    name: str
    description: str
    current_version: int | None
    args_schema: dict[str, Any]
    author: str


class AgentEntry(BaseModel):
    name: str
    kind: str
    status: str
    subscribes: list[str]
    publishes: list[str]
    created_by: str
    instructions: str = ""


def _matches(query: str, *texts: str) -> bool:
    needle = query.strip().lower()
    return not needle or any(needle in t.lower() for t in texts)


class DirectoryActivities:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    @activity.defn
    def find_tools(self, query: DirectoryQuery) -> list[ToolEntry]:
        """Tools with a usable (current) version; described by that version."""
        with self._sessions() as session:
            org_id = org_id_of(session, query.org)
            rows = session.execute(
                select(Tool.name, ToolVersion)
                .join(ToolVersion, ToolVersion.tool_id == Tool.id)
                .where(Tool.org_id == org_id, ToolVersion.version == Tool.current_version)
                .order_by(Tool.name)
            ).all()
            return [
                ToolEntry(
                    name=name,
                    description=v.description,
                    current_version=v.version,
                    args_schema=v.args_schema or {},
                    author=v.author,
                )
                for name, v in rows
                if _matches(query.query, name, v.description)
            ]

    @activity.defn
    def find_agents(self, query: DirectoryQuery) -> list[AgentEntry]:
        with self._sessions() as session:
            org_id = org_id_of(session, query.org)
            agents = session.scalars(
                select(Agent).where(Agent.org_id == org_id).order_by(Agent.name)
            ).all()
            return [
                AgentEntry(
                    name=a.name,
                    kind=a.kind,
                    status=a.status,
                    subscribes=list(a.spec.get("subscribes") or []),
                    publishes=list(a.spec.get("publishes") or []),
                    created_by=a.created_by,
                    instructions=str(a.spec.get("instructions") or "")[:500],
                )
                for a in agents
                if _matches(query.query, a.name, str(a.spec.get("instructions") or ""))
            ]
