"""Backpressure decisions of the bridge: which partitions to pause, and why.

Two reasons pause a partition, and the bridge keeps them apart so that one ending
does not lift the other:

- ``temporal``: Temporal did not accept a batch's signals. Every assigned partition is
  paused while the bridge retries that one batch; records wait in Kafka, not in memory.
- ``inbox:<org>/<agent>``: an agent's inbox is over ``agent_inbox_limit`` records or
  ``agent_inbox_max_bytes``. The partitions of the topics it subscribes to are paused
  until a later check finds the inbox below half of both (hysteresis, so a partition
  does not flap at the bound).

The bridge cannot afford a query per agent per batch, so it queries an agent's
``AgentWorkflow.status`` at most every ``check_interval_s`` and only while the agent
received records recently (or is held); between queries it *estimates* the inbox as the
last answer plus what it has delivered since the query *that answer came from* was sent
(while the next query is in flight, the records signalled before it are still counted on
top of the old answer). The estimate only grows between answers (the agent's progress is
not seen), so it errs on pausing early, and it is checked before every batch: an inbox
never exceeds the limit by more than one batch.
An agent whose status could not be read (no worker, Temporal down) is *unknown*: that
alone never pauses anything.

Everything here is pure (time is passed in), so it is unit-tested without a broker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from kafkaorg.names import kafka_topic

TEMPORAL_REASON = "temporal"
RECENT_S = 30.0
"""An agent that received records within this many seconds keeps being checked."""

AgentKey = tuple[str, str]
"""(org, agent)."""
PartitionKey = tuple[str, int]
"""(Kafka topic, partition)."""


def inbox_reason(org: str, agent: str) -> str:
    return f"inbox:{org}/{agent}"


def hold_decision(held: bool, inbox: int | None, limit: int) -> bool:
    """Whether an agent's partitions should be paused, given what is known of its inbox.

    Args:
        held: whether they are paused for this agent now.
        inbox: its inbox size (answered or estimated); None when unknown.
        limit: ``agent_inbox_limit``.

    Returns:
        Pause above ``limit``; once paused, stay paused until below ``limit / 2``; unknown
        keeps the current state (an unreachable agent is not evidence of a full inbox).
    """
    if inbox is None:
        return held
    if held:
        return inbox >= limit / 2
    return inbox > limit


@dataclass
class AgentGauge:
    """What the bridge knows of one agent's inbox."""

    answered: int | None = None
    """Inbox size in the last status answer; None until one arrives (or after a failure)."""
    answered_bytes: int | None = None
    delivered_since_query: int = 0
    """Records signalled to it since the last query was *sent* (so the estimate never lags)."""
    delivered_bytes_since_query: int = 0
    awaiting_answer: int = 0
    """Records signalled before the query in flight was sent: its answer will count them,
    the previous answer did not, so until it arrives they are added on top."""
    awaiting_answer_bytes: int = 0
    last_query_at: float = float("-inf")
    last_delivery_at: float = float("-inf")
    held: bool = False

    @property
    def estimate(self) -> int | None:
        if self.answered is None:
            return None
        return self.answered + self.awaiting_answer + self.delivered_since_query

    @property
    def estimate_bytes(self) -> int | None:
        if self.answered_bytes is None:
            return None
        return self.answered_bytes + self.awaiting_answer_bytes + self.delivered_bytes_since_query


@dataclass
class InboxGate:
    """Per-agent inbox gauges and the hold (pause) decision for each agent."""

    limit: int
    check_interval_s: float = 2.0
    byte_limit: int | None = None
    """``agent_inbox_max_bytes``; None: records are only counted."""
    gauges: dict[AgentKey, AgentGauge] = field(default_factory=dict)

    def _gauge(self, key: AgentKey) -> AgentGauge:
        return self.gauges.setdefault(key, AgentGauge())

    def _decide(self, gauge: AgentGauge) -> None:
        """Held while either measure says so: over either bound, or not yet under half."""
        by_count = hold_decision(gauge.held, gauge.estimate, self.limit)
        by_bytes = self.byte_limit is not None and hold_decision(
            gauge.held, gauge.estimate_bytes, self.byte_limit
        )
        gauge.held = by_count or by_bytes

    def delivered(
        self,
        counts: Mapping[AgentKey, int],
        now: float,
        sizes: Mapping[AgentKey, int] | None = None,
    ) -> None:
        """Records (and their bytes) Temporal accepted for each agent; re-decides holds."""
        for key, n in counts.items():
            gauge = self._gauge(key)
            gauge.delivered_since_query += n
            gauge.delivered_bytes_since_query += (sizes or {}).get(key, 0)
            gauge.last_delivery_at = now
            self._decide(gauge)

    def due(self, now: float) -> list[AgentKey]:
        """Agents to query now: held, or fed recently, and not queried for a while.

        An agent held on the *estimate* (records delivered since its last answer) is
        checked four times as often: the estimate ignores what it processed meanwhile,
        and a hold that a fresh answer would lift must not throttle a fast agent.
        """
        out = []
        for key, gauge in self.gauges.items():
            active = gauge.held or now - gauge.last_delivery_at <= RECENT_S
            interval = self.check_interval_s
            if gauge.held and gauge.delivered_since_query:
                interval /= 4
            if active and now - gauge.last_query_at >= interval:
                out.append(key)
        return out

    def query_sent(self, key: AgentKey, now: float) -> None:
        gauge = self._gauge(key)
        gauge.last_query_at = now
        gauge.awaiting_answer += gauge.delivered_since_query
        gauge.awaiting_answer_bytes += gauge.delivered_bytes_since_query
        gauge.delivered_since_query = 0
        gauge.delivered_bytes_since_query = 0

    def answered(self, key: AgentKey, inbox: int | None, inbox_bytes: int | None = None) -> None:
        """A status answer (None: the query failed or timed out, so the size is unknown)."""
        gauge = self._gauge(key)
        gauge.answered = inbox
        gauge.answered_bytes = inbox_bytes if inbox is not None else None
        gauge.awaiting_answer = gauge.awaiting_answer_bytes = 0
        self._decide(gauge)

    def forget_idle(self, now: float) -> None:
        """Drop gauges of agents neither held nor fed recently (bounded memory)."""
        for key in [k for k, g in self.gauges.items() if not g.held]:
            if now - self.gauges[key].last_delivery_at > RECENT_S:
                del self.gauges[key]

    def held(self) -> list[AgentKey]:
        return sorted(k for k, g in self.gauges.items() if g.held)


def pause_plan(
    *,
    assignment: Iterable[PartitionKey],
    temporal_down: bool,
    held_agents: Iterable[AgentKey],
    subscribers: Mapping[tuple[str, str], list[str]],
) -> dict[PartitionKey, list[str]]:
    """The partitions that should be paused now, each with its reasons.

    Args:
        assignment: the partitions this bridge owns.
        temporal_down: a batch is waiting for Temporal to accept it.
        held_agents: agents whose inbox is over the bound.
        subscribers: (org, topic) → the agents that receive it.
    """
    assigned = sorted(set(assignment))
    plan: dict[PartitionKey, list[str]] = {}
    if temporal_down:
        for tp in assigned:
            plan.setdefault(tp, []).append(TEMPORAL_REASON)
    held = set(held_agents)
    feeding: dict[str, list[str]] = {}
    for (org, topic), agents in subscribers.items():
        for agent in agents:
            if (org, agent) in held:
                feeding.setdefault(kafka_topic(org, topic), []).append(inbox_reason(org, agent))
    for tp in assigned:
        for reason in feeding.get(tp[0], []):
            plan.setdefault(tp, []).append(reason)
    return plan
