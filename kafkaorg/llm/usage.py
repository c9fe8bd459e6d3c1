"""Token use per model call, per agent and per org, and the budgets it is held to.

Recorded by the model-call activity; a retried call has the same ``call_id``
and is counted once. Three budgets apply to a call, each checked before it:

- the org's ``limits.llm_token_budget``, for all its agents together;
- an agent's ``token_budget``, for the agent and every agent it spawned (and
  theirs): budgets follow lineage, so a budgeted agent cannot escape its budget by
  creating helpers, whatever budgets the helpers' specs give themselves;
- a flow's ``token_budget``, for each run: every call made for a record correlated
  to the run (its asks and what agents publish on from them).
"""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from kafkaorg.db.models import Agent, LlmUsage, Org
from kafkaorg.errors import KafkaorgError
from kafkaorg.names import is_flow_workflow_id


class TokenUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class BudgetExceededError(KafkaorgError):
    """The org or a lineage spent its budget: the agent making the call stops."""


class FlowBudgetExceededError(KafkaorgError):
    """A flow run spent its budget: the record is dead-lettered, the agent goes on."""


def record_usage(
    session: Session,
    *,
    org: str,
    agent: str,
    workflow_id: str,
    call_id: str,
    model: str,
    usage: TokenUsage,
    correlation_id: str | None = None,
) -> bool:
    """Insert one call's tokens; False when this call was already recorded (a retry)."""
    org_id = session.scalar(select(Org.id).where(Org.name == org))
    if org_id is None:
        raise KafkaorgError(f"unknown org {org!r}")
    inserted = session.execute(
        insert(LlmUsage)
        .values(
            org_id=org_id,
            agent=agent,
            workflow_id=workflow_id,
            call_id=call_id,
            model=model,
            correlation_id=correlation_id,
            **usage.model_dump(),
        )
        .on_conflict_do_nothing(index_elements=["call_id"])
        .returning(LlmUsage.id)
    ).first()
    return inserted is not None


def tokens_by_agent(session: Session, org: str) -> dict[str, TokenUsage]:
    rows = session.execute(
        select(
            LlmUsage.agent,
            func.sum(LlmUsage.prompt_tokens),
            func.sum(LlmUsage.completion_tokens),
            func.sum(LlmUsage.total_tokens),
        )
        .join(Org, Org.id == LlmUsage.org_id)
        .where(Org.name == org)
        .group_by(LlmUsage.agent)
        .order_by(LlmUsage.agent)
    ).all()
    return {
        agent: TokenUsage(
            prompt_tokens=int(prompt), completion_tokens=int(completion), total_tokens=int(total)
        )
        for agent, prompt, completion, total in rows
    }


def _tokens_where(session: Session, *conditions: ColumnElement[bool]) -> int:
    """Tokens of the calls matching ``conditions`` (every budget sums the same way)."""
    used = session.scalar(
        select(func.coalesce(func.sum(LlmUsage.total_tokens), 0))
        .join(Org, Org.id == LlmUsage.org_id)
        .where(*conditions)
    )
    return int(used or 0)


def org_tokens_used(session: Session, org: str) -> int:
    return _tokens_where(session, Org.name == org)


def org_token_budget(session: Session, org: str) -> int | None:
    spec = session.scalar(select(Org.spec).where(Org.name == org))
    if not spec:
        return None
    budget = (spec.get("limits") or {}).get("llm_token_budget")
    return int(budget) if budget is not None else None


def check_budget(
    session: Session, org: str, agent: str | None = None, correlation_id: str | None = None
) -> None:
    """Raise once the org, a lineage ``agent`` belongs to, or the record's flow run is spent.

    ``BudgetExceededError`` for the org and lineages (the agent stops: any call it makes
    would be refused), ``FlowBudgetExceededError`` for a flow run (only its records are).
    """
    budget = org_token_budget(session, org)
    if budget is not None:
        used = org_tokens_used(session, org)
        if used >= budget:
            raise BudgetExceededError(
                f"org {org} used {used} of its {budget}-token LLM budget (limits.llm_token_budget)"
            )
    if agent is not None:
        _check_lineage(session, org, agent)
    if correlation_id is not None and is_flow_workflow_id(correlation_id):
        _check_flow_run(session, org, correlation_id)


def lineage_members(parents: dict[str, str | None], root: str) -> list[str]:
    """``root`` and every agent whose chain of parents reaches it, sorted."""

    def reaches(name: str) -> bool:
        seen: set[str] = set()
        current: str | None = name
        while current is not None and current not in seen:
            if current == root:
                return True
            seen.add(current)
            current = parents.get(current)
        return False

    return sorted({root, *(name for name in parents if reaches(name))})


def _check_lineage(session: Session, org: str, agent: str) -> None:
    rows = session.execute(
        select(Agent.name, Agent.parent_agent, Agent.spec["token_budget"].as_integer())
        .join(Org, Org.id == Agent.org_id)
        .where(Org.name == org)
    ).all()
    parents = {name: parent for name, parent, _ in rows}
    budgets = {name: budget for name, _, budget in rows if budget is not None}
    ancestor: str | None = agent
    seen: set[str] = set()
    while ancestor is not None and ancestor not in seen:
        seen.add(ancestor)
        budget = budgets.get(ancestor)
        if budget is not None:
            members = lineage_members(parents, ancestor)
            used = _tokens_where(session, Org.name == org, LlmUsage.agent.in_(members))
            if used >= budget:
                spawned = [m for m in members if m != ancestor]
                who = f"{ancestor} and the agents it spawned ({', '.join(spawned)})"
                raise BudgetExceededError(
                    f"{who if spawned else ancestor} used {used} of {ancestor}'s "
                    f"{budget}-token LLM budget (agents[{ancestor}].token_budget)"
                )
        ancestor = parents.get(ancestor)


def flow_run_tokens(session: Session, run_id: str) -> int:
    """Tokens of every call made for a record correlated to the flow run ``run_id``."""
    return _tokens_where(session, LlmUsage.correlation_id == run_id)


def _check_flow_run(session: Session, org: str, run_id: str) -> None:
    _, run_org, flow, _ = run_id.split(":")
    if run_org != org:
        return
    spec = session.scalar(select(Org.spec).where(Org.name == org)) or {}
    declared = next((f for f in spec.get("flows") or [] if f.get("name") == flow), None)
    budget = (declared or {}).get("token_budget")
    if budget is None:
        return
    used = flow_run_tokens(session, run_id)
    if used >= budget:
        raise FlowBudgetExceededError(
            f"flow run {run_id} used {used} of its {budget}-token LLM budget "
            f"(flows[{flow}].token_budget)"
        )
