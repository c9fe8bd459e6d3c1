"""Org state in PostgreSQL: the only place workflows' decisions become rows."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from kafkaorg.db.models import Agent, Org, Subscription, Topic
from kafkaorg.names import agent_workflow_id, kafka_topic, org_workflow_id
from kafkaorg.spec import AgentSpec, OrgSpec


class SaveOrgResult(BaseModel):
    org_id: int
    topics: list[str]
    agents: list[str]


class AgentRef(BaseModel):
    org: str
    agent: str


class OrgStatusChange(BaseModel):
    org: str
    status: str


class StateActivities:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    @activity.defn
    def save_org(self, spec: OrgSpec) -> SaveOrgResult:
        """Upsert the org, its topics, agents and subscriptions in one transaction."""
        with self._sessions.begin() as session:
            org_id = session.execute(
                insert(Org)
                .values(
                    name=spec.org,
                    status="starting",
                    spec=spec.model_dump(mode="json", by_alias=True),
                    workflow_id=org_workflow_id(spec.org),
                )
                .on_conflict_do_update(
                    index_elements=[Org.name],
                    set_={"spec": spec.model_dump(mode="json", by_alias=True)},
                )
                .returning(Org.id)
            ).scalar_one()
            topic_ids: dict[str, int] = {}
            for topic in spec.topics:
                values = {
                    "topic_class": topic.topic_class.value,
                    "partitions": topic.partitions,
                    "configs": topic.kafka_configs(),
                }
                topic_ids[topic.name] = session.execute(
                    insert(Topic)
                    .values(
                        org_id=org_id,
                        name=topic.name,
                        kafka_topic=kafka_topic(spec.org, topic.name),
                        **values,
                    )
                    .on_conflict_do_update(constraint="uq_topics_org_id", set_=values)
                    .returning(Topic.id)
                ).scalar_one()
            for agent in spec.agents:
                values = {"kind": agent.kind, "spec": agent.model_dump(mode="json")}
                agent_id = session.execute(
                    insert(Agent)
                    .values(
                        org_id=org_id,
                        name=agent.name,
                        status="running",
                        workflow_id=agent_workflow_id(spec.org, agent.name),
                        **values,
                    )
                    .on_conflict_do_update(constraint="uq_agents_org_id", set_=values)
                    .returning(Agent.id)
                ).scalar_one()
                session.execute(delete(Subscription).where(Subscription.agent_id == agent_id))
                for name in agent.subscribes:
                    session.add(Subscription(agent_id=agent_id, topic_id=topic_ids[name]))
        return SaveOrgResult(
            org_id=org_id,
            topics=[t.name for t in spec.topics],
            agents=[a.name for a in spec.agents],
        )

    @activity.defn
    def set_org_status(self, change: OrgStatusChange) -> None:
        with self._sessions.begin() as session:
            org = session.scalars(select(Org).where(Org.name == change.org)).one_or_none()
            if org is not None:
                org.status = change.status

    @activity.defn
    def load_agent(self, ref: AgentRef) -> AgentSpec:
        with self._sessions() as session:
            row = session.execute(
                select(Agent.spec).join(Org).where(Org.name == ref.org, Agent.name == ref.agent)
            ).scalar_one_or_none()
        if row is None:
            raise ApplicationError(
                f"agent {ref.agent!r} is not registered in org {ref.org!r}",
                type="UnknownAgent",
                non_retryable=True,
            )
        return AgentSpec.model_validate(row)
