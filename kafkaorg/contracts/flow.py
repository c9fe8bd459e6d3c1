"""What crosses a process boundary for flows: the run's input, state, replies, decisions.

The input carries the flow's definition, so a run is self-contained and replayable
(a later change of the org's spec never changes a running flow), and ``temporal
workflow start --input`` with the same JSON starts the very same run.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, JsonValue

from kafkaorg.envelope import Record
from kafkaorg.flow_spec import FlowSpec


class FlowStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    DENIED = "denied"
    """An approval said no (and no ``on_deny`` step took over)."""


class StepStatus(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"


class FlowSignal(StrEnum):
    REPLY = "reply"


class FlowUpdate(StrEnum):
    DECIDE = "decide"


class FlowQuery(StrEnum):
    STATE = "state"


class StepRun(BaseModel):
    """One visit of one step, as it ended."""

    step: str
    kind: str
    visit: int
    status: StepStatus
    output: dict[str, JsonValue] = Field(default_factory=dict)
    started_at: datetime
    ended_at: datetime
    error: str | None = None


class Outstanding(BaseModel):
    """A request that has been published and whose reply is awaited (or was, once)."""

    request_id: str
    step: str
    visit: int
    branch: int
    agent: str


class LateReply(BaseModel):
    """A reply that came after its step stopped waiting: recorded, never lost."""

    request_id: str
    step: str
    agent: str
    record: Record
    received_at: datetime


class Decision(BaseModel):
    """A switch's choice or an approval's verdict, with who made it."""

    step: str
    visit: int
    choice: str
    by: str
    reason: str = ""
    at: datetime


class FlowState(BaseModel):
    """Everything a run knows; switch conditions and input mappings read its JSON form
    (``input``, ``steps``, ``visits``)."""

    input: dict[str, JsonValue] = Field(default_factory=dict)
    steps: dict[str, dict[str, JsonValue]] = Field(default_factory=dict)
    """Each step's latest output, by step id."""
    visits: dict[str, int] = Field(default_factory=dict)
    history: list[StepRun] = Field(default_factory=list)
    decisions: list[Decision] = Field(default_factory=list)
    status: FlowStatus = FlowStatus.RUNNING
    current: str | None = None
    """The step running (or next to run, in a continued run)."""
    last_payload: dict[str, JsonValue] | None = None
    """The payload the previous step produced: the default input of the next."""
    outstanding: list[Outstanding] = Field(default_factory=list)
    """Requests of the current step still awaiting their reply."""
    past_requests: list[Outstanding] = Field(default_factory=list)
    """Requests whose step stopped waiting; their replies become ``late``."""
    late: list[LateReply] = Field(default_factory=list)
    unmatched: int = 0
    """Records of this run's correlation that answered no request (e.g. a chain's)."""
    failure: str | None = None
    failed_step: str | None = None
    compensated: list[str] = Field(default_factory=list)
    """Compensation asks that were answered, in the order they ran."""
    result: dict[str, JsonValue] | None = None
    runs: int = 0
    """Continue-as-new count."""
    audit_records: int = 0

    def expression_view(self) -> dict[str, Any]:
        """What JMESPath expressions see."""
        return {
            "input": self.input,
            "steps": self.steps,
            "visits": self.visits,
            "status": self.status.value,
        }


class FlowInput(BaseModel):
    org: str
    flow: FlowSpec
    input: dict[str, JsonValue] = Field(default_factory=dict)
    run: str
    """The run's name: the last part of its workflow id ``flow:<org>:<flow>:<run>``."""
    state: FlowState | None = None
    """Set only by continue-as-new."""
    continue_as_new_after_steps: int | None = None
    """Test hook: continue-as-new after this many steps (so it is tested)."""


class FlowReplies(BaseModel):
    """Records of the run's correlation, from the bridge."""

    records: list[Record]


class ApprovalDecision(BaseModel):
    step: str
    approve: bool
    by: str = "user:cli"
    reason: str = ""


class FlowReport(BaseModel):
    """``flow status``: the run's identity and state."""

    org: str
    flow: str
    run: str
    workflow_id: str
    state: FlowState
    waiting_for: list[str] = Field(default_factory=list)
    """What the run waits on now: agents asked, or ``approval``."""


class FlowResult(BaseModel):
    status: FlowStatus
    result: dict[str, JsonValue] | None = None
    failure: str | None = None


class StartFlowRequest(BaseModel):
    """An llm agent's ``start_flow`` call: a run of one of its org's flows."""

    org: str
    flow: str
    input: dict[str, JsonValue] = Field(default_factory=dict)
    run: str
    """Derived from the record the agent answers and the flow: a retry starts no second run."""
    requested_by: str


class StartFlowOutcome(BaseModel):
    started: bool
    """False: refused (``reason``), or the run was started before (``already``)."""
    already: bool = False
    workflow_id: str | None = None
    reason: str = ""


class FlowRunInfo(BaseModel):
    """One row of ``flow list``."""

    workflow_id: str
    flow: str
    run: str
    status: str
    started_at: datetime | None = None
    closed_at: datetime | None = None
