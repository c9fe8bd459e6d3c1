"""The tool registry in PostgreSQL: immutable versions, their test results, the current one.

Every method is idempotent, so a retried activity (or a replayed OrgWorkflow)
never leaves a second version behind: a proposal with the same code and tests
as an existing version *is* that version.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.state import org_id_of
from kafkaorg.db.models import Org, Tool, ToolVersion
from kafkaorg.db.models import ToolRun as ToolRunRow
from kafkaorg.spec import ToolSpec


class ProposeInput(BaseModel):
    org: str
    tool: ToolSpec
    author: str = "spec"


class ProposedVersion(BaseModel):
    name: str
    version: int
    status: str
    created: bool
    """False: this code and tests were already a version (a retry, or an unchanged spec)."""
    test_result: dict[str, Any] | None = None


class TestResultInput(BaseModel):
    __test__ = False

    org: str
    name: str
    version: int
    passed: bool
    result: dict[str, Any]
    approval: Literal["auto", "human"] = "auto"


class RecordedVersion(BaseModel):
    name: str
    version: int
    status: str
    current_version: int | None


class ToolRun(BaseModel):
    """One call of a tool on one record, as the tool agent saw it."""

    record_id: str
    input: dict[str, Any]
    result: dict[str, Any] | None = None
    error: str | None = None
    duration_s: float | None = None
    cpu_s: float | None = None
    limit_hit: str | None = None


class ToolRunsInput(BaseModel):
    org: str
    agent: str
    tool: str
    version: int
    workflow_id: str
    runs: list[ToolRun]


INPUT_KEEP_CHARS = 4_000
"""Inputs and results are kept whole up to this size (as JSON); larger ones as a preview."""


def _bounded(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    text = json.dumps(value)
    return value if len(text) <= INPUT_KEEP_CHARS else {"preview": text[:INPUT_KEEP_CHARS]}


class ToolRef(BaseModel):
    org: str
    name: str


class CurrentTool(BaseModel):
    """The version a tool agent runs; no ``version``: there is none to run, ``reason`` says why."""

    name: str
    version: int | None = None
    code: str = ""
    reason: str | None = None


class RollbackInput(BaseModel):
    org: str
    name: str
    version: int
    requested_by: str = "user:cli"


class RolledBack(RecordedVersion):
    """The version now current, and the one it replaced (for the audit record)."""

    previous_version: int | None


class ApproveInput(BaseModel):
    org: str
    name: str
    version: int
    approved_by: str = "user:cli"


def _tool_id(session: Session, org_id: int, name: str) -> int:
    session.execute(
        insert(Tool)
        .values(org_id=org_id, name=name)
        .on_conflict_do_nothing(constraint="uq_tools_org_id")
    )
    return session.execute(
        select(Tool.id).where(Tool.org_id == org_id, Tool.name == name).with_for_update()
    ).scalar_one()


def _version_row(session: Session, org: str, name: str, version: int) -> ToolVersion:
    row = session.scalars(
        select(ToolVersion)
        .join(Tool, Tool.id == ToolVersion.tool_id)
        .join(Org, Org.id == Tool.org_id)
        .where(Org.name == org, Tool.name == name, ToolVersion.version == version)
        .with_for_update()
    ).one_or_none()
    if row is None:
        raise ApplicationError(
            f"tool {name!r} has no version {version} in org {org!r}",
            type="UnknownToolVersion",
            non_retryable=True,
        )
    return row


class ToolActivities:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    @activity.defn
    def propose_version(self, input: ProposeInput) -> ProposedVersion:
        """Insert the next version (status ``testing``) unless this code and tests are one."""
        code, tests = input.tool.source, input.tool.tests or ""
        with self._sessions.begin() as session:
            tool_id = _tool_id(session, org_id_of(session, input.org), input.tool.name)
            existing = session.scalars(
                select(ToolVersion)
                .where(
                    ToolVersion.tool_id == tool_id,
                    ToolVersion.code == code,
                    ToolVersion.tests == tests,
                )
                .order_by(ToolVersion.version.desc())
            ).first()
            if existing is not None:
                return ProposedVersion(
                    name=input.tool.name,
                    version=existing.version,
                    status=existing.status,
                    created=False,
                    test_result=existing.test_result,
                )
            latest = session.scalar(
                select(func.max(ToolVersion.version)).where(ToolVersion.tool_id == tool_id)
            )
            version = (latest or 0) + 1
            session.add(
                ToolVersion(
                    tool_id=tool_id,
                    version=version,
                    description=input.tool.description,
                    args_schema=input.tool.args_schema,
                    code=code,
                    tests=tests,
                    author=input.author,
                    status="testing",
                )
            )
        return ProposedVersion(
            name=input.tool.name, version=version, status="testing", created=True
        )

    @activity.defn
    def record_test_result(self, input: TestResultInput) -> RecordedVersion:
        """Set a tested version's status; only an ``active`` one becomes current."""
        if not input.passed:
            status = "failed"
        else:
            status = "active" if input.approval == "auto" else "pending_approval"
        with self._sessions.begin() as session:
            row = _version_row(session, input.org, input.name, input.version)
            if row.status == "testing":  # a retry after success leaves the first outcome
                row.status = status
                row.test_result = input.result
            current = self._promote(session, row) if row.status == "active" else None
            if current is None:
                current = session.scalar(select(Tool.current_version).where(Tool.id == row.tool_id))
            return RecordedVersion(
                name=input.name, version=row.version, status=row.status, current_version=current
            )

    @staticmethod
    def _promote(session: Session, row: ToolVersion) -> int | None:
        """Make ``row`` current unless a newer version already is."""
        session.execute(
            update(Tool)
            .where(
                Tool.id == row.tool_id,
                (Tool.current_version.is_(None)) | (Tool.current_version < row.version),
            )
            .values(current_version=row.version)
        )
        return session.scalar(select(Tool.current_version).where(Tool.id == row.tool_id))

    @activity.defn
    def approve(self, input: ApproveInput) -> RecordedVersion:
        """``pending_approval`` → ``active`` (and current); approving an active one is a no-op."""
        with self._sessions.begin() as session:
            row = _version_row(session, input.org, input.name, input.version)
            if row.status not in ("pending_approval", "active"):
                raise ApplicationError(
                    f"tool {input.name!r} version {input.version} is {row.status}, "
                    "not pending approval",
                    type="NotPendingApproval",
                    non_retryable=True,
                )
            row.status = "active"
            current = self._promote(session, row)
            return RecordedVersion(
                name=input.name, version=row.version, status=row.status, current_version=current
            )

    @activity.defn
    def rollback(self, input: RollbackInput) -> RolledBack:
        """Make an earlier active version current again; doing it twice changes nothing.

        The version stays current until a newer version passes its tests (versions are
        immutable: a rollback moves the pointer, it never edits code).
        """
        with self._sessions.begin() as session:
            row = _version_row(session, input.org, input.name, input.version)
            if row.status != "active":
                raise ApplicationError(
                    f"tool {input.name!r} version {input.version} is {row.status}; only a "
                    "version that passed its tests (and was approved) can be current",
                    type="NotActive",
                    non_retryable=True,
                )
            tool = session.get_one(Tool, row.tool_id, with_for_update=True)
            previous = tool.current_version
            tool.current_version = row.version
            return RolledBack(
                name=input.name,
                version=row.version,
                status=row.status,
                current_version=row.version,
                previous_version=previous,
            )

    @activity.defn
    def record_runs(self, input: ToolRunsInput) -> int:
        """The tool's run history (the console shows it); a retry adds nothing twice."""
        if not input.runs:
            return 0
        with self._sessions.begin() as session:
            org_id = org_id_of(session, input.org)
            rows = [
                {
                    "org_id": org_id,
                    "tool": input.tool,
                    "version": input.version,
                    "agent": input.agent,
                    "run_key": f"{input.workflow_id}:{run.record_id}:{input.version}",
                    "record_id": run.record_id,
                    "input": _bounded(run.input) or {},
                    "result": _bounded(run.result),
                    "error": run.error,
                    "ok": run.error is None,
                    "duration_s": run.duration_s,
                    "cpu_s": run.cpu_s,
                    "limit_hit": run.limit_hit,
                }
                for run in input.runs
            ]
            written = session.execute(
                insert(ToolRunRow).values(rows).on_conflict_do_nothing(index_elements=["run_key"])
            )
            return int(getattr(written, "rowcount", 0) or 0)

    @activity.defn
    def load_current(self, ref: ToolRef) -> CurrentTool:
        """The current version's code, or why there is none (never an error: a tool agent
        dead-letters its records with the reason and keeps working)."""
        with self._sessions() as session:
            tool = session.execute(
                select(Tool.id, Tool.current_version)
                .join(Org, Org.id == Tool.org_id)
                .where(Org.name == ref.org, Tool.name == ref.name)
            ).one_or_none()
            if tool is None:
                return CurrentTool(name=ref.name, reason=f"tool {ref.name!r} is not registered")
            tool_id, current = tool
            if current is not None:
                code = session.scalar(
                    select(ToolVersion.code).where(
                        ToolVersion.tool_id == tool_id, ToolVersion.version == current
                    )
                )
                return CurrentTool(name=ref.name, version=current, code=code or "")
            latest = session.execute(
                select(ToolVersion.version, ToolVersion.status)
                .where(ToolVersion.tool_id == tool_id)
                .order_by(ToolVersion.version.desc())
                .limit(1)
            ).one_or_none()
        why = f"latest is version {latest[0]}, {latest[1]}" if latest else "no versions"
        return CurrentTool(name=ref.name, reason=f"tool {ref.name!r} has no active version ({why})")
