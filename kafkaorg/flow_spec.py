"""Flows in the org spec: durable multi-agent workflows, one ``FlowWorkflow`` per run.

A flow is a list of steps run in order unless a step says otherwise (``next``, a
``switch``'s ``goto``). Conditions and input mappings are JMESPath expressions over
the run's state (``input``, ``steps.<id>``, ``visits.<id>``): a well-kept expression
library, pure and deterministic, so the workflow evaluates them itself.

``flow_problems`` checks what a schema cannot (unique step ids, targets that exist,
agents and topics of the org, expressions that compile) and names the flow and step
of every problem, so a user fixes a spec in one pass.
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal

import jmespath
from jmespath.exceptions import JMESPathError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kafkaorg.names import AGENT_NAME_RE

FLOW_NAME_RE: Final = AGENT_NAME_RE
STEP_ID_RE: Final = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
GATHER_RE: Final = re.compile(r"^(all|first|quorum:([1-9][0-9]{0,3}))$")
RECORD_TYPE_PATTERN: Final = r"^[a-z][a-z0-9_.-]{0,99}$"
EXPRESSION_PREFIX: Final = "$."
"""An ``input``/``payload`` value starting with this is an expression over the run state
(``$.steps.verdict.payload``); any other value is a literal (as in rule agents' ``map``)."""
END: Final = "end"
"""The target (``next``, ``goto``, ``on_deny``) that ends the run; no step may take the id."""
DEFAULT_ASK_TYPE: Final = "flow.request"
DEFAULT_ASK_TIMEOUT_S: Final = 300.0
DEFAULT_MAX_VISITS: Final = 10
"""A step visited more often than its ``max_visits`` fails the run: loops end by themselves."""
DEFAULT_HANDOFF_TYPE: Final = "flow.handoff"
MAX_MAP_ITEMS: Final = 1000
"""A ``map`` over more items fails its step: every item is a request in the run's history."""
HANDOFF_ANSWER: Final = (
    'answer with a record whose payload is {"next": "<one of choices>", "reason": "<why>"} '
    '(optionally "input": {...}, the request the chosen agent gets)'
)
"""What a ``handoff`` supervisor is told, in its request, about the reply it must give."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class AskSpec(_Strict):
    """A request to an agent (on the first topic it subscribes to), awaiting its reply."""

    ask: str
    type: str = Field(default=DEFAULT_ASK_TYPE, pattern=RECORD_TYPE_PATTERN)
    input: dict[str, Any] | None = None
    """The request's payload; default: the previous step's payload (the run's input first)."""
    timeout_s: float | None = Field(default=None, gt=0, le=30 * 86_400)
    """A ``parallel`` branch's own timeout (default: the step's): the branch is given up
    then, and the step ends as soon as its ``gather`` is met or can no longer be."""


class MapSpec(_Strict):
    """Fan-out over a list in the run's state: one request to ``ask`` per item."""

    over: str
    """A JMESPath expression over the run state (``input.items``; a leading ``$.`` is
    allowed) that must give a list."""
    ask: str
    type: str = Field(default=DEFAULT_ASK_TYPE, pattern=RECORD_TYPE_PATTERN)
    input: dict[str, Any] | None = None
    """Each request's payload; expressions see the run state plus ``item`` and ``index``
    (``$.item.text``). Default: ``{"item": <item>, "index": <i>}``."""
    max_concurrency: int | None = Field(default=None, ge=1, le=MAX_MAP_ITEMS)
    """At most this many requests awaiting their reply at once (default: all)."""
    timeout_s: float | None = Field(default=None, gt=0, le=30 * 86_400)
    """Each item's timeout, counted from its request (default: the step's)."""

    @property
    def expression(self) -> str:
        return self.over.removeprefix(EXPRESSION_PREFIX)


class HandoffSpec(_Strict):
    """A supervisor agent picks which of ``choices`` is asked next.

    The supervisor gets a request (type ``type``) with payload ``{"task": ..., "choices":
    [...], "step": ..., "answer": ...}`` and answers with a record whose payload is
    ``{"next": "<one of choices>", "reason": "..."}`` (optionally ``"input": {...}``, the
    payload the chosen agent is asked with; default: the task). A ``next`` outside
    ``choices`` is refused: the refusal is recorded and the step fails."""

    supervisor: str
    choices: list[str] = Field(min_length=1)
    type: str = Field(default=DEFAULT_HANDOFF_TYPE, pattern=RECORD_TYPE_PATTERN)
    """The supervisor's request type (the chosen agent's is the step's ``type``)."""
    input: dict[str, Any] | None = None
    """The task; default: the previous step's payload."""


class SwitchCase(_Strict):
    when: str | None = None
    """A JMESPath expression over the run state; no ``when``: always taken (the default)."""
    goto: str


class EmitSpec(_Strict):
    topic: str
    type: str = Field(pattern=RECORD_TYPE_PATTERN)
    payload: dict[str, Any] | None = None
    """Default: the previous step's payload."""


class OutputSpec(_Strict):
    """Where a completed run's result (its last step's payload) is published."""

    topic: str
    type: str = Field(pattern=RECORD_TYPE_PATTERN)


class TriggerSpec(_Strict):
    """A record on ``topic`` (of type ``type``, any if not given) starts a run with its
    payload as input; the run's name derives from the record's id, so a redelivered
    record never starts a second run."""

    topic: str
    type: str | None = Field(default=None, pattern=RECORD_TYPE_PATTERN)

    def matches(self, topic: str, type_: str) -> bool:
        return topic == self.topic and self.type in (None, type_)


class ApprovalRule(_Strict):
    """How long something waits for a person, and what the deadline decides (a flow's
    ``approval`` step, an org's ``policy.approvals``)."""

    timeout_s: float = Field(default=3600.0, gt=0, le=30 * 86_400)
    default: Literal["approve", "deny"] = "deny"
    """What a timeout decides."""


class ApprovalSpec(ApprovalRule):
    on_deny: str | None = None
    """The step a denial goes to; without it a denial ends the run ``denied``
    (after compensation)."""


StepKind = Literal["ask", "parallel", "map", "handoff", "switch", "emit", "approval"]
STEP_KINDS: Final[tuple[StepKind, ...]] = (
    "ask",
    "parallel",
    "map",
    "handoff",
    "switch",
    "emit",
    "approval",
)


class FlowStep(_Strict):
    id: str
    ask: str | None = None
    type: str = Field(default=DEFAULT_ASK_TYPE, pattern=RECORD_TYPE_PATTERN)
    """``ask``: the request's record type."""
    input: dict[str, Any] | None = None
    parallel: list[AskSpec] | None = None
    map: MapSpec | None = None
    handoff: HandoffSpec | None = None
    gather: str = "all"
    """``parallel``/``map``: ``all``, ``first`` or ``quorum:N`` replies end the step."""
    timeout_s: float = Field(default=DEFAULT_ASK_TIMEOUT_S, gt=0, le=30 * 86_400)
    """``ask``/``parallel``/``map``/``handoff``: how long to wait for a reply (per attempt;
    the default of each branch's own ``timeout_s``)."""
    retries: int = Field(default=0, ge=0, le=10)
    """``ask``/``parallel``/``map``/``handoff``: new requests (new ids) after a timeout,
    before the run fails."""
    switch: list[SwitchCase] | None = None
    emit: EmitSpec | None = None
    approval: ApprovalSpec | None = None
    next: str | None = None
    max_visits: int = Field(default=DEFAULT_MAX_VISITS, ge=1, le=10_000)
    compensate: AskSpec | None = None
    """Asked if a later step fails, in reverse order of the completed steps."""

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not STEP_ID_RE.match(value):
            raise ValueError(f"step id {value!r} must match {STEP_ID_RE.pattern}")
        if value == END:
            raise ValueError(f"step id {END!r} is reserved: as a target it ends the run")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> FlowStep:
        kinds = [k for k in STEP_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            given = ", ".join(kinds) or "none"
            raise ValueError(
                f"step {self.id!r} needs exactly one of {', '.join(STEP_KINDS)} (given: {given})"
            )
        return self

    @property
    def kind(self) -> StepKind:
        return next(k for k in STEP_KINDS if getattr(self, k) is not None)

    def branches(self) -> list[AskSpec]:
        """The asks of an ``ask`` (one) or ``parallel`` step (a ``map``'s are known only
        when it runs)."""
        if self.parallel is not None:
            return self.parallel
        if self.ask is not None:
            return [AskSpec(ask=self.ask, type=self.type, input=self.input)]
        return []

    def per_branch(self) -> bool:
        """Branches wait each on its own clock (a ``map``, or a ``parallel`` step with a
        branch's own ``timeout_s``); else all share one wait, as flows first did."""
        return self.map is not None or any(b.timeout_s is not None for b in self.branches())

    def needed(self) -> int:
        """How many replies end an ``ask``/``parallel`` step."""
        count = len(self.branches())
        if self.kind == "ask":
            return 1
        return gather_needed(self.gather, count) or count


class FlowSpec(_Strict):
    name: str
    description: str = ""
    steps: list[FlowStep] = Field(min_length=1)
    trigger: TriggerSpec | None = None
    output: OutputSpec | None = None
    on_failure: list[AskSpec] = Field(default_factory=list)
    """Asked (in order) after the steps' own compensations when a run fails."""
    token_budget: int | None = Field(default=None, ge=1)
    """LLM tokens each run may spend: every model call for a record correlated to the run.
    Past it, such records are dead-lettered (``flow-budget-spent``); the agents go on."""

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not FLOW_NAME_RE.match(value):
            raise ValueError(f"flow name {value!r} must match {FLOW_NAME_RE.pattern}")
        return value

    def step(self, step_id: str) -> FlowStep | None:
        return next((s for s in self.steps if s.id == step_id), None)


def gather_needed(gather: str, branches: int) -> int | None:
    """Replies a ``gather`` needs out of ``branches``; None if it is not a gather."""
    match = GATHER_RE.match(gather)
    if match is None:
        return None
    if gather == "all":
        return branches
    if gather == "first":
        return 1
    return int(match.group(2))


def is_expression(value: object) -> bool:
    return isinstance(value, str) and value.startswith(EXPRESSION_PREFIX)


def _expression_problems(template: dict[str, Any] | None, where: str) -> list[str]:
    problems: list[str] = []
    for key, value in (template or {}).items():
        if is_expression(value):
            expression = value.removeprefix(EXPRESSION_PREFIX)
            problems.extend(compile_problem(expression, f"{where}.{key}"))
    return problems


def compile_problem(expression: str, where: str) -> list[str]:
    try:
        jmespath.compile(expression)
    except JMESPathError as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return [f"{where}: not a valid JMESPath expression {expression!r} ({detail})"]
    return []


def flow_problems(
    flow: FlowSpec, where: str, agents: dict[str, list[str]], topics: set[str]
) -> list[str]:
    """Problems of one flow against the org: ``agents`` maps names to their subscriptions."""
    problems: list[str] = []
    ids = [s.id for s in flow.steps]
    seen: set[str] = set()
    for i, step_id in enumerate(ids):
        if step_id in seen:
            problems.append(f"{where}.steps.{i}.id: duplicate step id {step_id!r}")
        seen.add(step_id)

    def check_ask(ask: AskSpec, at: str, field: str = "ask") -> None:
        if ask.ask not in agents:
            problems.append(f"{at}.{field}: unknown agent {ask.ask!r} (not in the spec's agents)")
        elif not agents[ask.ask]:
            problems.append(
                f"{at}.{field}: agent {ask.ask!r} subscribes to no topic, so it cannot be asked"
            )
        problems.extend(_expression_problems(ask.input, f"{at}.input"))

    def check_target(target: str, at: str) -> None:
        if target not in seen and target != END:
            problems.append(f"{at}: unknown step {target!r} (steps: {', '.join(ids)}, or {END})")

    for i, step in enumerate(flow.steps):
        at = f"{where}.steps.{i}({step.id})"
        for j, ask in enumerate(step.branches()):
            check_ask(ask, f"{at}.parallel.{j}" if step.parallel is not None else at)
        if step.parallel is not None:
            needed = gather_needed(step.gather, len(step.parallel))
            if not step.parallel:
                problems.append(f"{at}.parallel: needs at least one branch")
            if needed is None:
                problems.append(
                    f"{at}.gather: {step.gather!r} is not all, first or quorum:N (N >= 1)"
                )
            elif needed > len(step.parallel):
                problems.append(
                    f"{at}.gather: {step.gather} needs more replies than the "
                    f"{len(step.parallel)} branches"
                )
        elif step.map is not None:
            check_ask(
                AskSpec(ask=step.map.ask, type=step.map.type, input=step.map.input), f"{at}.map"
            )
            problems.extend(compile_problem(step.map.expression, f"{at}.map.over"))
            if gather_needed(step.gather, MAX_MAP_ITEMS) is None:
                problems.append(
                    f"{at}.gather: {step.gather!r} is not all, first or quorum:N (N >= 1)"
                )
        elif step.gather != "all":
            problems.append(f"{at}.gather: only parallel and map steps gather")
        if step.handoff is not None:
            handoff = step.handoff
            check_ask(
                AskSpec(ask=handoff.supervisor, input=handoff.input),
                f"{at}.handoff",
                "supervisor",
            )
            for j, choice in enumerate(handoff.choices):
                if choice not in agents:
                    problems.append(
                        f"{at}.handoff.choices.{j}: unknown agent {choice!r} "
                        "(not in the spec's agents)"
                    )
                elif not agents[choice]:
                    problems.append(
                        f"{at}.handoff.choices.{j}: agent {choice!r} subscribes to no topic, "
                        "so it cannot be asked"
                    )
            if len(set(handoff.choices)) != len(handoff.choices):
                problems.append(f"{at}.handoff.choices: an agent is named twice")
        if step.switch is not None:
            if not step.switch:
                problems.append(f"{at}.switch: needs at least one case")
            for j, case in enumerate(step.switch):
                if case.when is not None:
                    problems.extend(compile_problem(case.when, f"{at}.switch.{j}.when"))
                check_target(case.goto, f"{at}.switch.{j}.goto")
            if step.next is not None:
                problems.append(f"{at}.next: a switch goes where its cases say (use goto)")
        if step.emit is not None:
            if step.emit.topic not in topics:
                problems.append(f"{at}.emit.topic: unknown topic {step.emit.topic!r}")
            problems.extend(_expression_problems(step.emit.payload, f"{at}.emit.payload"))
        if step.approval is not None and step.approval.on_deny is not None:
            check_target(step.approval.on_deny, f"{at}.approval.on_deny")
        if step.next is not None:
            check_target(step.next, f"{at}.next")
        if step.compensate is not None:
            check_ask(step.compensate, f"{at}.compensate")
    if flow.trigger is not None and flow.trigger.topic not in topics:
        problems.append(f"{where}.trigger.topic: unknown topic {flow.trigger.topic!r}")
    if flow.output is not None and flow.output.topic not in topics:
        problems.append(f"{where}.output.topic: unknown topic {flow.output.topic!r}")
    for j, ask in enumerate(flow.on_failure):
        check_ask(ask, f"{where}.on_failure.{j}")
    return problems
