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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from pydantic import JsonValue
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, TemporalError

with workflow.unsafe.imports_passed_through():
    from activities.kafka import (
        DeleteTopicsInput,
        EnsureTopicsInput,
        KafkaActivities,
        PublishInput,
        TopicToEnsure,
    )
    from activities.lifecycle import AgentsRef, LifecycleActivities
    from activities.sandbox import (
        RUN_CODE_HEARTBEAT_TIMEOUT,
        RUN_CODE_RETRY,
        SandboxRequest,
        run_code_timeout,
    )
    from activities.state import (
        AgentStatusChange,
        OrgStatusChange,
        RegisterAgentInput,
        SaveTopicInput,
        StateActivities,
    )
    from activities.tools import (
        ApproveInput,
        ProposeInput,
        RollbackInput,
        TestResultInput,
        ToolActivities,
    )
    from kafkaorg import org_rules
    from kafkaorg.contracts import (
        LIVE_AGENT_STATUSES,
        AgentAction,
        AgentCommand,
        AgentInfo,
        AgentRegistration,
        AgentStatus,
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
        Refusal,
        RefusalType,
        RollbackToolRequest,
        ToolStatus,
        ToolVersionState,
    )
    from kafkaorg.envelope import Record
    from kafkaorg.names import (
        AUDIT_TOPIC,
        DLQ_TOPIC,
        ORG_ATTR,
        ORG_WORKFLOW_TYPE,
        SANDBOX_TASK_QUEUE,
        kafka_topic,
    )
    from kafkaorg.org_rules import OrgView
    from kafkaorg.reconcile import SpecDiff, diff_specs
    from kafkaorg.sandbox import SandboxPolicy, SandboxResult
    from kafkaorg.spec import (
        TOPIC_CLASS_CONFIGS,
        OrgSpec,
        ToolSpec,
        TopicClass,
        TopicSpec,
        semantic_problems,
    )
    from kafkaorg.tools import TestOutcome, outcome_of_tests, program_for_tests

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

_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10))
_TIMEOUT = timedelta(seconds=60)
HISTORY_EVENTS_BEFORE_CONTINUE = 5000
_STATUS_AFTER = {
    AgentAction.PAUSE: AgentStatus.PAUSED,
    AgentAction.RESUME: AgentStatus.RUNNING,
    AgentAction.RETIRE: AgentStatus.RETIRED,
}


@contextmanager
def _refusals_only() -> Iterator[None]:
    """Whatever goes wrong in a handler fails that request, never the workflow task.

    ``Refusal``s become typed ``ApplicationError``s; a bug (any other exception) is
    reported to the caller as ``InternalError`` instead of wedging the org, whose
    every later update, signal and timer would wait behind a failing task.
    """
    try:
        yield
    except Refusal as refusal:
        raise ApplicationError(str(refusal), type=refusal.type.value, non_retryable=True) from None
    except (FailureError, TemporalError):
        raise  # an ActivityError, or an ApplicationError already typed; non-determinism
    except Exception as exc:
        if workflow.in_workflow():
            workflow.logger.exception("org handler failed; the request is refused")
        raise ApplicationError(
            f"internal error ({type(exc).__name__}: {exc})",
            type=RefusalType.INTERNAL.value,
            non_retryable=True,
        ) from None


def _check(problems: list[Refusal]) -> None:
    """Refuse with every problem at once; the first one's type names the refusal."""
    if problems:
        raise Refusal("; ".join(str(p) for p in problems), problems[0].type)


@workflow.defn(name=ORG_WORKFLOW_TYPE)
class OrgWorkflow:
    @workflow.init
    def __init__(self, input: OrgInput) -> None:
        self._spec = OrgSpec.model_validate(input.model_dump(by_alias=True, exclude={"state"}))
        self._state = input.state or OrgState()
        self._phase = OrgPhase.RUNNING if self._state.applied else OrgPhase.STARTING
        self._stop: OrgStopRequest | None = None
        self._lock = asyncio.Lock()

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
        while True:
            try:
                await workflow.wait_condition(
                    lambda: self._stop is not None or self._continue_as_new_due(),
                    timeout=timedelta(seconds=self._spec.reconcile_interval_s),
                )
                break
            except TimeoutError:
                async with self._lock:
                    await self._repair_drift()
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

    def _continue_as_new_due(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > HISTORY_EVENTS_BEFORE_CONTINUE
        )

    # ---- applying specs ----------------------------------------------------------------

    async def _apply(self, spec: OrgSpec, diff: SpecDiff, *, first: bool = False) -> list[str]:
        old_topics = {t.name: t for t in self._spec.topics}
        old_tools = {} if first else {t.name: t for t in self._spec.tools}
        await self._ensure_topics(spec)
        saved = await self._activity(StateActivities.save_org, spec)
        self._spec = spec
        for name in saved.retired:
            self._state.statuses[name] = AgentStatus.RETIRED
        summary = diff.summary_lines()
        await self._audit(
            "org.applied" if first else "org.changed",
            {"changes": list(summary), "topics": list(saved.topics), "agents": list(saved.agents)},
        )
        for tool in spec.tools:
            old = old_tools.get(tool.name)
            if old is None or (old.code, old.tests) != (tool.code, tool.tests):
                summary.append(await self._register_tool(tool, spec))
        for name in saved.retired:
            await self._activity(
                LifecycleActivities.command_agent,
                AgentCommand(
                    org=spec.org,
                    agent=name,
                    action=AgentAction.RETIRE,
                    reason="removed from the org spec",
                ),
            )
            await self._audit("agent.retired", {"agent": name, "reason": "removed from spec"})
        for change in diff.agents_to_change:
            version = saved.versions.get(change.name, 1)
            await self._activity(
                LifecycleActivities.command_agent,
                AgentCommand(
                    org=spec.org,
                    agent=change.name,
                    action=AgentAction.UPDATE,
                    spec=change.spec,
                    version=version,
                ),
            )
            await self._audit(
                "agent.updated",
                {"agent": change.name, "version": version, "changes": list(change.changes)},
            )
        await self._delete_work_topics(
            [old_topics[n] for n in diff.topics_to_remove if n in old_topics]
        )
        new_agents = [a.name for a in diff.agents_to_add]
        if new_agents:
            await self._activity(
                LifecycleActivities.start_agents, AgentsRef(org=spec.org, agents=new_agents)
            )
        for agent in spec.agents:
            self._state.versions[agent.name] = saved.versions.get(agent.name, 1)
            if self._state.statuses.get(agent.name) in (None, AgentStatus.RETIRED):
                self._state.statuses[agent.name] = AgentStatus.RUNNING
        if first:
            await self._set_org_status("running")
        return summary

    async def _register_tool(self, tool: ToolSpec, spec: OrgSpec, author: str = "spec") -> str:
        """Propose a version, test it in the sandbox, record the outcome; say what happened.

        Only called for specs with tools, so orgs without any keep their command sequence.
        """
        proposed = await self._activity(
            ToolActivities.propose_version, ProposeInput(org=spec.org, tool=tool, author=author)
        )
        if proposed.status != "testing":  # this code and tests were tested before
            self._remember_tool(tool.name, proposed.version, proposed.status)
            return f"= tool {tool.name} v{proposed.version} ({proposed.status}, unchanged)"
        outcome = await self._test_tool(tool)
        recorded = await self._activity(
            ToolActivities.record_test_result,
            TestResultInput(
                org=spec.org,
                name=tool.name,
                version=proposed.version,
                passed=outcome.passed,
                result=outcome.model_dump(mode="json"),
                approval=spec.policy.tool_approval,
            ),
        )
        self._remember_tool(tool.name, recorded.version, recorded.status)
        if recorded.status == "failed":
            await self._audit(
                "tool.failed",
                {"tool": tool.name, "version": recorded.version, "reason": outcome.reason},
            )
            return f"! tool {tool.name} v{recorded.version} failed its tests: {outcome.reason}"
        await self._audit(
            "tool.registered",
            {
                "tool": tool.name,
                "version": recorded.version,
                "status": recorded.status,
                "tests": outcome.tests,
                "current_version": recorded.current_version,
            },
        )
        return f"+ tool {tool.name} v{recorded.version} ({recorded.status})"

    async def _test_tool(self, tool: ToolSpec) -> TestOutcome:
        try:
            result = await workflow.execute_activity(
                "run_code",
                SandboxRequest(code=program_for_tests(tool.source, tool.tests or "")),
                task_queue=SANDBOX_TASK_QUEUE,
                result_type=SandboxResult,
                start_to_close_timeout=run_code_timeout(SandboxPolicy()),
                heartbeat_timeout=RUN_CODE_HEARTBEAT_TIMEOUT,
                retry_policy=RUN_CODE_RETRY,
            )
        except ActivityError as err:
            return TestOutcome(passed=False, reason=f"sandbox: {err.cause or err}")
        return outcome_of_tests(result)

    def _remember_tool(self, name: str, version: int, status: ToolStatus) -> None:
        for known in self._state.tools:
            if (known.name, known.version) == (name, version):
                known.status = status
                return
        self._state.tools.append(ToolVersionState(name=name, version=version, status=status))

    async def _ensure_topics(self, spec: OrgSpec) -> None:
        wanted = [
            TopicToEnsure(
                kafka_topic=kafka_topic(spec.org, t.name),
                partitions=t.partitions,
                configs=t.kafka_configs(),
            )
            for t in spec.topics
        ]
        for name, topic_class in ((AUDIT_TOPIC, TopicClass.AUDIT), (DLQ_TOPIC, TopicClass.DLQ)):
            wanted.append(
                TopicToEnsure(
                    kafka_topic=kafka_topic(spec.org, name),
                    partitions=1,
                    configs=dict(TOPIC_CLASS_CONFIGS[topic_class]),
                )
            )
        await self._activity(KafkaActivities.ensure_topics, EnsureTopicsInput(topics=wanted))

    async def _delete_work_topics(self, removed: list[TopicSpec]) -> None:
        """Work topics go with their spec entry; audit and state topics are kept."""
        doomed = [
            kafka_topic(self._spec.org, t.name) for t in removed if t.topic_class is TopicClass.WORK
        ]
        if doomed:
            await self._activity(
                KafkaActivities.delete_topics, DeleteTopicsInput(kafka_topics=doomed)
            )
            await self._audit("topic.deleted", {"topics": list(doomed)})

    async def _shutdown(self, request: OrgStopRequest) -> None:
        self._phase = OrgPhase.STOPPING
        await self._activity(
            LifecycleActivities.stop_agents,
            AgentsRef(org=self._spec.org, agents=self._view.agent_names()),
        )
        if request.delete_work_topics:
            await self._delete_work_topics(list(self._spec.topics))
        await self._set_org_status("stopped", reason=request.reason)
        self._phase = OrgPhase.STOPPED

    async def _repair_drift(self) -> list[str]:
        """Recreate topics deleted behind the org's back and restart agents that stopped."""
        org = self._spec.org
        expected = [kafka_topic(org, t.name) for t in self._spec.topics]
        expected += [kafka_topic(org, AUDIT_TOPIC), kafka_topic(org, DLQ_TOPIC)]
        missing = await self._activity(
            KafkaActivities.missing_topics, DeleteTopicsInput(kafka_topics=expected)
        )
        should_run = [
            n for n in self._view.agent_names() if self._view.status_of(n) in LIVE_AGENT_STATUSES
        ]
        stopped = await self._activity(
            LifecycleActivities.stopped_agents, AgentsRef(org=org, agents=should_run)
        )
        if not missing and not stopped:
            return []
        if missing:
            await self._ensure_topics(self._spec)
        if stopped:
            await self._activity(
                LifecycleActivities.start_agents, AgentsRef(org=org, agents=list(stopped))
            )
        await self._audit(
            "org.drift-repaired",
            {"recreated_topics": list(missing), "restarted_agents": list(stopped)},
        )
        return [f"recreated topic {t}" for t in missing] + [f"restarted agent {a}" for a in stopped]

    async def _set_org_status(self, status: str, reason: str | None = None) -> None:
        await self._activity(
            StateActivities.set_org_status, OrgStatusChange(org=self._spec.org, status=status)
        )
        payload: dict[str, JsonValue] = {"status": status}
        if reason:
            payload["reason"] = reason
        await self._audit(f"org.{status}", payload)

    # ---- updates -----------------------------------------------------------------------
    # Each update is checked twice by the same pure rules (kafkaorg/org_rules.py): in its
    # validator, and again under the lock, since requests that passed their validators
    # together are carried out one after another. Everything runs inside
    # ``_refusals_only``, so no refusal or bug can fail the workflow task.

    @workflow.update
    async def apply_spec(self, spec: OrgSpec) -> ChangeResult:
        """Carry out the diff between the running org and ``spec`` (``kafkaorg org apply``)."""
        with _refusals_only():
            async with self._lock:
                _check(org_rules.apply_spec_problems(self._view, spec))
                diff = diff_specs(self._spec, spec)
                same_tools = (self._spec.tools, self._spec.policy) == (spec.tools, spec.policy)
                if diff.is_empty and same_tools:
                    return ChangeResult(changed=False, summary=[])
                summary = await self._apply(spec, diff)
                return ChangeResult(changed=True, summary=summary)

    @apply_spec.validator
    def _validate_apply(self, spec: OrgSpec) -> None:
        with _refusals_only():
            _check(org_rules.apply_spec_problems(self._view, spec))

    @workflow.update
    async def repair_drift(self) -> ChangeResult:
        """Look for drift now instead of at the next interval, and repair it."""
        with _refusals_only():
            async with self._lock:
                summary = await self._repair_drift()
                return ChangeResult(changed=bool(summary), summary=summary)

    @workflow.update
    async def create_agent(self, request: CreateAgentRequest) -> ChangeResult:
        with _refusals_only():
            async with self._lock:
                now = workflow.now().timestamp()
                _check(org_rules.create_agent_problems(self._view, request, now))
                parent = org_rules.requester(self._view, request.requested_by)
                registration = AgentRegistration(
                    spec=request.agent,
                    created_by=request.requested_by,
                    parent_agent=parent,
                    depth=self._view.depth(parent) + 1 if parent else 0,
                )
                registered = await self._activity(
                    StateActivities.register_agent,
                    RegisterAgentInput(org=self._spec.org, agent=registration),
                )
                self._state.dynamic_agents.append(registration)
                self._state.statuses[request.agent.name] = AgentStatus.RUNNING
                self._state.versions[request.agent.name] = registered.version
                if parent:
                    self._state.spawn_times.append(now)
                await self._activity(
                    LifecycleActivities.start_agents,
                    AgentsRef(org=self._spec.org, agents=[request.agent.name]),
                )
                await self._audit(
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
                        f"+ agent {request.agent.name} ({request.agent.kind}) "
                        f"by {request.requested_by}"
                    ],
                )

    @create_agent.validator
    def _validate_create_agent(self, request: CreateAgentRequest) -> None:
        with _refusals_only():
            now = workflow.now().timestamp()
            _check(org_rules.create_agent_problems(self._view, request, now))

    @workflow.update
    async def change_agent(self, request: AgentCommand) -> ChangeResult:
        """Pause, resume or retire an agent (``kafkaorg agent pause|resume|stop``)."""
        with _refusals_only():
            async with self._lock:
                _check(org_rules.lifecycle_problems(self._view, request))
                status = _STATUS_AFTER[request.action]
                if self._view.status_of(request.agent) == status:
                    return ChangeResult(
                        changed=False, summary=[f"agent {request.agent} is {status}"]
                    )
                await self._activity(
                    StateActivities.set_agent_status,
                    AgentStatusChange(
                        org=self._spec.org,
                        agent=request.agent,
                        status=status,
                        reason=request.reason or None,
                    ),
                )
                self._state.statuses[request.agent] = status
                await self._activity(
                    LifecycleActivities.command_agent,
                    AgentCommand(
                        org=self._spec.org,
                        agent=request.agent,
                        action=request.action,
                        requested_by=request.requested_by,
                        reason=request.reason or f"{request.action} by {request.requested_by}",
                    ),
                )
                await self._audit(
                    f"agent.{status}",
                    {"agent": request.agent, "by": request.requested_by, "reason": request.reason},
                )
                return ChangeResult(changed=True, summary=[f"agent {request.agent} is {status}"])

    @change_agent.validator
    def _validate_change_agent(self, request: AgentCommand) -> None:
        with _refusals_only():
            _check(org_rules.lifecycle_problems(self._view, request))

    @workflow.update
    async def create_topic(self, request: CreateTopicRequest) -> ChangeResult:
        with _refusals_only():
            async with self._lock:
                _check(org_rules.create_topic_problems(self._view, request))
                topic = request.topic
                await self._activity(
                    KafkaActivities.ensure_topics,
                    EnsureTopicsInput(
                        topics=[
                            TopicToEnsure(
                                kafka_topic=kafka_topic(self._spec.org, topic.name),
                                partitions=topic.partitions,
                                configs=topic.kafka_configs(),
                            )
                        ]
                    ),
                )
                await self._activity(
                    StateActivities.save_topic, SaveTopicInput(org=self._spec.org, topic=topic)
                )
                self._spec = self._spec.model_copy(update={"topics": [*self._spec.topics, topic]})
                await self._audit(
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
        with _refusals_only():
            _check(org_rules.create_topic_problems(self._view, request))

    @workflow.update
    async def create_tool(self, request: CreateToolRequest) -> ChangeResult:
        """A new version of a tool, tested in the sandbox; ``changed`` is False if it failed."""
        with _refusals_only():
            async with self._lock:
                _check(org_rules.create_tool_problems(self._view, request))
                line = await self._register_tool(
                    request.tool, self._spec, author=request.requested_by
                )
                return ChangeResult(changed=line.startswith("+"), summary=[line])

    @create_tool.validator
    def _validate_create_tool(self, request: CreateToolRequest) -> None:
        with _refusals_only():
            _check(org_rules.create_tool_problems(self._view, request))

    @workflow.update
    async def approve_tool(self, request: ApproveToolRequest) -> ChangeResult:
        """A person approves a tested tool version (``kafkaorg tool approve``): it goes live."""
        with _refusals_only():
            async with self._lock:
                _check(org_rules.approve_problems(self._view, request))
                recorded = await self._activity(
                    ToolActivities.approve,
                    ApproveInput(
                        org=self._spec.org,
                        name=request.tool,
                        version=request.version,
                        approved_by=request.approved_by,
                    ),
                )
                self._remember_tool(request.tool, request.version, recorded.status)
                await self._audit(
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
        with _refusals_only():
            _check(org_rules.approve_problems(self._view, request))

    @workflow.update
    async def rollback_tool(self, request: RollbackToolRequest) -> ChangeResult:
        """``kafkaorg tool rollback``: an earlier tested version becomes current again."""
        with _refusals_only():
            async with self._lock:
                _check(org_rules.rollback_problems(self._view, request))
                done = await self._activity(
                    ToolActivities.rollback,
                    RollbackInput(
                        org=self._spec.org,
                        name=request.tool,
                        version=request.version,
                        requested_by=request.requested_by,
                    ),
                )
                await self._audit(
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
        with _refusals_only():
            _check(org_rules.rollback_problems(self._view, request))

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

    async def _activity(self, method: Callable[..., Any], arg: Any) -> Any:
        return await workflow.execute_activity_method(
            method,
            arg,
            start_to_close_timeout=_TIMEOUT,
            # Activities here are short: a worker that died is noticed in seconds.
            heartbeat_timeout=timedelta(seconds=10),
            retry_policy=_RETRY,
        )

    async def _audit(self, type_: str, payload: dict[str, JsonValue]) -> None:
        """Announce a state change; the id is deterministic, so a retry republishes the same one."""
        info = workflow.info()
        record = Record(
            id=str(workflow.uuid4()),
            type=type_,
            org=self._spec.org,
            source="system:org-workflow",
            correlation_id=info.workflow_id,
            timestamp=workflow.now(),
            payload=payload,
        )
        await self._activity(
            KafkaActivities.publish,
            PublishInput(org=self._spec.org, topic=AUDIT_TOPIC, records=[record]),
        )
        self._state.audit_records += 1
