"""Which agents receive which topic, read from PostgreSQL and cached briefly."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from kafkaorg.db.models import Agent, Org, Subscription, Topic
from kafkaorg.spec import OrgLimits

RECEIVING_STATUSES = ("starting", "running", "paused")
DEFAULT_MAX_HOPS = OrgLimits().max_hops


class SubscriptionCache:
    """A snapshot of (org, topic) → agents, refreshed at most every ``ttl_s`` seconds.

    Also refreshed when a record is newer than the snapshot: an agent created just
    before a record was produced (an ``llm`` agent spawning a helper, then handing
    it work) must receive it, so a snapshot taken before the record existed is
    never trusted to route it.
    """

    def __init__(
        self, sessions: sessionmaker[Session], ttl_s: float = 1.0, clock_skew_s: float = 1.0
    ) -> None:
        self._sessions = sessions
        self._ttl_s = ttl_s
        self._clock_skew_s = clock_skew_s
        """How far a producer's clock may be ahead of ours (record timestamps are theirs)."""
        self._loaded_at = float("-inf")
        self._snapshot_wall = float("-inf")
        """Wall-clock time the snapshot's query began: it saw every commit before it."""
        self._subscribers: dict[tuple[str, str], list[str]] = {}
        self._max_hops: dict[str, int] = {}

    def hop_limit(self, org: str) -> int:
        """The org's ``limits.max_hops`` as of the last snapshot (the default if unknown)."""
        return self._max_hops.get(org, DEFAULT_MAX_HOPS)

    def _load_hop_limits(self) -> dict[str, int]:
        query = select(Org.name, Org.spec["limits"]["max_hops"].as_integer())
        with self._sessions() as session:
            return {org: limit for org, limit in session.execute(query) if limit is not None}

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

    def covers(self, produced_at: float | None) -> bool:
        """Whether the snapshot was taken after a record produced at ``produced_at`` (epoch s)."""
        return produced_at is not None and produced_at < self._snapshot_wall - self._clock_skew_s

    async def get(
        self, *, newest_record_at: float | None = None
    ) -> dict[tuple[str, str], list[str]]:
        """Subscribers; refreshed when stale or older than the newest record to route.

        ``newest_record_at`` is the newest record's timestamp (epoch seconds); ``None``
        (no records) only refreshes a stale snapshot.
        """
        age = time.monotonic() - self._loaded_at
        if age > self._ttl_s or (
            newest_record_at is not None and not self.covers(newest_record_at)
        ):
            started = time.time()
            self._subscribers = await asyncio.to_thread(self._load)
            self._max_hops = await asyncio.to_thread(self._load_hop_limits)
            self._snapshot_wall = started
            self._loaded_at = time.monotonic()
        return self._subscribers
