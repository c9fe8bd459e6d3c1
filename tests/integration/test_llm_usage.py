"""Token accounting and the org budget on the real PostgreSQL (no model involved)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from kafkaorg.config import Settings
from kafkaorg.db import Org
from kafkaorg.db.models import LlmUsage
from kafkaorg.llm.usage import (
    BudgetExceededError,
    TokenUsage,
    check_budget,
    org_tokens_used,
    record_usage,
    tokens_by_agent,
)
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
