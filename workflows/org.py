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
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, JsonValue
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.kafka import (
        DeleteTopicsInput,
        EnsureTopicsInput,
        KafkaActivities,
        PublishInput,
        TopicToEnsure,
    )
    from activities.lifecycle import AgentCommand, AgentsRef, LifecycleActivities
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
    from kafkaorg.envelope import Record
    from kafkaorg.names import (
        AUDIT_TOPIC,
        DLQ_TOPIC,
        ORG_ATTR,
        ORG_WORKFLOW_TYPE,
        SANDBOX_TASK_QUEUE,
        kafka_topic,
    )
    from kafkaorg.reconcile import SpecDiff, diff_specs
    from kafkaorg.sandbox import SandboxPolicy, SandboxResult
    from kafkaorg.spec import (
        TOPIC_CLASS_CONFIGS,
        AgentSpec,
        OrgSpec,
        ToolSpec,
        TopicClass,
        TopicSpec,
        agent_problems,
        semantic_problems,
    )
    from kafkaorg.tools import TestOutcome, outcome_of_tests, program_for_tests

_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10))
_TIMEOUT = timedelta(seconds=60)
HISTORY_EVENTS_BEFORE_CONTINUE = 5000


class DynamicAgent(BaseModel):
    """An agent created at run time (not declared in the spec)."""

    spec: AgentSpec
    created_by: str
    parent_agent: str | None = None
    depth: int = 0


class ToolVersionState(BaseModel):
    """What the org knows of one tool version (PostgreSQL has the code and test result)."""

    name: str
    version: int
    status: str


class OrgState(BaseModel):
    """Everything that survives continue-as-new."""

    tools: list[ToolVersionState] = Field(default_factory=list)

    dynamic_agents: list[DynamicAgent] = Field(default_factory=list)
    statuses: dict[str, str] = Field(default_factory=dict)
    versions: dict[str, int] = Field(default_factory=dict)
    spawn_times: list[float] = Field(default_factory=list)
    """Unix times of recent agent creations by agents (the spawn-rate quota)."""
    audit_records: int = 0
    applied: bool = False


class OrgInput(OrgSpec):
    """The spec, exactly as users write it; ``state`` is only set by continue-as-new."""

    state: OrgState | None = None


class OrgStopRequest(BaseModel):
    reason: str = "stopped by user"
    delete_work_topics: bool = False
    """Work topics may go with the org; audit, state and DLQ topics are always kept."""


class CreateAgentRequest(BaseModel):
    agent: AgentSpec
    requested_by: str = "user:cli"
    """``user:<name>`` or ``agent:<name>``; agents are held to their own rights."""


class AgentLifecycleRequest(BaseModel):
    agent: str
    action: Literal["pause", "resume", "retire"]
    requested_by: str = "user:cli"
    reason: str = ""


class CreateTopicRequest(BaseModel):
    topic: TopicSpec
    requested_by: str = "user:cli"


class CreateToolRequest(BaseModel):
    """An agent (or person) registers a tool at run time; it must pass its tests first."""

    tool: ToolSpec
    requested_by: str = "user:cli"


class RollbackToolRequest(BaseModel):
    tool: str
    version: int
    requested_by: str = "user:cli"


class ApproveToolRequest(BaseModel):
    tool: str
    version: int
    approved_by: str = "user:cli"


class ChangeResult(BaseModel):
    """What an update did, in words a caller can print."""

    changed: bool
    summary: list[str]


class AgentInfo(BaseModel):
    name: str
    kind: str
    status: str
    version: int
    created_by: str
    subscribes: list[str]
    publishes: list[str]


class OrgStatus(BaseModel):
    org: str
    phase: str
    topics: list[str]
    agents: list[str]
    audit_records: int = 0
    problems: list[str] = Field(default_factory=list)


@workflow.defn(name=ORG_WORKFLOW_TYPE)
class OrgWorkflow:
    @workflow.init
    def __init__(self, input: OrgInput) -> None:
        self._spec = OrgSpec.model_validate(input.model_dump(by_alias=True, exclude={"state"}))
        self._state = input.state or OrgState()
        self._phase = "running" if self._state.applied else "starting"
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
                self._phase = "refused"
                raise ApplicationError(
                    "invalid org spec: " + "; ".join(problems),
                    type="InvalidSpec",
                    non_retryable=True,
                )
            async with self._lock:
                await self._apply(self._spec, diff_specs(None, self._spec), first=True)
                self._state.applied = True
                self._phase = "running"
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
            self._state.statuses[name] = "retired"
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
                    org=spec.org, agent=name, action="retire", reason="removed from the org spec"
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
                    action="update",
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
            if self._state.statuses.get(agent.name) in (None, "retired"):
                self._state.statuses[agent.name] = "running"
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

    def _remember_tool(self, name: str, version: int, status: str) -> None:
        for known in self._state.tools:
            if (known.name, known.version) == (name, version):
                known.status = status
                return
        self._state.tools.append(ToolVersionState(name=name, version=version, status=status))

    def _known_tools(self) -> frozenset[str]:
        return frozenset(t.name for t in self._state.tools) | {t.name for t in self._spec.tools}

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
        self._phase = "stopping"
        await self._activity(
            LifecycleActivities.stop_agents,
            AgentsRef(org=self._spec.org, agents=self._all_agent_names()),
        )
        if request.delete_work_topics:
            await self._delete_work_topics(list(self._spec.topics))
        await self._set_org_status("stopped", reason=request.reason)
        self._phase = "stopped"

    async def _repair_drift(self) -> list[str]:
        """Recreate topics deleted behind the org's back and restart agents that stopped."""
        org = self._spec.org
        expected = [kafka_topic(org, t.name) for t in self._spec.topics]
        expected += [kafka_topic(org, AUDIT_TOPIC), kafka_topic(org, DLQ_TOPIC)]
        missing = await self._activity(
            KafkaActivities.missing_topics, DeleteTopicsInput(kafka_topics=expected)
        )
        should_run = [
            n
            for n in self._all_agent_names()
            if self._status_of(n) in ("starting", "running", "paused")
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

    @workflow.update
    async def apply_spec(self, spec: OrgSpec) -> ChangeResult:
        """Carry out the diff between the running org and ``spec`` (``kafkaorg org apply``)."""
        async with self._lock:
            diff = diff_specs(self._spec, spec)
            same_tools = (self._spec.tools, self._spec.policy) == (spec.tools, spec.policy)
            if diff.is_empty and same_tools:
                return ChangeResult(changed=False, summary=[])
            summary = await self._apply(spec, diff)
            return ChangeResult(changed=True, summary=summary)

    @workflow.update
    async def repair_drift(self) -> ChangeResult:
        """Look for drift now instead of at the next interval, and repair it."""
        async with self._lock:
            summary = await self._repair_drift()
            return ChangeResult(changed=bool(summary), summary=summary)

    @apply_spec.validator
    def _validate_apply(self, spec: OrgSpec) -> None:
        problems = semantic_problems(spec, frozenset(t.name for t in self._state.tools))
        if spec.org != self._spec.org:
            problems.insert(0, f"org: spec is for {spec.org!r}, this is {self._spec.org!r}")
        diff = diff_specs(self._spec, spec)
        problems += diff.problems
        taken = {
            d.spec.name
            for d in self._state.dynamic_agents
            if self._state.statuses.get(d.spec.name) != "retired"
        }
        for agent in spec.agents:
            if agent.name in taken:
                problems.append(f"agent {agent.name!r} already exists (created at run time)")
        topics = {t.name for t in spec.topics}
        for dyn in self._state.dynamic_agents:
            if self._state.statuses.get(dyn.spec.name) == "retired":
                continue
            for name in dyn.spec.subscribes + dyn.spec.publishes:
                if name not in topics:
                    problems.append(f"topic {name!r} is still used by agent {dyn.spec.name!r}")
        if problems:
            raise ValueError("; ".join(problems))

    @workflow.update
    async def create_agent(self, request: CreateAgentRequest) -> ChangeResult:
        async with self._lock:
            self._check_create_agent(request)  # again: the org may have changed meanwhile
            parent = self._requester(request.requested_by)
            depth = self._depth(parent) + 1 if parent else 0
            registered = await self._activity(
                StateActivities.register_agent,
                RegisterAgentInput(
                    org=self._spec.org,
                    spec=request.agent,
                    created_by=request.requested_by,
                    parent_agent=parent,
                    spawn_depth=depth,
                ),
            )
            self._state.dynamic_agents.append(
                DynamicAgent(
                    spec=request.agent,
                    created_by=request.requested_by,
                    parent_agent=parent,
                    depth=depth,
                )
            )
            self._state.statuses[request.agent.name] = "running"
            self._state.versions[request.agent.name] = registered.version
            if parent:
                self._state.spawn_times.append(workflow.now().timestamp())
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
                    "depth": depth,
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
        self._check_create_agent(request)

    def _check_create_agent(self, request: CreateAgentRequest) -> None:
        spec = request.agent
        problems = agent_problems(
            spec, {t.name for t in self._spec.topics}, "agent", set(self._known_tools())
        )
        if self._status_of(spec.name) not in (None, "retired"):
            problems.append(f"agent {spec.name!r} already exists")
        live = [n for n in self._all_agent_names() if self._status_of(n) != "retired"]
        if len(live) >= self._spec.limits.max_agents:
            problems.append(
                f"quota: the org has {len(live)} agents "
                f"(limits.max_agents = {self._spec.limits.max_agents})"
            )
        try:
            parent_name = self._requester(request.requested_by)
        except ValueError as exc:
            problems.append(str(exc))
            parent_name = None
        if parent_name is not None:
            parent = self._agent_spec(parent_name)
            if parent is None:
                problems.append(f"requester {request.requested_by!r} is not an agent of this org")
            else:
                problems += _exceeds_parent(spec, parent)
                depth = self._depth(parent_name) + 1
                if depth > self._spec.limits.max_spawn_depth:
                    problems.append(
                        f"quota: spawn depth {depth} exceeds "
                        f"limits.max_spawn_depth ({self._spec.limits.max_spawn_depth})"
                    )
                now = workflow.now().timestamp()
                recent = [t for t in self._state.spawn_times if now - t < 60]
                if len(recent) >= self._spec.limits.max_spawns_per_minute:
                    problems.append(
                        f"quota: {len(recent)} agents spawned in the last minute "
                        f"(limits.max_spawns_per_minute = "
                        f"{self._spec.limits.max_spawns_per_minute})"
                    )
        if problems:
            raise ValueError("; ".join(problems))

    @workflow.update
    async def change_agent(self, request: AgentLifecycleRequest) -> ChangeResult:
        """Pause, resume or retire an agent (``kafkaorg agent pause|resume|stop``)."""
        async with self._lock:
            self._check_lifecycle(request)
            status = {"pause": "paused", "resume": "running", "retire": "retired"}[request.action]
            if self._status_of(request.agent) == status:
                return ChangeResult(changed=False, summary=[f"agent {request.agent} is {status}"])
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
                    reason=request.reason or f"{request.action} by {request.requested_by}",
                ),
            )
            await self._audit(
                f"agent.{status}",
                {"agent": request.agent, "by": request.requested_by, "reason": request.reason},
            )
            return ChangeResult(changed=True, summary=[f"agent {request.agent} is {status}"])

    @change_agent.validator
    def _validate_change_agent(self, request: AgentLifecycleRequest) -> None:
        self._check_lifecycle(request)

    def _check_lifecycle(self, request: AgentLifecycleRequest) -> None:
        status = self._status_of(request.agent)
        if status is None:
            raise ValueError(f"unknown agent {request.agent!r} in org {self._spec.org!r}")
        if status == "retired":
            raise ValueError(f"agent {request.agent!r} is retired")
        if status == "failed" and request.action != "retire":
            raise ValueError(f"agent {request.agent!r} failed; retire it and create it again")
        parent = self._requester(request.requested_by)
        if parent is not None and self._parent_of(request.agent) != parent:
            raise ValueError(f"{request.requested_by} may only change agents it created")

    @workflow.update
    async def create_topic(self, request: CreateTopicRequest) -> ChangeResult:
        async with self._lock:
            self._check_create_topic(request)
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
        self._check_create_topic(request)

    def _check_create_topic(self, request: CreateTopicRequest) -> None:
        if any(t.name == request.topic.name for t in self._spec.topics):
            raise ValueError(f"topic {request.topic.name!r} already exists")
        parent = self._requester(request.requested_by)
        if parent is not None:
            spec = self._agent_spec(parent)
            if spec is None or not spec.can_create_agents:
                raise ValueError(f"{request.requested_by} may not create topics")

    @workflow.update
    async def create_tool(self, request: CreateToolRequest) -> ChangeResult:
        """A new version of a tool, tested in the sandbox; ``changed`` is False if it failed."""
        async with self._lock:
            self._check_create_tool(request)
            line = await self._register_tool(request.tool, self._spec, author=request.requested_by)
            return ChangeResult(changed=line.startswith("+"), summary=[line])

    @create_tool.validator
    def _validate_create_tool(self, request: CreateToolRequest) -> None:
        self._check_create_tool(request)

    def _check_create_tool(self, request: CreateToolRequest) -> None:
        agent = self._requester(request.requested_by)
        if agent is not None:
            spec = self._agent_spec(agent)
            if spec is None or not spec.can_create_tools:
                raise ValueError(f"{request.requested_by} may not create tools")
        if self._spec.tool(request.tool.name) is not None:
            raise ValueError(
                f"tool {request.tool.name!r} is declared in the org spec; "
                "change it there (kafkaorg org apply)"
            )
        if not request.tool.source.strip():
            raise ValueError(f"tool {request.tool.name!r} has no code")

    @workflow.update
    async def approve_tool(self, request: ApproveToolRequest) -> ChangeResult:
        """A person approves a tested tool version (``kafkaorg tool approve``): it goes live."""
        async with self._lock:
            self._check_approve(request)
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
        self._check_approve(request)

    def _check_approve(self, request: ApproveToolRequest) -> None:
        if not request.approved_by.startswith("user:"):
            raise ValueError(f"only people approve tools, not {request.approved_by!r}")
        known = next(
            (
                t
                for t in self._state.tools
                if (t.name, t.version) == (request.tool, request.version)
            ),
            None,
        )
        if known is None:
            raise ValueError(
                f"tool {request.tool!r} has no version {request.version} in org {self._spec.org!r}"
            )
        if known.status != "pending_approval":
            raise ValueError(
                f"tool {request.tool!r} version {request.version} is {known.status}, "
                "not pending approval"
            )

    @workflow.update
    async def rollback_tool(self, request: RollbackToolRequest) -> ChangeResult:
        """``kafkaorg tool rollback``: an earlier tested version becomes current again."""
        async with self._lock:
            self._check_rollback(request)
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
                    f"tool {request.tool} is at v{request.version} (was v{done.previous_version})"
                ],
            )

    @rollback_tool.validator
    def _validate_rollback_tool(self, request: RollbackToolRequest) -> None:
        self._check_rollback(request)

    def _check_rollback(self, request: RollbackToolRequest) -> None:
        if not request.requested_by.startswith("user:"):
            raise ValueError(f"only people roll tools back, not {request.requested_by!r}")
        known = next(
            (
                t
                for t in self._state.tools
                if (t.name, t.version) == (request.tool, request.version)
            ),
            None,
        )
        if known is None:
            raise ValueError(
                f"tool {request.tool!r} has no version {request.version} in org {self._spec.org!r}"
            )
        if known.status != "active":
            raise ValueError(
                f"tool {request.tool!r} version {request.version} is {known.status}; only a "
                "version that passed its tests (and was approved) can be rolled back to"
            )

    # ---- signals and queries -----------------------------------------------------------

    @workflow.signal
    def stop(self, request: OrgStopRequest) -> None:
        self._stop = request

    @workflow.signal
    def agent_failed(self, change: AgentStatusChange) -> None:
        """An agent reports it failed for good (already written to PostgreSQL by it)."""
        self._state.statuses[change.agent] = "failed"

    @workflow.query
    def status(self) -> OrgStatus:
        return OrgStatus(
            org=self._spec.org,
            phase=self._phase,
            topics=[t.name for t in self._spec.topics],
            agents=self._all_agent_names(),
            audit_records=self._state.audit_records,
        )

    @workflow.query
    def spec(self) -> OrgSpec:
        return self._spec

    @workflow.query
    def agents(self) -> list[AgentInfo]:
        out = []
        for name in self._all_agent_names():
            spec = self._agent_spec(name)
            assert spec is not None
            dyn = next((d for d in self._state.dynamic_agents if d.spec.name == name), None)
            out.append(
                AgentInfo(
                    name=name,
                    kind=spec.kind,
                    status=self._status_of(name) or "starting",
                    version=self._state.versions.get(name, 1),
                    created_by=dyn.created_by if dyn else "spec",
                    subscribes=list(spec.subscribes),
                    publishes=list(spec.publishes),
                )
            )
        return out

    # ---- helpers -----------------------------------------------------------------------

    def _requester(self, requested_by: str) -> str | None:
        """The requesting agent's name (None for a user); refuses agents not live in this org.

        Agents ask as ``agent:<org>:<name>`` (the platform fills in the org); the short
        ``agent:<name>`` means an agent of this org, as a user acting for it would write.
        """
        if requested_by.startswith("user:"):
            return None
        if not requested_by.startswith("agent:"):
            raise ValueError(
                f"requested_by {requested_by!r} must be user:<name> or agent:<org>:<name>"
            )
        org, _, name = requested_by.removeprefix("agent:").rpartition(":")
        if org and org != self._spec.org:
            raise ValueError(f"requester {requested_by!r} belongs to org {org!r}, not this org")
        if self._agent_spec(name) is None or self._status_of(name) in ("retired", "failed"):
            raise ValueError(f"requester {requested_by!r} is not a live agent of this org")
        return name

    def _all_agent_names(self) -> list[str]:
        names = [a.name for a in self._spec.agents]
        names += [d.spec.name for d in self._state.dynamic_agents if d.spec.name not in names]
        return names

    def _agent_spec(self, name: str) -> AgentSpec | None:
        spec = self._spec.agent(name)
        if spec is not None:
            return spec
        return next((d.spec for d in self._state.dynamic_agents if d.spec.name == name), None)

    def _status_of(self, name: str) -> str | None:
        if self._agent_spec(name) is None:
            return None
        return self._state.statuses.get(name, "starting")

    def _depth(self, name: str) -> int:
        dyn = next((d for d in self._state.dynamic_agents if d.spec.name == name), None)
        return dyn.depth if dyn else 0

    def _parent_of(self, name: str) -> str | None:
        dyn = next((d for d in self._state.dynamic_agents if d.spec.name == name), None)
        return dyn.parent_agent if dyn else None

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


def _exceeds_parent(child: AgentSpec, parent: AgentSpec) -> list[str]:
    """A spawned agent never gets more rights than the agent that asked for it."""
    problems = []
    if not parent.can_create_agents:
        problems.append(f"agent {parent.name!r} may not create agents (can_create_agents: false)")
    if child.can_create_agents and not parent.can_create_agents:
        problems.append("can_create_agents: not granted to the parent")
    if child.can_create_tools and not parent.can_create_tools:
        problems.append("can_create_tools: not granted to the parent")
    parent_topics = set(parent.subscribes) | set(parent.publishes)
    for name in child.subscribes:
        if name not in parent_topics:
            problems.append(f"subscribes: {name!r} is not readable by the parent")
    for name in child.publishes:
        if name not in parent.publishes:
            problems.append(f"publishes: {name!r} is not writable by the parent")
    return problems
