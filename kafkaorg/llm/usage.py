"""Token use per model call, per agent and per org, and the org's budget.

Recorded by the model-call activity; a retried call has the same ``call_id``
and is counted once.
"""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from kafkaorg.db.models import LlmUsage, Org
from kafkaorg.errors import KafkaorgError


class TokenUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class BudgetExceededError(KafkaorgError):
    """The org has spent ``limits.llm_token_budget``: its agents make no more model calls."""


def record_usage(
    session: Session,
    *,
    org: str,
    agent: str,
    workflow_id: str,
    call_id: str,
    model: str,
    usage: TokenUsage,
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


def org_tokens_used(session: Session, org: str) -> int:
    used = session.scalar(
        select(func.coalesce(func.sum(LlmUsage.total_tokens), 0))
        .join(Org, Org.id == LlmUsage.org_id)
        .where(Org.name == org)
    )
    return int(used or 0)


def org_token_budget(session: Session, org: str) -> int | None:
    spec = session.scalar(select(Org.spec).where(Org.name == org))
    if not spec:
        return None
    budget = (spec.get("limits") or {}).get("llm_token_budget")
    return int(budget) if budget is not None else None


def check_budget(session: Session, org: str) -> None:
    """Raise ``BudgetExceededError`` once the org has used its whole budget."""
    budget = org_token_budget(session, org)
    if budget is None:
        return
    used = org_tokens_used(session, org)
    if used >= budget:
        raise BudgetExceededError(
            f"org {org} used {used} of its {budget}-token LLM budget (limits.llm_token_budget)"
        )
