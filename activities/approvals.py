"""Approvals in PostgreSQL: a row when an action starts waiting, its verdict when decided.

Both are idempotent (the row is keyed by the approval's deterministic id; a verdict
only changes a pending row), so a retried activity or a replayed workflow writes once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.state import org_id_of
from kafkaorg.contracts.approvals import ApprovalDecided, ApprovalKind, ApprovalStatus
from kafkaorg.db.models import Approval, Org, Topic
from kafkaorg.spec import ApprovalRule, TopicClass


class ApprovalRequested(BaseModel):
    org: str
    id: str
    kind: ApprovalKind
    subject: str
    requested_by: str
    deadline: float
    """Unix seconds."""
    timeout_default: Literal["approve", "deny"]
    request: dict[str, Any]


class VerdictInput(BaseModel):
    org: str
    decided: ApprovalDecided


class PublishCheck(BaseModel):
    org: str
    topic: str


class ApprovalActivities:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    @activity.defn
    def publish_rule(self, check: PublishCheck) -> ApprovalRule | None:
        """The org's ``publish`` rule if ``topic`` is audit-class: the agent's cheap look
        before each publish, so only a record the policy may hold troubles the org."""
        with self._sessions() as session:
            row = session.execute(
                select(Org.spec, Topic.topic_class)
                .join(Topic, Topic.org_id == Org.id)
                .where(Org.name == check.org, Topic.name == check.topic)
            ).one_or_none()
        if row is None or row.topic_class != TopicClass.AUDIT.value:
            return None
        rule = ((row.spec or {}).get("policy") or {}).get("approvals", {}).get("publish")
        return ApprovalRule.model_validate(rule) if rule is not None else None

    @activity.defn
    def record_approval_request(self, input: ApprovalRequested) -> None:
        with self._sessions.begin() as session:
            session.execute(
                insert(Approval)
                .values(
                    org_id=org_id_of(session, input.org),
                    approval_id=input.id,
                    action=input.kind.value,
                    subject=input.subject,
                    requested_by=input.requested_by,
                    request=input.request,
                    status=ApprovalStatus.PENDING.value,
                    deadline=datetime.fromtimestamp(input.deadline, UTC),
                    timeout_default=input.timeout_default,
                )
                .on_conflict_do_nothing(constraint="uq_approvals_org_id")
            )

    @activity.defn
    def record_approval_verdict(self, input: VerdictInput) -> None:
        decided = input.decided
        status = ApprovalStatus.APPROVED if decided.approved else ApprovalStatus.DENIED
        with self._sessions.begin() as session:
            session.execute(
                update(Approval)
                .where(
                    Approval.org_id == org_id_of(session, input.org),
                    Approval.approval_id == decided.id,
                    Approval.status == ApprovalStatus.PENDING.value,
                )
                .values(
                    status=status.value,
                    decided_by=decided.by,
                    reason=decided.reason or None,
                    outcome=decided.outcome or None,
                    decided_at=datetime.now(UTC),
                )
            )
