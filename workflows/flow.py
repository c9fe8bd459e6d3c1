"""FlowWorkflow: one run of an org's flow, agents working together through Kafka.

An ``ask`` publishes a request record (deterministic id from the run, step, visit,
attempt and branch, so a retried activity or a replay never publishes a second,
different request) on the first topic the agent subscribes to, with the run's
workflow id as correlation id; the agent needs no change to take part. Its reply (an
output whose causation id is the request's id) comes back through the bridge as a
``reply`` signal. Replies after their step stopped waiting are kept as ``late``.

The run's state (input, each step's output, visits, decisions) is the query
``state``; switch conditions are JMESPath over it, evaluated here (pure and
deterministic). A failed run asks the completed steps' compensations in reverse
order, then the flow's ``on_failure``, dead-letters its provenance to
``<org>.sys.dlq`` and ends failed. Start, every step, decision and end are announced
on ``<org>.sys.audit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    import jmespath

    from activities.approvals import ApprovalActivities, ApprovalRequested, VerdictInput
    from activities.kafka import KafkaActivities, PublishInput
    from activities.state import AgentRef, StateActivities
    from kafkaorg.contracts import (
        ApprovalDecided,
        ApprovalDecision,
        ApprovalKind,
        Decision,
        FlowInput,
        FlowQuery,
        FlowReplies,
        FlowReport,
        FlowResult,
        FlowSignal,
        FlowState,
        FlowStatus,
        FlowUpdate,
        LateReply,
        Outstanding,
        RefusalType,
        StepRun,
        StepStatus,
    )
    from kafkaorg.envelope import Record, derived_id
    from kafkaorg.flow_spec import (
        END,
        EXPRESSION_PREFIX,
        HANDOFF_ANSWER,
        MAX_MAP_ITEMS,
        AskSpec,
        FlowStep,
        gather_needed,
        is_expression,
    )
    from kafkaorg.names import (
        APPROVALS_TOPIC,
        AUDIT_TOPIC,
        DLQ_TOPIC,
        FLOW_WORKFLOW_TYPE,
        flow_workflow_id,
    )

FLOW_ACTIVITY = workflow.ActivityConfig(
    start_to_close_timeout=timedelta(seconds=60),
    retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
)
LOOKUP_ACTIVITY = workflow.ActivityConfig(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
)
LOCAL_EFFECTS_PATCH = "flow-local-effects"
APPROVALS_RECORDED_PATCH = "flow-approvals-recorded"
"""An approval step is also a row in PostgreSQL and a record on ``<org>.sys.approvals``,
so ``kafkaorg approval list`` shows it beside the org's held requests."""
"""Publishes and agent look-ups as local activities (one marker event each instead of an
activity's three events and a workflow task): a three-step run takes a fraction of the
Temporal server's work. Histories from before ran them as activities."""
FLOW_LOCAL_ACTIVITY = workflow.LocalActivityConfig(
    start_to_close_timeout=timedelta(seconds=60),
    retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
)
ASKING_KINDS: Final = frozenset({"ask", "parallel", "map", "handoff"})
"""Steps that send agents records (a run's budget is checked before each)."""
LOOKUP_LOCAL_ACTIVITY = workflow.LocalActivityConfig(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
)
COMPENSATION_TIMEOUT = timedelta(seconds=60)
"""How long a compensation ask waits for its agent's answer (then the next one runs)."""
HISTORY_EVENTS_BEFORE_CONTINUE = 4000
MAX_LATE_REPLIES = 200
MAX_PAST_REQUESTS = 1000
SOURCE = "system:flow"


class StepFailed(Exception):
    """A step that cannot complete: the run fails (after compensation)."""


@dataclass
class _Branch:
    """One request of a per-branch fan-out (``map``, ``parallel`` with own timeouts,
    ``handoff``), and how it ended: ``replied``, ``timed_out`` (its own timeout passed),
    ``pending`` (the step stopped waiting first) or ``not_started`` (never asked)."""

    agent: str
    type: str
    payload: dict[str, Any]
    timeout_s: float
    status: str = "not_started"
    reply: Record | None = None


def _truthy(value: object) -> bool:
    """JMESPath's truth: false, null, empty strings, lists and objects are false."""
    return value not in (None, False, "", [], {})


@workflow.defn(name=FLOW_WORKFLOW_TYPE)
class FlowWorkflow:
    @workflow.init
    def __init__(self, input: FlowInput) -> None:
        self._input = input
        self._state = input.state or FlowState(input=input.input)
        self._replies: dict[str, Record] = {}
        """Request id → the first reply, for the requests of the step that waits now."""
        self._waiting: dict[str, Outstanding] = {}
        self._past = {r.request_id: r for r in self._state.past_requests}
        self._approval_step: str | None = None
        self._decision: ApprovalDecision | None = None
        self._topics: dict[str, str] = {}
        self._steps_this_run = 0

    @property
    def _id(self) -> str:
        """The run's id from its input (``flow:<org>:<flow>:<run>``), which is also its
        workflow id: request ids and the correlation id derive from it, so they are the
        same in every replay of the history, whatever id a replayer gives it."""
        i = self._input
        return flow_workflow_id(i.org, i.flow.name, i.run)

    @workflow.run
    async def run(self, input: FlowInput) -> FlowResult:
        state, flow = self._state, input.flow
        if workflow.info().workflow_id != self._id and not workflow.unsafe.is_replaying():
            workflow.logger.warning(
                "flow run started as %s, not %s: agents' replies go to the latter",
                workflow.info().workflow_id,
                self._id,
            )
        if input.state is None:
            state.current = flow.steps[0].id
            await self._audit("flow.started", {"input": state.input})
        while state.status == FlowStatus.RUNNING and state.current is not None:
            step = flow.step(state.current)
            assert step is not None  # the spec's targets were checked (END is not a step)
            try:
                state.current = await self._run_step(step)
            except StepFailed as exc:
                await self._fail(step, str(exc))
                break
            self._steps_this_run += 1
            if state.current is not None and self._should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                state.runs += 1
                state.past_requests = list(self._past.values())[-MAX_PAST_REQUESTS:]
                workflow.continue_as_new(
                    FlowInput(
                        org=input.org,
                        flow=input.flow,
                        input=input.input,
                        run=input.run,
                        state=state,
                        continue_as_new_after_steps=input.continue_as_new_after_steps,
                    )
                )
        if state.status == FlowStatus.RUNNING:
            state.status = FlowStatus.COMPLETED
            state.result = state.last_payload if state.last_payload is not None else {}
            if flow.output is not None:
                await self._publish(
                    flow.output.topic,
                    self._record(derived_id(self._id, "output"), flow.output.type, state.result),
                )
            await self._audit("flow.completed", {"result": state.result})
        await workflow.wait_condition(workflow.all_handlers_finished)
        return FlowResult(status=state.status, result=state.result, failure=state.failure)

    # -- steps --------------------------------------------------------------------------------

    async def _run_step(self, step: FlowStep) -> str | None:
        """Run one visit of ``step``; returns the id of the step to run next (None: done)."""
        state = self._state
        visit = state.visits.get(step.id, 0) + 1
        if visit > step.max_visits:
            raise StepFailed(f"step {step.id!r} would run more than max_visits ({step.max_visits})")
        state.visits[step.id] = visit
        started = workflow.now()
        target: str | None = None
        if step.kind in ASKING_KINDS:
            await self._check_budget()
        if step.kind in ("ask", "parallel") and step.per_branch():
            output = await self._parallel_step(step, visit)
        elif step.kind in ("ask", "parallel"):
            output = await self._ask_step(step, visit)
        elif step.kind == "map":
            output = await self._map_step(step, visit)
        elif step.kind == "handoff":
            output = await self._handoff_step(step, visit)
        elif step.kind == "switch":
            output, target = self._switch(step, visit)
        elif step.kind == "emit":
            output = await self._emit(step, visit)
        else:
            output, target = await self._approval(step, visit)
            if state.status != FlowStatus.RUNNING:
                self._record_step(step, visit, started, StepStatus.COMPLETED, output)
                return None
        self._record_step(step, visit, started, StepStatus.COMPLETED, output)
        payload = output.get("payload")
        if isinstance(payload, dict) and step.kind not in ("switch", "approval"):
            state.last_payload = payload
        await self._audit(
            "flow.step.completed", {"step": step.id, "kind": step.kind, "visit": visit}
        )
        target = target if target is not None else step.next
        if target is not None:
            return None if target == END else target
        ids = [s.id for s in self._input.flow.steps]
        position = ids.index(step.id) + 1
        return ids[position] if position < len(ids) else None

    async def _check_budget(self) -> None:
        """A run that spent its budget asks no more (agents refuse its records anyway):
        checked before each attempt of a step that asks."""
        budget = self._input.flow.token_budget
        if budget is None:
            return
        used = await workflow.execute_local_activity_method(
            StateActivities.flow_run_tokens, self._id, **LOOKUP_LOCAL_ACTIVITY
        )
        if used >= budget:
            raise StepFailed(
                f"the run used {used} of its {budget}-token LLM budget "
                f"(flows[{self._input.flow.name}].token_budget)"
            )

    def _record_step(
        self,
        step: FlowStep,
        visit: int,
        started: datetime,
        status: StepStatus,
        output: dict[str, Any],
        error: str | None = None,
    ) -> None:
        self._state.steps[step.id] = output
        self._state.history.append(
            StepRun(
                step=step.id,
                kind=step.kind,
                visit=visit,
                status=status,
                output=output,
                started_at=started,
                ended_at=workflow.now(),
                error=error,
            )
        )

    def _render(
        self, template: dict[str, Any] | None, view: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A payload from a template (``$.`` values are expressions over ``view``, the run
        state by default); None: the previous step's payload (the run's input first)."""
        state = self._state
        if template is None:
            return dict(state.last_payload if state.last_payload is not None else state.input)
        view = view if view is not None else state.expression_view()
        return {
            key: jmespath.search(value.removeprefix(EXPRESSION_PREFIX), view)
            if is_expression(value)
            else value
            for key, value in template.items()
        }

    async def _ask_step(self, step: FlowStep, visit: int) -> dict[str, Any]:
        branches = step.branches()
        needed = step.needed()
        for attempt in range(step.retries + 1):
            if attempt:
                await self._check_budget()
            requests = await self._ask_all(step.id, visit, attempt, branches)
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    functools.partial(self._answered, requests, needed),
                    timeout=timedelta(seconds=step.timeout_s),
                )
            got = [self._replies.get(r) for r in requests]
            self._stop_waiting()
            if sum(g is not None for g in got) >= needed:
                return self._ask_output(step, branches, got)
            if attempt < step.retries:
                await self._audit(
                    "flow.step.retried", {"step": step.id, "visit": visit, "attempt": attempt + 1}
                )
        answered = sum(g is not None for g in got)
        raise StepFailed(
            f"step {step.id!r}: {answered} of {len(branches)} replies within "
            f"{step.timeout_s:g} s ({needed} needed, {step.retries + 1} attempt(s))"
        )

    def _ask_output(
        self, step: FlowStep, branches: list[AskSpec], got: list[Record | None]
    ) -> dict[str, Any]:
        if step.kind == "ask":
            reply = got[0]
            assert reply is not None
            return {
                "agent": branches[0].ask,
                "payload": reply.payload,
                "record_id": reply.id,
                "type": reply.type,
            }
        out = [
            {
                "agent": branch.ask,
                "status": "replied" if reply is not None else "pending",
                "payload": reply.payload if reply is not None else None,
                "record_id": reply.id if reply is not None else None,
            }
            for branch, reply in zip(branches, got, strict=True)
        ]
        return {
            "branches": out,
            "payload": {"replies": [r.payload for r in got if r is not None]},
        }

    async def _ask_all(
        self, step_id: str, visit: int, attempt: int, branches: list[AskSpec]
    ) -> list[str]:
        """Publish one request per branch; replies are matched once this returns (the
        requests are registered first, so an early reply is never missed)."""
        requests: list[tuple[AskSpec, Record]] = []
        for i, branch in enumerate(branches):
            rid = derived_id(self._id, step_id, visit, attempt, i)
            record = self._record(rid, branch.type, self._render(branch.input))
            waiting = Outstanding(
                request_id=rid, step=step_id, visit=visit, branch=i, agent=branch.ask
            )
            self._waiting[rid] = waiting
            self._state.outstanding.append(waiting)
            requests.append((branch, record))
        await asyncio.gather(*(self._ask(b.ask, r, step_id) for b, r in requests))
        return [r.id for _, r in requests]

    async def _ask(self, agent: str, record: Record, step_id: str) -> None:
        topic = await self._topic_of(agent)
        await self._publish(topic, record, {"flow.step": step_id, "flow.agent": agent})

    async def _topic_of(self, agent: str) -> str:
        """The topic an agent is asked on: the first it subscribes to (read from the org's
        state, so an agent created after the run started can be asked too)."""
        if agent not in self._topics:
            try:
                ref = AgentRef(org=self._input.org, agent=agent)
                if workflow.patched(LOCAL_EFFECTS_PATCH):
                    loaded = await workflow.execute_local_activity_method(
                        StateActivities.load_agent, ref, **LOOKUP_LOCAL_ACTIVITY
                    )
                else:
                    loaded = await workflow.execute_activity_method(
                        StateActivities.load_agent, ref, **LOOKUP_ACTIVITY
                    )
            except ActivityError as err:
                raise StepFailed(f"agent {agent!r}: {err.cause or err}") from None
            if not loaded.spec.subscribes:
                raise StepFailed(f"agent {agent!r} subscribes to no topic, it cannot be asked")
            self._topics[agent] = loaded.spec.subscribes[0]
        return self._topics[agent]

    def _answered(self, requests: list[str], needed: int) -> bool:
        return sum(r in self._replies for r in requests) >= needed

    def _stop_waiting(self) -> None:
        """The step stopped waiting: replies still to come are late ones."""
        for rid, waiting in self._waiting.items():
            if rid not in self._replies:
                self._past[rid] = waiting
        self._waiting.clear()
        self._replies.clear()
        self._state.outstanding.clear()

    # -- per-branch fan-out (map, parallel with own timeouts, handoff) ------------------------

    async def _fan_out(
        self,
        step: FlowStep,
        visit: int,
        attempt: int,
        branches: list[_Branch],
        needed: int,
        limit: int | None = None,
        tag: str | None = None,
    ) -> list[_Branch]:
        """Ask every branch (at most ``limit`` awaiting at once), each on its own clock,
        until ``needed`` replied or that can no longer happen. Requests whose step stopped
        waiting become late ones (the caller's ``_stop_waiting``)."""
        parts: tuple[object, ...] = (self._id, step.id, visit, attempt)
        if tag is not None:
            parts += (tag,)
        rids = [derived_id(*parts, i) for i in range(len(branches))]
        limit = limit or len(branches)
        deadlines: dict[int, datetime] = {}
        started = 0
        while True:
            batch: list[int] = []
            while started < len(branches) and len(deadlines) + len(batch) < limit:
                batch.append(started)
                started += 1
            if batch:
                await self._ask_batch(step.id, visit, [(i, rids[i], branches[i]) for i in batch])
                for i in batch:
                    branches[i].status = "pending"
                    deadlines[i] = workflow.now() + timedelta(seconds=branches[i].timeout_s)
            replied = sum(b.status == "replied" for b in branches)
            timed_out = sum(b.status == "timed_out" for b in branches)
            if replied >= needed or len(branches) - timed_out < needed or not deadlines:
                return branches
            earliest = min(deadlines.values())
            fired = False
            try:
                await workflow.wait_condition(
                    lambda: any(rids[i] in self._replies for i in deadlines),
                    timeout=max(earliest - workflow.now(), timedelta(milliseconds=1)),
                )
            except TimeoutError:
                fired = True
            now = workflow.now()
            for i in sorted(deadlines):
                if rids[i] in self._replies:
                    branches[i].status, branches[i].reply = "replied", self._replies[rids[i]]
                    del deadlines[i]
                    self._drop_outstanding(rids[i])
                elif deadlines[i] <= now or (fired and deadlines[i] <= earliest):
                    branches[i].status = "timed_out"
                    del deadlines[i]
                    self._give_up(rids[i])

    async def _ask_batch(
        self, step_id: str, visit: int, requests: list[tuple[int, str, _Branch]]
    ) -> None:
        """Register, then publish, the requests: one publish per agent asked (a 100-way
        ``map`` to one agent is one activity, not a hundred)."""
        by_agent: dict[str, list[Record]] = {}
        for i, rid, branch in requests:
            waiting = Outstanding(
                request_id=rid, step=step_id, visit=visit, branch=i, agent=branch.agent
            )
            self._waiting[rid] = waiting
            self._state.outstanding.append(waiting)
            by_agent.setdefault(branch.agent, []).append(
                self._record(rid, branch.type, branch.payload)
            )
        topics = [await self._topic_of(agent) for agent in by_agent]
        await asyncio.gather(
            *(
                self._run_publish(
                    PublishInput(
                        org=self._input.org,
                        topic=topic,
                        records=records,
                        headers={
                            "flow.workflow_id": self._id,
                            "flow.step": step_id,
                            "flow.agent": agent,
                        },
                    )
                )
                for topic, (agent, records) in zip(topics, by_agent.items(), strict=True)
            )
        )

    def _give_up(self, rid: str) -> None:
        """One branch's own timeout passed: a reply to it from now on is a late one."""
        waiting = self._waiting.pop(rid, None)
        if waiting is not None:
            self._past[rid] = waiting
        self._drop_outstanding(rid)

    def _drop_outstanding(self, rid: str) -> None:
        """A branch that ended no longer shows as awaited (``waiting_for``)."""
        self._state.outstanding = [o for o in self._state.outstanding if o.request_id != rid]

    async def _gather(
        self,
        step: FlowStep,
        visit: int,
        make: Callable[[], list[_Branch]],
        needed: int,
        limit: int | None = None,
        tag: str | None = None,
    ) -> list[_Branch]:
        """``_fan_out`` with the step's retries (each attempt new requests, new ids)."""
        for attempt in range(step.retries + 1):
            if attempt:
                await self._check_budget()
            branches = await self._fan_out(step, visit, attempt, make(), needed, limit, tag)
            self._stop_waiting()
            if sum(b.status == "replied" for b in branches) >= needed:
                return branches
            if attempt < step.retries:
                await self._audit(
                    "flow.step.retried", {"step": step.id, "visit": visit, "attempt": attempt + 1}
                )
        replied = sum(b.status == "replied" for b in branches)
        timed_out = [b for b in branches if b.status == "timed_out"]
        waits = sorted({f"{b.timeout_s:g} s" for b in timed_out}) or [f"{step.timeout_s:g} s"]
        raise StepFailed(
            f"step {step.id!r}: {replied} of {len(branches)} replies ({needed} needed); "
            f"{len(timed_out)} timed out (after {', '.join(waits)}), "
            f"{step.retries + 1} attempt(s)"
        )

    def _branch_rows(self, branches: list[_Branch]) -> list[dict[str, Any]]:
        return [
            {
                "agent": b.agent,
                "status": b.status,
                "payload": b.reply.payload if b.reply is not None else None,
                "record_id": b.reply.id if b.reply is not None else None,
            }
            for b in branches
        ]

    async def _parallel_step(self, step: FlowStep, visit: int) -> dict[str, Any]:
        """A ``parallel`` step whose branches have their own timeouts."""

        def make() -> list[_Branch]:
            return [
                _Branch(
                    agent=b.ask,
                    type=b.type,
                    payload=self._render(b.input),
                    timeout_s=b.timeout_s or step.timeout_s,
                )
                for b in step.branches()
            ]

        branches = await self._gather(step, visit, make, step.needed())
        return {
            "branches": self._branch_rows(branches),
            "payload": {"replies": [b.reply.payload for b in branches if b.reply is not None]},
        }

    async def _map_step(self, step: FlowStep, visit: int) -> dict[str, Any]:
        """One request per item of the list ``over`` names; results in the items' order."""
        spec = step.map
        assert spec is not None
        view = self._state.expression_view()
        items = jmespath.search(spec.expression, view)
        if not isinstance(items, list):
            raise StepFailed(
                f"step {step.id!r}: map.over {spec.over!r} is not a list "
                f"(it is {type(items).__name__ if items is not None else 'null'})"
            )
        if len(items) > MAX_MAP_ITEMS:
            raise StepFailed(
                f"step {step.id!r}: map.over has {len(items)} items, more than {MAX_MAP_ITEMS}"
            )
        needed = gather_needed(step.gather, len(items))
        assert needed is not None  # checked with the spec
        if needed > len(items):
            raise StepFailed(
                f"step {step.id!r}: gather {step.gather} needs more replies than the "
                f"{len(items)} item(s) of map.over"
            )

        def payload(index: int, item: Any) -> dict[str, Any]:
            if spec.input is None:
                return {"item": item, "index": index}
            return self._render(spec.input, {**view, "item": item, "index": index})

        def make() -> list[_Branch]:
            return [
                _Branch(
                    agent=spec.ask,
                    type=spec.type,
                    payload=payload(i, item),
                    timeout_s=spec.timeout_s or step.timeout_s,
                )
                for i, item in enumerate(items)
            ]

        branches = await self._gather(step, visit, make, needed, spec.max_concurrency)
        rows = self._branch_rows(branches)
        for i, row in enumerate(rows):
            row["index"] = i
        return {
            "branches": rows,
            "payload": {"results": [b.reply.payload if b.reply else None for b in branches]},
        }

    async def _handoff_step(self, step: FlowStep, visit: int) -> dict[str, Any]:
        """Ask the supervisor which of the choices goes next, check its answer, ask that
        agent. A choice outside the step's ``choices`` is recorded and fails the step."""
        spec = step.handoff
        assert spec is not None
        task = self._render(spec.input)
        ask = {"task": task, "choices": spec.choices, "step": step.id, "answer": HANDOFF_ANSWER}
        supervisor = f"agent:{spec.supervisor}"

        def to_supervisor() -> list[_Branch]:
            return [_Branch(spec.supervisor, spec.type, ask, step.timeout_s)]

        asked = await self._gather(step, visit, to_supervisor, 1, tag="supervisor")
        answer = asked[0].reply
        assert answer is not None
        chosen, reason = answer.payload.get("next"), answer.payload.get("reason")
        reason = reason if isinstance(reason, str) else ""
        if not isinstance(chosen, str) or chosen not in spec.choices:
            named = repr(chosen) if chosen is not None else "no agent (payload.next)"
            why = f"supervisor {spec.supervisor!r} named {named}, not one of " + ", ".join(
                spec.choices
            )
            self._decide(step.id, visit, "(refused)", supervisor, why)
            await self._audit(
                "flow.handoff.refused",
                {"step": step.id, "visit": visit, "supervisor": spec.supervisor, "named": chosen},
            )
            raise StepFailed(f"step {step.id!r}: {why}")
        self._decide(step.id, visit, chosen, supervisor, reason)
        await self._audit(
            "flow.decision",
            {"step": step.id, "visit": visit, "choice": chosen, "by": supervisor, "reason": reason},
        )
        given = answer.payload.get("input")
        payload = dict(given) if isinstance(given, dict) else task

        def to_chosen() -> list[_Branch]:
            assert isinstance(chosen, str)
            return [_Branch(chosen, step.type, payload, step.timeout_s)]

        done = await self._gather(step, visit, to_chosen, 1, tag="handoff")
        reply = done[0].reply
        assert reply is not None
        return {
            "agent": chosen,
            "supervisor": spec.supervisor,
            "reason": reason,
            "payload": reply.payload,
            "record_id": reply.id,
            "type": reply.type,
        }

    def _switch(self, step: FlowStep, visit: int) -> tuple[dict[str, Any], str | None]:
        assert step.switch is not None
        view = self._state.expression_view()
        for i, case in enumerate(step.switch):
            if case.when is None or _truthy(jmespath.search(case.when, view)):
                self._decide(step.id, visit, case.goto, "system:switch", case.when or "default")
                return {"goto": case.goto, "case": i}, case.goto
        self._decide(step.id, visit, "(next)", "system:switch", "no case matched")
        return {"goto": None, "case": None}, None

    def _decide(self, step: str, visit: int, choice: str, by: str, reason: str) -> Decision:
        decision = Decision(
            step=step, visit=visit, choice=choice, by=by, reason=reason, at=workflow.now()
        )
        self._state.decisions.append(decision)
        return decision

    async def _emit(self, step: FlowStep, visit: int) -> dict[str, Any]:
        assert step.emit is not None
        payload = self._render(step.emit.payload)
        record = self._record(derived_id(self._id, step.id, visit, "emit"), step.emit.type, payload)
        await self._publish(step.emit.topic, record, {"flow.step": step.id})
        return {"payload": payload, "record_id": record.id, "topic": step.emit.topic}

    async def _approval(self, step: FlowStep, visit: int) -> tuple[dict[str, Any], str | None]:
        approval = step.approval
        assert approval is not None
        self._approval_step, self._decision = step.id, None
        approval_id: str | None = None
        if workflow.patched(APPROVALS_RECORDED_PATCH):
            approval_id = "ap-" + derived_id(self._id, step.id, visit).replace("-", "")[:10]
            await self._approval_requested(approval_id, step, approval.timeout_s, approval.default)
        try:
            await workflow.wait_condition(
                lambda: self._decision is not None,
                timeout=timedelta(seconds=approval.timeout_s),
            )
            decision = self._decision
        except TimeoutError:
            decision = None
        self._approval_step = None
        if decision is None:
            approved, by, reason = approval.default == "approve", "system:timeout", "timed out"
        else:
            approved, by, reason = decision.approve, decision.by, decision.reason
        choice = "approve" if approved else "deny"
        if approval_id is not None:
            await self._approval_decided(approval_id, step, approved, by, reason)
        self._decide(step.id, visit, choice, by, reason)
        await self._audit(
            "flow.decision",
            {"step": step.id, "visit": visit, "choice": choice, "by": by, "reason": reason},
        )
        output: dict[str, Any] = {
            "approved": approved,
            "by": by,
            "reason": reason,
            "timed_out": decision is None,
        }
        if approved:
            return output, None
        if approval.on_deny is not None:
            return output, approval.on_deny
        state = self._state
        state.status, state.failure, state.failed_step = (
            FlowStatus.DENIED,
            f"step {step.id!r} denied by {by}" + (f": {reason}" if reason else ""),
            step.id,
        )
        await self._compensate()
        await self._audit("flow.denied", {"step": step.id, "by": by, "reason": reason})
        return output, None

    # -- failure ------------------------------------------------------------------------------

    async def _fail(self, step: FlowStep, reason: str) -> None:
        """Compensate, dead-letter the run's provenance, end failed."""
        state = self._state
        state.status, state.failure, state.failed_step = FlowStatus.FAILED, reason, step.id
        visit = state.visits.get(step.id, 1)
        self._record_step(step, visit, workflow.now(), StepStatus.FAILED, {}, error=reason)
        await self._compensate()
        input = self._input
        provenance: dict[str, Any] = {
            "flow": input.flow.name,
            "run": input.run,
            "workflow_id": self._id,
            "failed_step": step.id,
            "reason": reason,
            "input": state.input,
            "completed_steps": [r.step for r in state.history if r.status == StepStatus.COMPLETED],
            "compensated": state.compensated,
        }
        await self._run_publish(
            PublishInput(
                org=input.org,
                topic=DLQ_TOPIC,
                records=[self._record(derived_id(self._id, "dlq"), "flow.failed", provenance)],
                headers={
                    "dlq.reason": "flow-failed",
                    "dlq.error": reason[:500],
                    "dlq.workflow_id": self._id,
                    "dlq.flow": input.flow.name,
                    "dlq.step": step.id,
                },
            )
        )
        await self._audit("flow.failed", {"step": step.id, "reason": reason})

    async def _compensate(self) -> None:
        """Each completed step's ``compensate`` in reverse order, then ``on_failure``;
        each waits a while for its answer, and a silent one never stops the others."""
        state, flow = self._state, self._input.flow
        asks: list[tuple[str, AskSpec, dict[str, Any]]] = []
        for run in reversed(state.history):
            step = flow.step(run.step)
            if run.status == StepStatus.COMPLETED and step is not None and step.compensate:
                asks.append((run.step, step.compensate, run.output))
        asks.extend(("on_failure", ask, {}) for ask in flow.on_failure)
        for i, (step_id, ask, output) in enumerate(asks):
            rid = derived_id(self._id, "compensate", i)
            payload = (
                self._render(ask.input)
                if ask.input is not None
                else {
                    "flow": flow.name,
                    "run": self._input.run,
                    "failed_step": state.failed_step,
                    "reason": state.failure,
                    "step": step_id,
                    "output": output,
                }
            )
            record = self._record(rid, ask.type, payload)
            waiting = Outstanding(
                request_id=rid, step=f"compensate:{step_id}", visit=1, branch=0, agent=ask.ask
            )
            self._waiting[rid] = waiting
            state.outstanding.append(waiting)
            try:
                await self._ask(ask.ask, record, waiting.step)
                await workflow.wait_condition(
                    functools.partial(self._answered, [rid], 1), timeout=COMPENSATION_TIMEOUT
                )
                state.compensated.append(f"{step_id}:{ask.ask}")
            except (TimeoutError, StepFailed) as exc:
                workflow.logger.warning("compensation %s by %s: %s", step_id, ask.ask, exc)
            self._stop_waiting()
        if asks:
            await self._audit("flow.compensated", {"compensated": list(state.compensated)})

    # -- effects ------------------------------------------------------------------------------

    def _approval_subject(self, step: FlowStep) -> str:
        return f"flow {self._input.flow.name} run {self._input.run} step {step.id}"

    async def _approval_requested(
        self, approval_id: str, step: FlowStep, timeout_s: float, default: str
    ) -> None:
        subject = self._approval_subject(step)
        await workflow.execute_local_activity_method(
            ApprovalActivities.record_approval_request,
            ApprovalRequested(
                org=self._input.org,
                id=approval_id,
                kind=ApprovalKind.FLOW_STEP,
                subject=subject,
                requested_by=f"flow:{self._input.flow.name}",
                deadline=workflow.now().timestamp() + timeout_s,
                timeout_default="approve" if default == "approve" else "deny",
                request={
                    "workflow_id": self._id,
                    "flow": self._input.flow.name,
                    "run": self._input.run,
                    "step": step.id,
                },
            ),
            **FLOW_LOCAL_ACTIVITY,
        )
        payload = {
            "id": approval_id,
            "kind": ApprovalKind.FLOW_STEP.value,
            "subject": subject,
            "requested_by": f"flow:{self._input.flow.name}",
            "timeout_s": timeout_s,
            "default": default,
        }
        await self._publish(
            APPROVALS_TOPIC, self._record(str(workflow.uuid4()), "approval.requested", payload)
        )

    async def _approval_decided(
        self, approval_id: str, step: FlowStep, approved: bool, by: str, reason: str
    ) -> None:
        decided = ApprovalDecided(
            id=approval_id,
            kind=ApprovalKind.FLOW_STEP,
            subject=self._approval_subject(step),
            approved=approved,
            by=by,
            reason=reason,
            outcome="the run goes on" if approved else "the step is denied",
        )
        await workflow.execute_local_activity_method(
            ApprovalActivities.record_approval_verdict,
            VerdictInput(org=self._input.org, decided=decided),
            **FLOW_LOCAL_ACTIVITY,
        )
        await self._publish(
            APPROVALS_TOPIC,
            self._record(
                str(workflow.uuid4()), "approval.decided", decided.model_dump(mode="json")
            ),
        )

    def _record(self, rid: str, type_: str, payload: dict[str, Any]) -> Record:
        return Record(
            id=rid,
            type=type_,
            org=self._input.org,
            source=SOURCE,
            correlation_id=self._id,
            timestamp=workflow.now(),
            payload=payload,
        )

    async def _publish(
        self, topic: str, record: Record, headers: dict[str, str] | None = None
    ) -> None:
        await self._run_publish(
            PublishInput(
                org=self._input.org,
                topic=topic,
                records=[record],
                headers={"flow.workflow_id": self._id, **(headers or {})},
            )
        )

    async def _audit(self, type_: str, payload: dict[str, Any]) -> None:
        """Announce a change of the run; the id is deterministic, so a retry republishes it."""
        record = Record(
            id=str(workflow.uuid4()),
            type=type_,
            org=self._input.org,
            source="system:flow-workflow",
            correlation_id=self._id,
            timestamp=workflow.now(),
            payload={"flow": self._input.flow.name, "run": self._input.run, **payload},
        )
        await self._run_publish(
            PublishInput(org=self._input.org, topic=AUDIT_TOPIC, records=[record])
        )
        self._state.audit_records += 1

    async def _run_publish(self, input: PublishInput) -> None:
        """Every record the run publishes goes through here: ids are deterministic, so a
        local activity retried after a crash republishes the very same records."""
        if workflow.patched(LOCAL_EFFECTS_PATCH):
            await workflow.execute_local_activity_method(
                KafkaActivities.publish, input, **FLOW_LOCAL_ACTIVITY
            )
        else:
            await workflow.execute_activity_method(KafkaActivities.publish, input, **FLOW_ACTIVITY)

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        limit = self._input.continue_as_new_after_steps
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > HISTORY_EVENTS_BEFORE_CONTINUE
            or (limit is not None and self._steps_this_run >= limit)
        )

    # -- handlers -----------------------------------------------------------------------------

    @workflow.signal(name=FlowSignal.REPLY)
    def reply(self, replies: FlowReplies) -> None:
        """Match each record to the request it answers (its causation id)."""
        state = self._state
        for record in replies.records:
            cause = record.causation_id or ""
            if cause in self._waiting:
                self._replies.setdefault(cause, record)
            elif cause in self._past:
                if any(late.record.id == record.id for late in state.late):
                    continue  # a redelivery
                past = self._past[cause]
                state.late.append(
                    LateReply(
                        request_id=cause,
                        step=past.step,
                        agent=past.agent,
                        record=record,
                        received_at=workflow.now(),
                    )
                )
                del state.late[:-MAX_LATE_REPLIES]
            else:
                state.unmatched += 1

    @workflow.update(name=FlowUpdate.DECIDE)
    def decide(self, decision: ApprovalDecision) -> ApprovalDecision:
        self._decision = decision
        return decision

    @decide.validator
    def _check_decision(self, decision: ApprovalDecision) -> None:
        if self._approval_step is None or self._decision is not None:
            raise ApplicationError(
                f"run {self._input.run} is not waiting for an approval",
                type=RefusalType.CONFLICT,
                non_retryable=True,
            )
        if decision.step != self._approval_step:
            raise ApplicationError(
                f"run {self._input.run} waits for approval of step {self._approval_step!r}, "
                f"not {decision.step!r}",
                type=RefusalType.NOT_FOUND,
                non_retryable=True,
            )

    @workflow.query(name=FlowQuery.STATE)
    def report(self) -> FlowReport:
        waiting = sorted({w.agent for w in self._state.outstanding})
        if self._approval_step is not None:
            waiting.append(f"approval:{self._approval_step}")
        return FlowReport(
            org=self._input.org,
            flow=self._input.flow.name,
            run=self._input.run,
            workflow_id=self._id,
            state=self._state,
            waiting_for=waiting,
        )
