"""The OrgWorkflow's side effects: every one an idempotent activity, every state change
announced on ``<org>.sys.audit`` after PostgreSQL has it.

Workflow code (it runs in the workflow sandbox); ``OrgEffects`` is what the org's
handlers and its reconciliation call instead of spelling activity options each time.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import JsonValue
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from workflows.archive import ARCHIVE_RUN

with workflow.unsafe.imports_passed_through():
    from activities.archive import ArchiveActivities
    from activities.kafka import (
        DeleteTopicsInput,
        EnsureTopicsInput,
        KafkaActivities,
        PublishInput,
        TopicToEnsure,
    )
    from activities.sandbox import (
        RUN_CODE_HEARTBEAT_TIMEOUT,
        RUN_CODE_RETRY,
        SandboxRequest,
        run_code_timeout,
    )
    from activities.state import OrgStatusChange, StateActivities
    from activities.tool_registry import ProposeInput, TestResultInput, ToolActivities
    from kafkaorg.contracts import (
        ArchiveInput,
        ArchiveScheduleRequest,
        OrgState,
        ToolStatus,
        ToolVersionState,
    )
    from kafkaorg.envelope import Record
    from kafkaorg.names import (
        AGENTS_TOPIC,
        APPROVALS_TOPIC,
        AUDIT_TOPIC,
        DLQ_TOPIC,
        SANDBOX_TASK_QUEUE,
        kafka_topic,
    )
    from kafkaorg.sandbox import SandboxPolicy, SandboxResult
    from kafkaorg.spec import TOPIC_CLASS_CONFIGS, OrgSpec, ToolSpec, TopicClass, TopicSpec
    from kafkaorg.tool_programs import TestOutcome, outcome_of_tests, program_for_tests

ORG_ACTIVITY = workflow.ActivityConfig(
    start_to_close_timeout=timedelta(seconds=60),
    # Activities here are short: a worker that died is noticed in seconds.
    heartbeat_timeout=timedelta(seconds=10),
    retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
)
"""Every org activity but the sandbox's: retried until it succeeds (they are idempotent)."""

SANDBOX_TEST_RUN = workflow.ActivityConfig(
    task_queue=SANDBOX_TASK_QUEUE,
    start_to_close_timeout=run_code_timeout(SandboxPolicy()),
    heartbeat_timeout=RUN_CODE_HEARTBEAT_TIMEOUT,
    retry_policy=RUN_CODE_RETRY,
)


class OrgEffects:
    """Side effects of one org; ``state`` is the workflow's own (audit count, tools)."""

    def __init__(self, org: str, state: OrgState) -> None:
        self.org = org
        self._state = state

    async def run(self, method: Any, arg: Any) -> Any:
        return await workflow.execute_activity_method(method, arg, **ORG_ACTIVITY)

    async def audit(self, type_: str, payload: dict[str, JsonValue]) -> None:
        """Announce a state change; the id is deterministic, so a retry republishes it."""
        record = Record(
            id=str(workflow.uuid4()),
            type=type_,
            org=self.org,
            source="system:org-workflow",
            correlation_id=workflow.info().workflow_id,
            timestamp=workflow.now(),
            payload=payload,
        )
        await self.run(
            KafkaActivities.publish, PublishInput(org=self.org, topic=AUDIT_TOPIC, records=[record])
        )
        self._state.audit_records += 1

    async def announce_approval(self, type_: str, payload: dict[str, JsonValue]) -> None:
        """An approval requested or decided: audited, and told on ``<org>.sys.approvals``
        (where people and their tools watch for what waits for them)."""
        await self.audit(type_, payload)
        record = Record(
            id=str(workflow.uuid4()),
            type=type_,
            org=self.org,
            source="system:org-workflow",
            correlation_id=str(payload.get("id") or workflow.info().workflow_id),
            timestamp=workflow.now(),
            payload=payload,
        )
        await self.run(
            KafkaActivities.publish,
            PublishInput(org=self.org, topic=APPROVALS_TOPIC, records=[record]),
        )

    async def ensure_archive_schedule(self) -> None:
        await self.run(
            ArchiveActivities.ensure_archive_schedule, ArchiveScheduleRequest(org=self.org)
        )

    async def final_archive(self) -> None:
        """Archive what the org wrote up to its stop (its schedule goes with it), then
        delete the schedule. An archive that keeps failing does not hold up the stop: it
        is audited, and the next start of the org resumes where the manifest ends."""
        try:
            await workflow.execute_activity_method(
                ArchiveActivities.archive_org, ArchiveInput(org=self.org), **ARCHIVE_RUN
            )
        except ActivityError as err:
            cause = str(err.cause or err)
            await self.audit("archive.failed", {"error": cause})
        await self.run(
            ArchiveActivities.delete_archive_schedule, ArchiveScheduleRequest(org=self.org)
        )

    async def ensure_topics(self, spec: OrgSpec) -> None:
        """The spec's topics with their class's configs, plus the org's audit topic, DLQ
        and approvals topic."""
        wanted = [
            TopicToEnsure(
                kafka_topic=kafka_topic(spec.org, t.name),
                partitions=t.partitions,
                configs=t.kafka_configs(),
                topic_class=t.topic_class,
            )
            for t in spec.topics
        ]
        for name, topic_class in (
            (AUDIT_TOPIC, TopicClass.AUDIT),
            (DLQ_TOPIC, TopicClass.DLQ),
            (APPROVALS_TOPIC, TopicClass.AUDIT),
            (AGENTS_TOPIC, TopicClass.STATE),
        ):
            wanted.append(
                TopicToEnsure(
                    kafka_topic=kafka_topic(spec.org, name),
                    partitions=1,
                    configs=dict(TOPIC_CLASS_CONFIGS[topic_class]),
                    topic_class=topic_class,
                )
            )
        await self.run(KafkaActivities.ensure_topics, EnsureTopicsInput(topics=wanted))

    async def delete_work_topics(self, removed: list[TopicSpec]) -> None:
        """Work topics go with their spec entry; audit and state topics are kept."""
        doomed = [
            kafka_topic(self.org, t.name) for t in removed if t.topic_class is TopicClass.WORK
        ]
        if doomed:
            await self.run(KafkaActivities.delete_topics, DeleteTopicsInput(kafka_topics=doomed))
            await self.audit("topic.deleted", {"topics": list(doomed)})

    async def set_org_status(self, status: str, reason: str | None = None) -> None:
        await self.run(StateActivities.set_org_status, OrgStatusChange(org=self.org, status=status))
        payload: dict[str, JsonValue] = {"status": status}
        if reason:
            payload["reason"] = reason
        await self.audit(f"org.{status}", payload)

    # ---- tools -------------------------------------------------------------------------

    async def register_tool(self, tool: ToolSpec, spec: OrgSpec, author: str = "spec") -> str:
        """Propose a version, test it in the sandbox, record the outcome; say what happened.

        Only called for specs with tools, so orgs without any keep their command sequence.
        """
        proposed = await self.run(
            ToolActivities.propose_version, ProposeInput(org=spec.org, tool=tool, author=author)
        )
        if proposed.status != ToolStatus.TESTING:  # this code and tests were tested before
            self.remember_tool(tool.name, proposed.version, proposed.status)
            return f"= tool {tool.name} v{proposed.version} ({proposed.status}, unchanged)"
        outcome = await self._test_tool(tool)
        recorded = await self.run(
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
        self.remember_tool(tool.name, recorded.version, recorded.status)
        if recorded.status == ToolStatus.FAILED:
            await self.audit(
                "tool.failed",
                {"tool": tool.name, "version": recorded.version, "reason": outcome.reason},
            )
            return f"! tool {tool.name} v{recorded.version} failed its tests: {outcome.reason}"
        await self.audit(
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
                result_type=SandboxResult,
                **SANDBOX_TEST_RUN,
            )
        except ActivityError as err:
            return TestOutcome(passed=False, reason=f"sandbox: {err.cause or err}")
        return outcome_of_tests(result)

    def remember_tool(self, name: str, version: int, status: ToolStatus) -> None:
        for known in self._state.tools:
            if (known.name, known.version) == (name, version):
                known.status = status
                return
        self._state.tools.append(ToolVersionState(name=name, version=version, status=status))
