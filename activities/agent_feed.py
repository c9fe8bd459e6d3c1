"""Agents' current status on the compacted ``<org>.sys.agents`` topic, key = agent name.

For consumers outside the platform that keep their own view of an org's agents: read
the topic from the beginning and keep the last record per key (Kafka's compaction keeps
only that one, in time). Written by the state activities after PostgreSQL committed,
from the rows as committed, so a retried activity publishes the same record (its id is
derived from the row's version and update time) and the newest always wins.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from kafkaorg.config import Settings
from kafkaorg.db.models import Agent, Org
from kafkaorg.envelope import Record, derived_id, utcnow
from kafkaorg.kafka import Outgoing, create_missing_topics, new_topic, produce_and_wait
from kafkaorg.names import agents_topic
from kafkaorg.spec import TOPIC_CLASS_CONFIGS, TopicClass

AGENT_STATUS_RECORD_TYPE = "agent.status"


class AgentStatusFeed:
    """Publishes agents' rows to their org's ``sys.agents``, creating it if it is missing
    (an org started before the topic existed)."""

    def __init__(self, producer: Producer, admin: AdminClient, settings: Settings) -> None:
        self._producer = producer
        self._admin = admin
        self._settings = settings
        self._ensured: set[str] = set()
        self._lock = threading.Lock()

    def _ensure(self, topic: str) -> None:
        with self._lock:
            if topic in self._ensured:
                return
            state = TopicClass.STATE
            feed = new_topic(self._settings, topic, 1, TOPIC_CLASS_CONFIGS[state], state)
            create_missing_topics(self._admin, [feed])
            self._ensured.add(topic)

    def publish(self, session: Session, org: str, agents: Iterable[str] | None = None) -> int:
        """The current rows of these agents (None: all of the org's), as committed."""
        query = select(Agent).join(Org, Agent.org_id == Org.id).where(Org.name == org)
        if agents is not None:
            names = list(agents)
            if not names:
                return 0
            query = query.where(Agent.name.in_(names))
        rows = session.scalars(query.order_by(Agent.name)).all()
        if not rows:
            return 0
        topic = agents_topic(org)
        self._ensure(topic)
        now = utcnow()
        records = [
            Record(
                id=derived_id("agent-status", org, a.name, a.version, a.updated_at.isoformat()),
                type=AGENT_STATUS_RECORD_TYPE,
                org=org,
                source="system:state",
                correlation_id=a.name,  # the Kafka key: compaction keeps one per agent
                timestamp=now,
                payload={
                    "agent": a.name,
                    "kind": a.kind,
                    "status": a.status,
                    "reason": a.status_reason,
                    "version": a.version,
                    "updated_at": a.updated_at.isoformat(),
                },
            )
            for a in rows
        ]
        return produce_and_wait(self._producer, (Outgoing(topic, r) for r in records))
