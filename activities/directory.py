"""What an agent can find out about its own org: agents, tools and record schemas, read
from PostgreSQL.

Always scoped to one org by name: an agent never reads another org's state.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.state import org_id_of
from kafkaorg.db.models import Agent, Org, Tool, ToolVersion
from kafkaorg.schema_registry.store import schemas_for_in


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


class SchemaQuery(BaseModel):
    org: str
    types: list[str] = []
    """Only these record types; empty: every type with a schema."""
    topic: str | None = None
    """Only the types this topic declares (``topics[].types`` of the org spec)."""


class SchemaEntry(BaseModel):
    record_type: str
    version: int
    compatibility: str
    json_schema: dict[str, Any]
    topics: list[str]
    """Topics that declare they carry this type."""


def topic_types(spec: dict[str, Any] | None) -> dict[str, list[str]]:
    """Topic → the record types the org spec says it carries."""
    return {
        t["name"]: list(t.get("types") or [])
        for t in (spec or {}).get("topics") or ()
        if isinstance(t, dict) and "name" in t
    }


def schema_entries(
    session: Session, org: str, types: list[str], topic: str | None = None
) -> list[SchemaEntry]:
    """The latest schema of each type asked for (by name, or as a topic's), with its topics."""
    declared = topic_types(session.scalar(select(Org.spec).where(Org.name == org)))
    wanted = list(types)
    if topic is not None:
        wanted += declared.get(topic, [])
        if not wanted:
            return []
    carried_by: dict[str, list[str]] = {}
    for name, carried in sorted(declared.items()):
        for record_type in carried:
            carried_by.setdefault(record_type, []).append(name)
    return [
        SchemaEntry(
            record_type=v.record_type,
            version=v.version,
            compatibility=v.compatibility.value,
            json_schema=v.json_schema,
            topics=carried_by.get(v.record_type, []),
        )
        for v in schemas_for_in(session, org, sorted(set(wanted)))
    ]


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
    def find_schemas(self, query: SchemaQuery) -> list[SchemaEntry]:
        """The JSON Schemas records of the org's types must follow (latest versions)."""
        with self._sessions() as session:
            org_id_of(session, query.org)
            return schema_entries(session, query.org, query.types, query.topic)

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
