"""One view of an org's agents for people: what PostgreSQL says each agent is, what its
workflow says it is doing, how far the bridge is behind on what it reads, and the tokens
it spent; with the problems that need a person named outright.

Also the org's graph (agents, topics and who reads, writes and spawned whom), which the
console draws. Both only read: changes go through ``kafkaorg.client``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from pydantic import BaseModel
from temporalio.client import Client

from kafkaorg import client as service
from kafkaorg import org_queries as queries
from kafkaorg.config import Settings
from kafkaorg.contracts import AgentKind, AgentReport, AgentStatus
from kafkaorg.errors import KafkaorgError
from kafkaorg.lag import bridge_lag, lag_by_topic
from kafkaorg.names import kafka_topic

LAGGING_RECORDS = 1_000
"""Above this many records not yet delivered on the topics an agent reads, it is lagging."""
BUDGET_WARNING_SHARE = 0.8
"""Past this share of the org's token budget, llm agents are flagged."""


class AgentHealth(BaseModel):
    """An agent's row on the dashboard."""

    agent: queries.AgentRow
    report: AgentReport | None = None
    """The workflow's ``status`` query; None when its workflow does not answer."""
    lag: int | None = None
    """Records of its topics the bridge has not delivered yet (None: Kafka unreadable)."""
    tokens: int = 0
    problems: list[str] = []

    @property
    def healthy(self) -> bool:
        return not self.problems


class OrgOverview(BaseModel):
    org: str
    agents: list[AgentHealth]
    topics: list[queries.TopicRow]
    tokens_used: int
    token_budget: int | None = None
    notes: list[str] = []
    """What could not be read (Kafka or Temporal down), so a blank is explained."""


def agent_problems(
    row: queries.AgentRow,
    report: AgentReport | None,
    lag: int | None,
    budget_share: float | None,
) -> list[str]:
    """What a person should look at, in words; empty when all is well."""
    problems: list[str] = []
    if row.status == AgentStatus.FAILED or (report and report.failed_reason):
        reason = (report.failed_reason if report else None) or row.status_reason or "failed"
        problems.append(f"failed: {reason}")
    if row.status == AgentStatus.PAUSED or (report and report.paused):
        problems.append("paused")
    if lag is not None and lag > LAGGING_RECORDS:
        problems.append(f"lagging: {lag} records behind")
    if report and report.dead_lettered:
        problems.append(f"{report.dead_lettered} record(s) dead-lettered")
    if (
        row.kind == AgentKind.LLM
        and budget_share is not None
        and budget_share >= (BUDGET_WARNING_SHARE)
    ):
        problems.append(f"token budget {budget_share:.0%} used")
    live = row.status in (AgentStatus.RUNNING, AgentStatus.PAUSED)
    if live and report is None:
        problems.append("its workflow does not answer")
    return problems


async def _reports(client: Client, org: str, names: list[str]) -> dict[str, AgentReport]:
    async def one(name: str) -> tuple[str, AgentReport | None]:
        try:
            report = await service.agent_report(client, org, name, timedelta(seconds=3))
        except Exception:
            return name, None
        return name, report

    results = await asyncio.gather(*(one(n) for n in names))
    return {name: report for name, report in results if report is not None}


async def org_overview(cfg: Settings, client: Client | None, org: str) -> OrgOverview:
    """Every agent of the org with its health; raises BadInputError for an unknown org."""
    agents = await asyncio.to_thread(queries.list_agents, cfg, org)
    topics = await asyncio.to_thread(queries.list_topics, cfg, org)
    usage = await asyncio.to_thread(queries.org_usage, cfg, org)
    notes: list[str] = []
    live = [a.name for a in agents if a.status in (AgentStatus.RUNNING, AgentStatus.PAUSED)]
    reports: dict[str, AgentReport] = {}
    if client is None:
        notes.append("Temporal does not answer: inbox and counters unknown")
    else:
        reports = await _reports(client, org, live)
    lags: dict[str, int] | None = None
    try:
        lags = lag_by_topic(await asyncio.to_thread(bridge_lag, cfg, org, 5.0))
    except KafkaorgError as exc:
        notes.append(f"lag unknown: {exc}")
    share = usage.total_tokens / usage.budget if usage.budget else None
    rows = []
    for row in agents:
        report = reports.get(row.name)
        lag = (
            sum(lags.get(kafka_topic(org, t), 0) for t in row.subscribes)
            if lags is not None
            else None
        )
        tokens = usage.agents[row.name].total_tokens if row.name in usage.agents else 0
        rows.append(
            AgentHealth(
                agent=row,
                report=report,
                lag=lag,
                tokens=tokens,
                problems=agent_problems(row, report, lag, share),
            )
        )
    return OrgOverview(
        org=org,
        agents=rows,
        topics=topics,
        tokens_used=usage.total_tokens,
        token_budget=usage.budget,
        notes=notes,
    )


# ---- the graph ----------------------------------------------------------------------------


class GraphNode(BaseModel):
    id: str
    """``agent:<name>`` or ``topic:<name>``."""
    kind: str
    """``agent`` or ``topic``."""
    name: str
    detail: str
    status: str | None = None


def edge_id(kind: str, source: str, target: str) -> str:
    """An edge's id in the console's graph and in its rates (``edge|kind|from|to``)."""
    return f"edge|{kind}|{source}|{target}"


class GraphEdge(BaseModel):
    source: str
    target: str
    kind: str
    """``publishes`` (agent → topic), ``subscribes`` (topic → agent), ``spawned``."""
    rate: float | None = None
    """Records per second on this edge, when metrics say."""

    @property
    def id(self) -> str:
        return edge_id(self.kind, self.source, self.target)


class OrgGraph(BaseModel):
    org: str
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    at: datetime | None = None


def org_graph(cfg: Settings, org: str) -> OrgGraph:
    """Agents and topics of the org, and who reads, writes and spawned whom."""
    agents = queries.list_agents(cfg, org)
    topics = queries.list_topics(cfg, org)
    nodes = [
        GraphNode(
            id=f"topic:{t.name}",
            kind="topic",
            name=t.name,
            detail=f"{t.topic_class}, {t.partitions} partition(s)",
        )
        for t in topics
    ]
    known = {t.name for t in topics}
    edges: list[GraphEdge] = []
    for a in agents:
        if a.status == AgentStatus.RETIRED:
            continue
        nodes.append(
            GraphNode(
                id=f"agent:{a.name}", kind="agent", name=a.name, detail=a.kind, status=a.status
            )
        )
        edges += [
            GraphEdge(source=f"topic:{t}", target=f"agent:{a.name}", kind="subscribes")
            for t in a.subscribes
            if t in known
        ]
        edges += [
            GraphEdge(source=f"agent:{a.name}", target=f"topic:{t}", kind="publishes")
            for t in a.publishes
            if t in known
        ]
    live = {n.name for n in nodes if n.kind == "agent"}
    edges += [
        GraphEdge(source=f"agent:{a.parent_agent}", target=f"agent:{a.name}", kind="spawned")
        for a in agents
        if a.parent_agent and a.parent_agent in live and a.name in live
    ]
    return OrgGraph(org=org, nodes=nodes, edges=edges)
