"""OrgWorkflow: the meta-agent that owns an org's topics and agents.

Its input is the org spec itself, so ``temporal workflow start --type OrgWorkflow
--input '<spec as JSON>'`` starts an org exactly as ``kafkaorg org start`` does.
After applying the spec it serves updates (apply a changed spec, create an
agent or topic, pause/resume/retire an agent). Every change is: validate (in an
update validator, so a refusal never reaches history) → write PostgreSQL (an
idempotent activity) → act on Kafka/Temporal → announce on ``<org>.sys.audit``.
Permissions and quotas are enforced here, not in clients.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.approvals import ApprovalActivities, ApprovalRequested, VerdictInput
    from activities.kafka import (
        EnsureTopicsInput,
        KafkaActivities,
        PublishInput,
        TopicToEnsure,
    )
    from activities.lifecycle import AgentsRef, LifecycleActivities
    from activities.state import (
        AgentStatusChange,
        RegisterAgentInput,
        SaveTopicInput,
        StateActivities,
    )
    from activities.tool_registry import (
        ApproveInput,
        RollbackInput,
        ToolActivities,
    )
    from kafkaorg import org_rules
    from kafkaorg.contracts import (
        AgentAction,
        AgentCommand,
        AgentInfo,
        AgentRegistration,
        AgentStatus,
        ApprovalDecided,
        ApprovalKind,
        ApprovalVerdict,
        ApproveToolRequest,
        ChangeResult,
        CreateAgentRequest,
        CreateToolRequest,
        CreateTopicRequest,
        OrgInput,
        OrgPhase,
        OrgQuery,
        OrgSignal,
        OrgState,
        OrgStatus,
        OrgStopRequest,
        OrgUpdate,
        PendingApproval,
        PublishRequest,
        RefusalType,
        RollbackToolRequest,
    )
    from kafkaorg.contracts.approvals import TIMEOUT_DECIDER
    from kafkaorg.contracts.org import NOT_HELD
    from kafkaorg.names import (
        ORG_ATTR,
        ORG_WORKFLOW_TYPE,
        kafka_topic,
    )
    from kafkaorg.org_rules import OrgView
    from kafkaorg.reconcile import SpecDiff, diff_specs
    from kafkaorg.spec import (
        ApprovalRule,
        OrgSpec,
        semantic_problems,
    )

from workflows import org_reconcile
from workflows.org_effects import OrgEffects
from workflows.refusals import check, refusals_only

__all__ = [
    "AgentCommand",
    "AgentInfo",
    "ApproveToolRequest",
    "ChangeResult",
    "CreateAgentRequest",
    "CreateToolRequest",
    "CreateTopicRequest",
    "OrgInput",
    "OrgState",
    "OrgStatus",
    "OrgStopRequest",
    "OrgWorkflow",
    "RollbackToolRequest",
]

HISTORY_EVENTS_BEFORE_CONTINUE = 5000
ARCHIVE_SCHEDULE_PATCH = "archive-schedule"
"""Orgs whose histories began before the archive reach ``run`` with no schedule."""
_STATUS_AFTER = {
    AgentAction.PAUSE: AgentStatus.PAUSED,
    AgentAction.RESUME: AgentStatus.RUNNING,
    AgentAction.RETIRE: AgentStatus.RETIRED,
}


@workflow.defn(name=ORG_WORKFLOW_TYPE)
class OrgWorkflow:
    @workflow.init
    def __init__(self, input: OrgInput) -> None:
        self._spec = OrgSpec.model_validate(input.model_dump(by_alias=True, exclude={"state"}))
        self._state = input.state or OrgState()
        self._phase = OrgPhase.RUNNING if self._state.applied else OrgPhase.STARTING
        self._stop: OrgStopRequest | None = None
        self._lock = asyncio.Lock()
        self._effects = OrgEffects(self._spec.org, self._state)
        self._next_reconcile = 0.0
        self._approvals_changed = False

    # ---- run ---------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: OrgInput) -> OrgStatus:
        if workflow.info().typed_search_attributes.get(ORG_ATTR) != self._spec.org:
            # Started by the plain temporal CLI: make the Web UI's org filter find it too.
            workflow.upsert_search_attributes([ORG_ATTR.value_set(self._spec.org)])
        if not self._state.applied:
            problems = semantic_problems(self._spec)
            if problems:
                self._phase = OrgPhase.REFUSED
                raise ApplicationError(
                    "invalid org spec: " + "; ".join(problems),
                    type=RefusalType.INVALID_SPEC.value,
                    non_retryable=True,
                )
            async with self._lock:
                await self._apply(self._spec, diff_specs(None, self._spec), first=True)
                self._state.applied = True
                self._phase = OrgPhase.RUNNING
        if not self._state.archive_scheduled and workflow.patched(ARCHIVE_SCHEDULE_PATCH):
            await self._effects.ensure_archive_schedule()
            self._state.archive_scheduled = True
        self._next_reconcile = self._now() + self._spec.reconcile_interval_s
        while True:
            # Wakes for drift repair every reconcile_interval_s, and at approvals' deadlines.
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: (
                        self._stop is not None
                        or self._continue_as_new_due()
                        or self._approvals_changed
                    ),
                    timeout=self._until_next_wake(),
                )
            self._approvals_changed = False
            if self._stop is not None or self._continue_as_new_due():
                break
            async with self._lock:
                await self._expire_approvals()
                if self._now() >= self._next_reconcile - 0.01:  # ms-precise clocks
                    await org_reconcile.repair_drift(self._effects, self._view)
                    self._next_reconcile = self._now() + self._spec.reconcile_interval_s
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self._stop is None:
            workflow.continue_as_new(
                OrgInput.model_validate(
                    {**self._spec.model_dump(by_alias=True), "state": self._state}
                )
            )
        async with self._lock:
            await self._shutdown(self._stop)
        return self.status()

    @staticmethod
    def _now() -> float:
        return workflow.now().timestamp()

    def _until_next_wake(self) -> timedelta:
        due = min([self._next_reconcile, *(p.deadline for p in self._state.approvals)])
        return timedelta(seconds=max(due - self._now(), 0.001))

    def _continue_as_new_due(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > HISTORY_EVENTS_BEFORE_CONTINUE
        )

    # ---- applying specs (workflows/org_reconcile.py) ----------------------------------

    async def _apply(self, spec: OrgSpec, diff: SpecDiff, *, first: bool = False) -> list[str]:
        summary = await org_reconcile.apply_spec(
            self._effects, self._state, self._spec, spec, diff, first=first
        )
        self._spec = spec
        return summary

    async def _shutdown(self, request: OrgStopRequest) -> None:
        self._phase = OrgPhase.STOPPING
        while self._state.approvals:  # nobody could carry them out after the stop
            pending = self._state.approvals.pop(0)
            await self._settle(pending, False, "system:org-stopped", request.reason)
        await org_reconcile.shut_down(self._effects, self._view, request)
        if self._state.archive_scheduled:
            await self._effects.final_archive()
        self._phase = OrgPhase.STOPPED

    # ---- updates -----------------------------------------------------------------------
    # Each update is checked twice by the same pure rules (kafkaorg/org_rules.py): in its
    # validator, and again under the lock, since requests that passed their validators
    # together are carried out one after another. Everything runs inside
    # ``_refusals_only``, so no refusal or bug can fail the workflow task.

    @workflow.update
    async def apply_spec(self, spec: OrgSpec) -> ChangeResult:
        """Carry out the diff between the running org and ``spec`` (``kafkaorg org apply``)."""
        with refusals_only():
            async with self._lock:
                check(org_rules.apply_spec_problems(self._view, spec))
                diff = diff_specs(self._spec, spec)
                same_tools = (self._spec.tools, self._spec.policy) == (spec.tools, spec.policy)
                if diff.is_empty and same_tools:
                    return ChangeResult(changed=False, summary=[])
                summary = await self._apply(spec, diff)
                return ChangeResult(changed=True, summary=summary)

    @apply_spec.validator
    def _validate_apply(self, spec: OrgSpec) -> None:
        with refusals_only():
            check(org_rules.apply_spec_problems(self._view, spec))

    @workflow.update
    async def repair_drift(self) -> ChangeResult:
        """Look for drift now instead of at the next interval, and repair it."""
        with refusals_only():
            async with self._lock:
                summary = await org_reconcile.repair_drift(self._effects, self._view)
                return ChangeResult(changed=bool(summary), summary=summary)

    @workflow.update
    async def create_agent(self, request: CreateAgentRequest) -> ChangeResult:
        with refusals_only():
            async with self._lock:
                now = workflow.now().timestamp()
                check(org_rules.create_agent_problems(self._view, request, now))
                kind = ApprovalKind.CREATE_AGENT
                rule = org_rules.needs_approval(self._view, kind, request.requested_by)
                if rule is not None:
                    return await self._hold(
                        kind, request.agent.name, request.requested_by, rule, create_agent=request
                    )
                return await self._create_agent(request, now)

    async def _create_agent(self, request: CreateAgentRequest, now: float) -> ChangeResult:
        parent = org_rules.requester(self._view, request.requested_by)
        registration = AgentRegistration(
            spec=request.agent,
            created_by=request.requested_by,
            parent_agent=parent,
            depth=self._view.depth(parent) + 1 if parent else 0,
        )
        registered = await self._effects.run(
            StateActivities.register_agent,
            RegisterAgentInput(org=self._spec.org, agent=registration),
        )
        self._state.dynamic_agents.append(registration)
        self._state.statuses[request.agent.name] = AgentStatus.RUNNING
        self._state.versions[request.agent.name] = registered.version
        if parent:
            self._state.spawn_times.append(now)
        await self._effects.run(
            LifecycleActivities.start_agents,
            AgentsRef(org=self._spec.org, agents=[request.agent.name]),
        )
        await self._effects.audit(
            "agent.created",
            {
                "agent": request.agent.name,
                "kind": request.agent.kind,
                "created_by": request.requested_by,
                "parent_agent": parent,
                "depth": registration.depth,
            },
        )
        return ChangeResult(
            changed=True,
            summary=[
                f"+ agent {request.agent.name} ({request.agent.kind}) by {request.requested_by}"
            ],
        )

    @create_agent.validator
    def _validate_create_agent(self, request: CreateAgentRequest) -> None:
        with refusals_only():
            now = workflow.now().timestamp()
            check(org_rules.create_agent_problems(self._view, request, now))

    @workflow.update
    async def change_agent(self, request: AgentCommand) -> ChangeResult:
        """Pause, resume or retire an agent (``kafkaorg agent pause|resume|stop``)."""
        with refusals_only():
            async with self._lock:
                check(org_rules.lifecycle_problems(self._view, request))
                status = _STATUS_AFTER[request.action]
                if self._view.status_of(request.agent) == status:
                    return ChangeResult(
                        changed=False, summary=[f"agent {request.agent} is {status}"]
                    )
                await self._effects.run(
                    StateActivities.set_agent_status,
                    AgentStatusChange(
                        org=self._spec.org,
                        agent=request.agent,
                        status=status,
                        reason=request.reason or None,
                    ),
                )
                self._state.statuses[request.agent] = status
                await self._effects.run(
                    LifecycleActivities.command_agent,
                    AgentCommand(
                        org=self._spec.org,
                        agent=request.agent,
                        action=request.action,
                        requested_by=request.requested_by,
                        reason=request.reason or f"{request.action} by {request.requested_by}",
                    ),
                )
                await self._effects.audit(
                    f"agent.{status}",
                    {"agent": request.agent, "by": request.requested_by, "reason": request.reason},
                )
                return ChangeResult(changed=True, summary=[f"agent {request.agent} is {status}"])

    @change_agent.validator
    def _validate_change_agent(self, request: AgentCommand) -> None:
        with refusals_only():
            check(org_rules.lifecycle_problems(self._view, request))

    @workflow.update
    async def create_topic(self, request: CreateTopicRequest) -> ChangeResult:
        with refusals_only():
            async with self._lock:
                check(org_rules.create_topic_problems(self._view, request))
                topic = request.topic
                await self._effects.run(
                    KafkaActivities.ensure_topics,
                    EnsureTopicsInput(
                        topics=[
                            TopicToEnsure(
                                kafka_topic=kafka_topic(self._spec.org, topic.name),
                                partitions=topic.partitions,
                                configs=topic.kafka_configs(),
                                topic_class=topic.topic_class,
                            )
                        ]
                    ),
                )
                await self._effects.run(
                    StateActivities.save_topic, SaveTopicInput(org=self._spec.org, topic=topic)
                )
                self._spec = self._spec.model_copy(update={"topics": [*self._spec.topics, topic]})
                await self._effects.audit(
                    "topic.created",
                    {
                        "topic": topic.name,
                        "class": topic.topic_class.value,
                        "partitions": topic.partitions,
                        "by": request.requested_by,
                    },
                )
                return ChangeResult(changed=True, summary=[f"+ topic {topic.name}"])

    @create_topic.validator
    def _validate_create_topic(self, request: CreateTopicRequest) -> None:
        with refusals_only():
            check(org_rules.create_topic_problems(self._view, request))

    @workflow.update
    async def create_tool(self, request: CreateToolRequest) -> ChangeResult:
        """A new version of a tool, tested in the sandbox; ``changed`` is False if it failed."""
        with refusals_only():
            async with self._lock:
                check(org_rules.create_tool_problems(self._view, request))
                kind = ApprovalKind.CREATE_TOOL
                rule = org_rules.needs_approval(self._view, kind, request.requested_by)
                if rule is not None:
                    return await self._hold(
                        kind, request.tool.name, request.requested_by, rule, create_tool=request
                    )
                return await self._create_tool(request)

    @workflow.update(name=OrgUpdate.HOLD_PUBLISH)
    async def hold_publish(self, request: PublishRequest) -> ChangeResult:
        """An agent's record to an audit-class topic, held when the policy says so.

        Asked only when the agent's own check found a ``publish`` rule; the org decides
        again here. Not held: ``changed`` False and no ``pending_approval`` (the agent
        publishes it itself). Asked twice for one record (a retried activity), the
        first hold is the answer.
        """
        with refusals_only():
            async with self._lock:
                check(org_rules.publish_problems(self._view, request))
                rule = org_rules.publish_needs_approval(self._view, request)
                if rule is None:
                    return ChangeResult(changed=False, summary=[NOT_HELD])
                subject = org_rules.publish_subject(request)
                waiting = self._view.pending(ApprovalKind.PUBLISH, subject)
                if waiting is not None:
                    return ChangeResult(
                        changed=False, pending_approval=waiting.id, summary=["already held"]
                    )
                return await self._hold(
                    ApprovalKind.PUBLISH, subject, request.requested_by, rule, publish=request
                )

    async def _create_tool(self, request: CreateToolRequest) -> ChangeResult:
        line = await self._effects.register_tool(
            request.tool, self._spec, author=request.requested_by
        )
        return ChangeResult(changed=line.startswith("+"), summary=[line])

    @create_tool.validator
    def _validate_create_tool(self, request: CreateToolRequest) -> None:
        with refusals_only():
            check(org_rules.create_tool_problems(self._view, request))

    @workflow.update
    async def approve_tool(self, request: ApproveToolRequest) -> ChangeResult:
        """A person approves a tested tool version (``kafkaorg tool approve``): it goes live."""
        with refusals_only():
            async with self._lock:
                check(org_rules.approve_problems(self._view, request))
                recorded = await self._effects.run(
                    ToolActivities.approve,
                    ApproveInput(
                        org=self._spec.org,
                        name=request.tool,
                        version=request.version,
                        approved_by=request.approved_by,
                    ),
                )
                self._effects.remember_tool(request.tool, request.version, recorded.status)
                await self._effects.audit(
                    "tool.approved",
                    {
                        "tool": request.tool,
                        "version": request.version,
                        "by": request.approved_by,
                        "current_version": recorded.current_version,
                    },
                )
                return ChangeResult(
                    changed=True,
                    summary=[
                        f"tool {request.tool} v{request.version} is active "
                        f"(current version: {recorded.current_version})"
                    ],
                )

    @approve_tool.validator
    def _validate_approve_tool(self, request: ApproveToolRequest) -> None:
        with refusals_only():
            check(org_rules.approve_problems(self._view, request))

    @workflow.update
    async def rollback_tool(self, request: RollbackToolRequest) -> ChangeResult:
        """``kafkaorg tool rollback``: an earlier tested version becomes current again."""
        with refusals_only():
            async with self._lock:
                check(org_rules.rollback_problems(self._view, request))
                done = await self._effects.run(
                    ToolActivities.rollback,
                    RollbackInput(
                        org=self._spec.org,
                        name=request.tool,
                        version=request.version,
                        requested_by=request.requested_by,
                    ),
                )
                await self._effects.audit(
                    "tool.rolled_back",
                    {
                        "tool": request.tool,
                        "version": request.version,
                        "previous_version": done.previous_version,
                        "by": request.requested_by,
                    },
                )
                return ChangeResult(
                    changed=done.previous_version != request.version,
                    summary=[
                        f"tool {request.tool} is at v{request.version} "
                        f"(was v{done.previous_version})"
                    ],
                )

    @rollback_tool.validator
    def _validate_rollback_tool(self, request: RollbackToolRequest) -> None:
        with refusals_only():
            check(org_rules.rollback_problems(self._view, request))

    # ---- approvals (policy.approvals) ----------------------------------------------------
    # An agent's request the policy holds waits here, in the org's state, until a person
    # decides (the decide_approval update) or its deadline applies the rule's default.
    # Carrying it out re-checks the rules then: the org may have changed meanwhile.

    async def _hold(
        self,
        kind: ApprovalKind,
        subject: str,
        requested_by: str,
        rule: ApprovalRule,
        **request: CreateAgentRequest | CreateToolRequest | PublishRequest,
    ) -> ChangeResult:
        pending = PendingApproval.model_validate(
            {
                "id": f"ap-{workflow.uuid4().hex[:10]}",
                "kind": kind,
                "subject": subject,
                "requested_by": requested_by,
                "deadline": self._now() + rule.timeout_s,
                "default": rule.default,
                **request,
            }
        )
        self._state.approvals.append(pending)
        self._approvals_changed = True
        held = next(iter(request.values()))
        await self._effects.run(
            ApprovalActivities.record_approval_request,
            ApprovalRequested(
                org=self._spec.org,
                id=pending.id,
                kind=kind,
                subject=subject,
                requested_by=requested_by,
                deadline=pending.deadline,
                timeout_default=rule.default,
                request=held.model_dump(mode="json", exclude={"org"}),
            ),
        )
        await self._effects.announce_approval(
            "approval.requested",
            {
                "id": pending.id,
                "kind": kind.value,
                "subject": subject,
                "requested_by": requested_by,
                "timeout_s": rule.timeout_s,
                "default": rule.default,
            },
        )
        return ChangeResult(
            changed=False,
            pending_approval=pending.id,
            summary=[
                f"{kind.value} {subject} waits for a person's approval {pending.id} "
                f"(kafkaorg approval approve {self._spec.org} {pending.id}); "
                f"with no decision in {rule.timeout_s:g} s it is {rule.default}d"
            ],
        )

    async def _expire_approvals(self) -> None:
        now = self._now()
        for pending in [p for p in self._state.approvals if p.deadline <= now]:
            self._state.approvals.remove(pending)
            await self._settle(
                pending, pending.default == "approve", TIMEOUT_DECIDER, "no decision in time"
            )

    async def _settle(
        self, pending: PendingApproval, approve: bool, by: str, reason: str
    ) -> ApprovalDecided:
        """Carry out (or drop) a held request, then record and announce the verdict."""
        outcome = await self._carry_out(pending) if approve else "not carried out"
        decided = ApprovalDecided(
            id=pending.id,
            kind=pending.kind,
            subject=pending.subject,
            approved=approve,
            by=by,
            reason=reason,
            outcome=outcome,
        )
        await self._effects.run(
            ApprovalActivities.record_approval_verdict,
            VerdictInput(org=self._spec.org, decided=decided),
        )
        await self._effects.announce_approval("approval.decided", decided.model_dump(mode="json"))
        return decided

    async def _carry_out(self, pending: PendingApproval) -> str:
        now = self._now()
        if pending.create_agent is not None:
            problems = org_rules.create_agent_problems(self._view, pending.create_agent, now)
            if problems:
                return "refused now: " + "; ".join(str(p) for p in problems)
            done = await self._create_agent(pending.create_agent, now)
        elif pending.create_tool is not None:
            problems = org_rules.create_tool_problems(self._view, pending.create_tool)
            if problems:
                return "refused now: " + "; ".join(str(p) for p in problems)
            done = await self._create_tool(pending.create_tool)
        elif pending.publish is not None:
            held = pending.publish
            await self._effects.run(
                KafkaActivities.publish,
                PublishInput(org=self._spec.org, topic=held.topic, records=[held.record]),
            )
            return f"published {held.record.type} {held.record.id} to {held.topic}"
        else:  # pragma: no cover - PendingApproval always holds one request
            return "nothing to carry out"
        return "; ".join(done.summary)

    @workflow.update(name=OrgUpdate.DECIDE_APPROVAL)
    async def decide_approval(self, verdict: ApprovalVerdict) -> ApprovalDecided:
        """A person approves or denies a held request (``kafkaorg approval approve|deny``)."""
        with refusals_only():
            async with self._lock:
                check(org_rules.verdict_problems(self._view, verdict))
                pending = next(p for p in self._state.approvals if p.id == verdict.id)
                self._state.approvals.remove(pending)
                self._approvals_changed = True
                return await self._settle(pending, verdict.approve, verdict.by, verdict.reason)

    @decide_approval.validator
    def _validate_decide_approval(self, verdict: ApprovalVerdict) -> None:
        with refusals_only():
            check(org_rules.verdict_problems(self._view, verdict))

    @workflow.query(name=OrgQuery.APPROVALS)
    def approvals(self) -> list[PendingApproval]:
        return list(self._state.approvals)

    # ---- signals and queries -----------------------------------------------------------

    @workflow.signal(name=OrgSignal.STOP)
    def stop(self, request: OrgStopRequest) -> None:
        self._stop = request

    @workflow.signal(name=OrgSignal.AGENT_FAILED)
    def agent_failed(self, change: AgentStatusChange) -> None:
        """An agent reports it failed for good (already written to PostgreSQL by it)."""
        self._state.statuses[change.agent] = AgentStatus.FAILED

    @workflow.query(name=OrgQuery.STATUS)
    def status(self) -> OrgStatus:
        return OrgStatus(
            org=self._spec.org,
            phase=self._phase,
            topics=[t.name for t in self._spec.topics],
            agents=self._view.agent_names(),
            audit_records=self._state.audit_records,
        )

    @workflow.query(name=OrgQuery.SPEC)
    def spec(self) -> OrgSpec:
        return self._spec

    @workflow.query(name=OrgQuery.AGENTS)
    def agents(self) -> list[AgentInfo]:
        out = []
        for name in self._view.agent_names():
            spec = self._view.agent_spec(name)
            assert spec is not None
            dyn = self._view.registration(name)
            out.append(
                AgentInfo(
                    name=name,
                    kind=spec.kind,
                    status=self._view.status_of(name) or AgentStatus.STARTING,
                    version=self._state.versions.get(name, 1),
                    created_by=dyn.created_by if dyn else "spec",
                    subscribes=list(spec.subscribes),
                    publishes=list(spec.publishes),
                )
            )
        return out

    # ---- helpers -----------------------------------------------------------------------

    @property
    def _view(self) -> OrgView:
        return OrgView(self._spec, self._state)
