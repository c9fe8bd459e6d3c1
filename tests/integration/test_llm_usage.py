"""Token accounting and the budgets (org, lineage, flow run) on the real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from kafkaorg.config import Settings
from kafkaorg.db import Org
from kafkaorg.db.models import Agent, LlmUsage
from kafkaorg.llm.usage import (
    BudgetExceededError,
    FlowBudgetExceededError,
    TokenUsage,
    check_budget,
    flow_run_tokens,
    lineage_members,
    org_tokens_used,
    record_usage,
    tokens_by_agent,
)
from kafkaorg.names import flow_workflow_id
from kafkaorg.spec import OrgSpec
from tests.support import assert_one_clear_line, db_sessions, run_cli, unique_org

pytestmark = pytest.mark.integration


@pytest.fixture
def sessions(stack: Settings) -> Iterator[sessionmaker[Session]]:
    made: sessionmaker[Session] = db_sessions(stack)
    yield made
    made.kw["bind"].dispose()


def _add_org(sessions: sessionmaker[Session], name: str, **limits: Any) -> None:
    """An org row as ``org start`` writes it: the spec column is the OrgSpec as JSON."""
    spec = OrgSpec.model_validate({"org": name, "limits": limits})
    with sessions.begin() as session:
        session.add(
            Org(
                name=name,
                status="running",
                spec=spec.model_dump(mode="json"),
                workflow_id=f"org:{name}",
            )
        )


def _drop_org(sessions: sessionmaker[Session], name: str) -> None:
    with sessions.begin() as session:
        session.execute(delete(Org).where(Org.name == name))


def _record(
    sessions: sessionmaker[Session],
    org: str,
    agent: str,
    call_id: str,
    prompt: int,
    completion: int,
) -> bool:
    with sessions.begin() as session:
        return record_usage(
            session,
            org=org,
            agent=agent,
            workflow_id=f"agent:{org}:{agent}",
            call_id=call_id,
            model="scripted",
            usage=TokenUsage(
                prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
            ),
        )


def test_a_retried_call_is_counted_once_and_totals_add_up(
    sessions: sessionmaker[Session],
) -> None:
    org = unique_org()
    _add_org(sessions, org)
    try:
        assert _record(sessions, org, "planner", f"{org}/run1/1", 11, 7) is True
        # The activity retried after writing: the same call id inserts nothing.
        assert _record(sessions, org, "planner", f"{org}/run1/1", 11, 7) is False
        assert _record(sessions, org, "planner", f"{org}/run1/2", 20, 5) is True
        assert _record(sessions, org, "coder", f"{org}/run2/1", 3, 1) is True
        with sessions() as session:
            rows = session.scalars(select(LlmUsage.call_id).join(Org).where(Org.name == org)).all()
            assert sorted(rows) == [f"{org}/run1/1", f"{org}/run1/2", f"{org}/run2/1"]
            assert org_tokens_used(session, org) == 18 + 25 + 4
            assert tokens_by_agent(session, org) == {
                "coder": TokenUsage(prompt_tokens=3, completion_tokens=1, total_tokens=4),
                "planner": TokenUsage(prompt_tokens=31, completion_tokens=12, total_tokens=43),
            }
            # Another org's calls are not this one's.
            assert org_tokens_used(session, unique_org()) == 0
        shown = run_cli("org", "usage", org, "--json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout) == {
            "org": org,
            "agents": {
                "coder": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
                "planner": {"prompt_tokens": 31, "completion_tokens": 12, "total_tokens": 43},
            },
            "total_tokens": 47,
            "budget": None,
        }
    finally:
        _drop_org(sessions, org)
    # The org's usage goes with it (ON DELETE CASCADE).
    with sessions() as session:
        assert not session.scalars(select(LlmUsage).where(LlmUsage.call_id.like(f"{org}/%"))).all()


def test_the_budget_stops_calls_once_it_is_spent(sessions: sessionmaker[Session]) -> None:
    org, unlimited = unique_org(), unique_org()
    _add_org(sessions, org, llm_token_budget=40)
    _add_org(sessions, unlimited)
    try:
        with sessions() as session:
            check_budget(session, org)  # nothing used yet
        _record(sessions, org, "planner", f"{org}/1", 11, 7)
        _record(sessions, org, "planner", f"{org}/2", 11, 7)
        with sessions() as session:
            check_budget(session, org)  # 36 of 40: one more call may go
        _record(sessions, org, "planner", f"{org}/3", 3, 1)
        with sessions() as session, pytest.raises(BudgetExceededError) as raised:
            check_budget(session, org)  # 40 of 40
        assert str(raised.value) == (
            f"org {org} used 40 of its 40-token LLM budget (limits.llm_token_budget)"
        )
        # Without a budget there is no limit.
        for n in range(3):
            _record(sessions, unlimited, "planner", f"{unlimited}/{n}", 1000, 1000)
        with sessions() as session:
            check_budget(session, unlimited)

        shown = run_cli("org", "usage", org)
        assert shown.returncode == 0, shown.stderr
        assert "planner" in shown.stdout
        assert "total 40 token(s); budget 40 (0 left)" in shown.stdout
    finally:
        _drop_org(sessions, org)
        _drop_org(sessions, unlimited)


def test_usage_of_an_unknown_org_is_one_clear_line(stack: Settings) -> None:
    org = unique_org()
    assert_one_clear_line(run_cli("org", "usage", org), 2, f"unknown org '{org}'")


def _add_agents(sessions: sessionmaker[Session], org: str, agents: dict[str, Any]) -> None:
    """Agent rows as the OrgWorkflow registers them: name -> (parent, token_budget)."""
    with sessions.begin() as session:
        org_id = session.scalar(select(Org.id).where(Org.name == org))
        for name, (parent, budget) in agents.items():
            spec = {"name": name, "kind": "llm", "token_budget": budget}
            session.add(
                Agent(
                    org_id=org_id,
                    name=name,
                    kind="llm",
                    status="running",
                    spec=spec,
                    workflow_id=f"agent:{org}:{name}",
                    created_by=f"agent:{parent}" if parent else "spec",
                    parent_agent=parent,
                )
            )


def test_an_agents_budget_covers_the_agents_it_spawned(
    sessions: sessionmaker[Session],
) -> None:
    org = unique_org()
    _add_org(sessions, org)
    # boss (50 tokens) spawned kid, kid spawned grandkid; kid's own, larger budget does
    # not lift boss's. loner is outside the lineage.
    _add_agents(
        sessions,
        org,
        {
            "boss": (None, 50),
            "kid": ("boss", 1000),
            "grandkid": ("kid", None),
            "loner": (None, None),
        },
    )
    try:
        _record(sessions, org, "boss", f"{org}/1", 10, 10)
        _record(sessions, org, "grandkid", f"{org}/2", 10, 10)
        _record(sessions, org, "loner", f"{org}/3", 500, 500)
        with sessions() as session:
            for agent in ("boss", "kid", "grandkid", "loner"):
                check_budget(session, org, agent)  # the lineage used 40 of 50
        _record(sessions, org, "kid", f"{org}/4", 5, 5)
        for agent in ("boss", "kid", "grandkid"):
            with sessions() as session, pytest.raises(BudgetExceededError) as raised:
                check_budget(session, org, agent)
            assert str(raised.value) == (
                "boss and the agents it spawned (grandkid, kid) used 50 of boss's "
                "50-token LLM budget (agents[boss].token_budget)"
            )
        with sessions() as session:
            check_budget(session, org, "loner")  # 1,000 tokens, but no budget of its own
            assert lineage_members({"a": None, "b": "a", "c": "b", "d": None}, "b") == ["b", "c"]
            # A cycle (never written by the platform) ends the walk instead of looping.
            assert lineage_members({"a": "b", "b": "a"}, "a") == ["a", "b"]
    finally:
        _drop_org(sessions, org)


def test_a_flow_runs_budget_counts_the_calls_correlated_to_it(
    sessions: sessionmaker[Session],
) -> None:
    org = unique_org()
    with sessions.begin() as session:
        session.add(
            Org(
                name=org,
                status="running",
                spec={
                    "org": org,
                    "flows": [
                        {"name": "review", "token_budget": 30},
                        {"name": "free", "token_budget": None},
                    ],
                },
                workflow_id=f"org:{org}",
            )
        )
    run, other_run, free_run = (
        flow_workflow_id(org, "review", "r1"),
        flow_workflow_id(org, "review", "r2"),
        flow_workflow_id(org, "free", "r1"),
    )

    def spend(call: str, tokens: int, correlation_id: str) -> None:
        with sessions.begin() as session:
            record_usage(
                session,
                org=org,
                agent="writer",
                workflow_id=f"agent:{org}:writer",
                call_id=f"{org}/{call}",
                model="scripted",
                usage=TokenUsage(total_tokens=tokens),
                correlation_id=correlation_id,
            )

    try:
        spend("1", 20, run)
        spend("2", 100, free_run)
        spend("3", 100, "not-a-flow")
        with sessions() as session:
            check_budget(session, org, "writer", run)  # 20 of 30
            assert flow_run_tokens(session, run) == 20
        spend("4", 10, run)
        with sessions() as session, pytest.raises(FlowBudgetExceededError) as raised:
            check_budget(session, org, "writer", run)
        assert str(raised.value) == (
            f"flow run {run} used 30 of its 30-token LLM budget (flows[review].token_budget)"
        )
        with sessions() as session:
            check_budget(session, org, "writer", other_run)  # each run has its own
            check_budget(session, org, "writer", free_run)  # no budget
            check_budget(session, org, "writer", "not-a-flow")
            check_budget(session, org, "writer", None)
            # Another org's run of a same-named flow is not this org's business.
            check_budget(session, org, "writer", flow_workflow_id(unique_org(), "review", "r1"))
    finally:
        _drop_org(sessions, org)
