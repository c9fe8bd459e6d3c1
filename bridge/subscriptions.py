"""Which agents receive which topic, read from PostgreSQL and cached briefly."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from kafkaorg.db.models import Agent, Org, Subscription, Topic

RECEIVING_STATUSES = ("starting", "running", "paused")


class SubscriptionCache:
    """A snapshot of (org, topic) → agents, refreshed at most every ``ttl_s`` seconds."""

    def __init__(self, sessions: sessionmaker[Session], ttl_s: float = 1.0) -> None:
        self._sessions = sessions
        self._ttl_s = ttl_s
        self._loaded_at = float("-inf")
        self._subscribers: dict[tuple[str, str], list[str]] = {}

    def _load(self) -> dict[tuple[str, str], list[str]]:
        query = (
            select(Org.name, Topic.name, Agent.name)
            .select_from(Subscription)
            .join(Agent, Subscription.agent_id == Agent.id)
            .join(Topic, Subscription.topic_id == Topic.id)
            .join(Org, Agent.org_id == Org.id)
            .where(Agent.status.in_(RECEIVING_STATUSES), Org.status != "stopped")
            .order_by(Org.name, Topic.name, Agent.name)
        )
        out: dict[tuple[str, str], list[str]] = defaultdict(list)
        with self._sessions() as session:
            for org, topic, agent in session.execute(query):
                out[(org, topic)].append(agent)
        return dict(out)

    async def get(
        self, *, must_know: set[tuple[str, str]] | None = None
    ) -> dict[tuple[str, str], list[str]]:
        """Subscribers; refreshed when stale, or early when a topic in ``must_know`` is missing."""
        age = time.monotonic() - self._loaded_at
        unknown = must_know and not must_know <= self._subscribers.keys()
        if age > self._ttl_s or (unknown and age > 0.2):
            self._subscribers = await asyncio.to_thread(self._load)
            self._loaded_at = time.monotonic()
        return self._subscribers
