"""Org state in PostgreSQL: the only place workflows' decisions become rows.

Every method is an idempotent upsert or status change, so a retried activity
(or a replayed OrgWorkflow) never leaves a second row behind.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy import case, delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.agent_feed import AgentStatusFeed
from kafkaorg.contracts import AgentRegistration
from kafkaorg.db.models import Agent, Org, Subscription, Topic
from kafkaorg.llm.usage import flow_run_tokens
from kafkaorg.names import agent_workflow_id, kafka_topic, org_workflow_id
from kafkaorg.spec import AgentSpec, OrgSpec, TopicSpec


class SaveOrgResult(BaseModel):
    org_id: int
    topics: list[str]
    agents: list[str]
    versions: dict[str, int] = {}
    retired: list[str] = []
    removed_topics: list[str] = []


class AgentRef(BaseModel):
    org: str
    agent: str


class LoadedAgent(BaseModel):
    spec: AgentSpec
    status: str
    version: int


class OrgStatusChange(BaseModel):
    org: str
    status: str


class AgentStatusChange(BaseModel):
    org: str
    agent: str
    status: str
    reason: str | None = None


class RegisterAgentInput(BaseModel):
    org: str
    agent: AgentRegistration


class RegisteredAgent(BaseModel):
    agent: str
    version: int
    workflow_id: str


class SaveTopicInput(BaseModel):
    org: str
    topic: TopicSpec


def org_id_of(session: Session, org: str) -> int:
    org_id = session.scalar(select(Org.id).where(Org.name == org))
    if org_id is None:
        raise ApplicationError(f"unknown org {org!r}", type="UnknownOrg", non_retryable=True)
    return org_id


def _upsert_topic(session: Session, org: str, org_id: int, topic: TopicSpec) -> int:
    values = {
        "topic_class": topic.topic_class.value,
        "partitions": topic.partitions,
        "configs": topic.kafka_configs(),
        "archive": topic.archive,
    }
    return session.execute(
        insert(Topic)
        .values(org_id=org_id, name=topic.name, kafka_topic=kafka_topic(org, topic.name), **values)
        .on_conflict_do_update(constraint="uq_topics_org_id", set_=values)
        .returning(Topic.id)
    ).scalar_one()


def _upsert_agent(
    session: Session,
    org: str,
    org_id: int,
    spec: AgentSpec,
    *,
    created_by: str = "spec",
    parent_agent: str | None = None,
    spawn_depth: int = 0,
) -> tuple[int, int]:
    """Insert or update an agent; a changed spec bumps its version. Returns (id, version)."""
    # Without the tool-only fields (None elsewhere), so specs stored before them compare equal.
    new_spec = spec.model_dump(mode="json", exclude_none=True)
    stmt = insert(Agent).values(
        org_id=org_id,
        name=spec.name,
        kind=spec.kind,
        spec=new_spec,
        status="running",
        version=1,
        workflow_id=agent_workflow_id(org, spec.name),
        created_by=created_by,
        parent_agent=parent_agent,
        spawn_depth=spawn_depth,
    )
    changed = Agent.spec != stmt.excluded.spec
    agent_id, version = session.execute(
        stmt.on_conflict_do_update(
            constraint="uq_agents_org_id",
            set_={
                "kind": stmt.excluded.kind,
                "spec": stmt.excluded.spec,
                "version": case((changed, Agent.version + 1), else_=Agent.version),
                "status": case((Agent.status == "retired", "running"), else_=Agent.status),
            },
        ).returning(Agent.id, Agent.version)
    ).one()
    topic_ids = dict(
        session.execute(select(Topic.name, Topic.id).where(Topic.org_id == org_id)).tuples().all()
    )
    session.execute(delete(Subscription).where(Subscription.agent_id == agent_id))
    for name in spec.subscribes:
        if name not in topic_ids:
            raise ApplicationError(
                f"agent {spec.name!r} subscribes to unknown topic {name!r}",
                type="UnknownTopic",
                non_retryable=True,
            )
        session.add(Subscription(agent_id=agent_id, topic_id=topic_ids[name]))
    return agent_id, version


class StateActivities:
    """``feed``: where agents' rows are published once committed (``sys.agents``);
    None in processes that keep no producer (tests of the rows alone)."""

    def __init__(
        self, sessions: sessionmaker[Session], feed: AgentStatusFeed | None = None
    ) -> None:
        self._sessions = sessions
        self._feed = feed

    def _announce(self, org: str, agents: list[str] | None) -> None:
        if self._feed is not None:
            with self._sessions() as session:
                self._feed.publish(session, org, agents)

    @activity.defn
    def save_org(self, spec: OrgSpec) -> SaveOrgResult:
        """Make PostgreSQL match a spec: upsert topics and agents, retire what it dropped.

        Agents created at run time (``created_by`` other than ``spec``) are left alone.
        """
        spec_json = spec.model_dump(mode="json", by_alias=True)
        with self._sessions.begin() as session:
            org_id = session.execute(
                insert(Org)
                .values(
                    name=spec.org,
                    status="starting",
                    spec=spec_json,
                    workflow_id=org_workflow_id(spec.org),
                )
                .on_conflict_do_update(index_elements=[Org.name], set_={"spec": spec_json})
                .returning(Org.id)
            ).scalar_one()
            for topic in spec.topics:
                _upsert_topic(session, spec.org, org_id, topic)
            versions: dict[str, int] = {}
            for done, agent in enumerate(spec.agents, 1):
                versions[agent.name] = _upsert_agent(session, spec.org, org_id, agent)[1]
                # An org of 1,000 agents takes longer than the heartbeat timeout to save:
                # without this, save_org timed out and was retried for ever.
                activity.heartbeat(f"{done}/{len(spec.agents)} agents")
            retired = list(
                session.scalars(
                    update(Agent)
                    .where(
                        Agent.org_id == org_id,
                        Agent.created_by == "spec",
                        Agent.name.not_in([a.name for a in spec.agents]),
                        Agent.status != "retired",
                    )
                    .values(status="retired", status_reason="removed from the org spec")
                    .returning(Agent.name)
                )
            )
            dropped = session.scalars(
                delete(Topic)
                .where(Topic.org_id == org_id, Topic.name.not_in([t.name for t in spec.topics]))
                .returning(Topic.name)
            ).all()
        self._announce(spec.org, [a.name for a in spec.agents] + list(retired))
        return SaveOrgResult(
            org_id=org_id,
            topics=[t.name for t in spec.topics],
            agents=[a.name for a in spec.agents],
            versions=versions,
            retired=sorted(retired),
            removed_topics=sorted(dropped),
        )

    @activity.defn
    def save_topic(self, input: SaveTopicInput) -> None:
        with self._sessions.begin() as session:
            _upsert_topic(session, input.org, org_id_of(session, input.org), input.topic)

    @activity.defn
    def register_agent(self, input: RegisterAgentInput) -> RegisteredAgent:
        with self._sessions.begin() as session:
            _, version = _upsert_agent(
                session,
                input.org,
                org_id_of(session, input.org),
                input.agent.spec,
                created_by=input.agent.created_by,
                parent_agent=input.agent.parent_agent,
                spawn_depth=input.agent.depth,
            )
        self._announce(input.org, [input.agent.spec.name])
        return RegisteredAgent(
            agent=input.agent.spec.name,
            version=version,
            workflow_id=agent_workflow_id(input.org, input.agent.spec.name),
        )

    @activity.defn
    def set_agent_status(self, change: AgentStatusChange) -> None:
        with self._sessions.begin() as session:
            org_id = org_id_of(session, change.org)
            session.execute(
                update(Agent)
                .where(Agent.org_id == org_id, Agent.name == change.agent)
                .values(
                    status=change.status, status_reason=change.reason, last_seen=datetime.now(UTC)
                )
            )
        self._announce(change.org, [change.agent])

    @activity.defn
    def set_org_status(self, change: OrgStatusChange) -> None:
        with self._sessions.begin() as session:
            org = session.scalars(select(Org).where(Org.name == change.org)).one_or_none()
            if org is not None:
                org.status = change.status

    @activity.defn
    def flow_run_tokens(self, run_id: str) -> int:
        """LLM tokens spent on a flow run's records, for its ``token_budget`` before each ask."""
        with self._sessions() as session:
            return flow_run_tokens(session, run_id)

    @activity.defn
    def load_agent(self, ref: AgentRef) -> LoadedAgent:
        with self._sessions() as session:
            row = session.execute(
                select(Agent.spec, Agent.status, Agent.version)
                .join(Org)
                .where(Org.name == ref.org, Agent.name == ref.agent)
            ).one_or_none()
        if row is None:
            raise ApplicationError(
                f"agent {ref.agent!r} is not registered in org {ref.org!r}",
                type="UnknownAgent",
                non_retryable=True,
            )
        return LoadedAgent(spec=AgentSpec.model_validate(row[0]), status=row[1], version=row[2])
