"""OrgWorkflow: the meta-agent that owns an org's topics and agents.

Its input is the org spec itself, so ``temporal workflow start --type OrgWorkflow
--input '<spec as JSON>'`` starts an org exactly as ``kafkaorg org start`` does.
Each change is written to PostgreSQL by one activity and announced on
``<org>.sys.audit`` by the next.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field, JsonValue
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.kafka import (
        EnsureTopicsInput,
        KafkaActivities,
        PublishInput,
        TopicToEnsure,
    )
    from activities.lifecycle import AgentsRef, LifecycleActivities
    from activities.state import OrgStatusChange, StateActivities
    from kafkaorg.envelope import Record
    from kafkaorg.names import AUDIT_TOPIC, DLQ_TOPIC, ORG_WORKFLOW_TYPE, kafka_topic
    from kafkaorg.spec import TOPIC_CLASS_CONFIGS, OrgSpec, TopicClass, semantic_problems

_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10))
_TIMEOUT = timedelta(seconds=60)


class OrgInput(OrgSpec):
    """The spec, exactly as users write it; nothing else is needed to start an org."""


class OrgStopRequest(BaseModel):
    reason: str = "stopped by user"


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
        self._spec = OrgSpec.model_validate(input.model_dump(by_alias=True))
        self._phase = "starting"
        self._stop: OrgStopRequest | None = None
        self._audit_count = 0

    @workflow.run
    async def run(self, input: OrgInput) -> OrgStatus:
        spec = self._spec
        problems = semantic_problems(spec)
        if problems:
            self._phase = "refused"
            raise ApplicationError(
                "invalid org spec: " + "; ".join(problems), type="InvalidSpec", non_retryable=True
            )
        await self._ensure_topics(spec)
        saved = await workflow.execute_activity_method(
            StateActivities.save_org, spec, start_to_close_timeout=_TIMEOUT, retry_policy=_RETRY
        )
        await self._audit(
            "org.applied", {"topics": list(saved.topics), "agents": list(saved.agents)}
        )
        await workflow.execute_activity_method(
            LifecycleActivities.start_agents,
            AgentsRef(org=spec.org, agents=[a.name for a in spec.agents]),
            start_to_close_timeout=_TIMEOUT,
            retry_policy=_RETRY,
        )
        await self._set_status("running")
        self._phase = "running"

        await workflow.wait_condition(lambda: self._stop is not None)
        assert self._stop is not None
        self._phase = "stopping"
        await workflow.execute_activity_method(
            LifecycleActivities.stop_agents,
            AgentsRef(org=spec.org, agents=[a.name for a in spec.agents]),
            start_to_close_timeout=_TIMEOUT,
            retry_policy=_RETRY,
        )
        await self._set_status("stopped", reason=self._stop.reason)
        self._phase = "stopped"
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.status()

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
        await workflow.execute_activity_method(
            KafkaActivities.ensure_topics,
            EnsureTopicsInput(topics=wanted),
            start_to_close_timeout=_TIMEOUT,
            retry_policy=_RETRY,
        )

    async def _set_status(self, status: str, reason: str | None = None) -> None:
        await workflow.execute_activity_method(
            StateActivities.set_org_status,
            OrgStatusChange(org=self._spec.org, status=status),
            start_to_close_timeout=_TIMEOUT,
            retry_policy=_RETRY,
        )
        payload: dict[str, JsonValue] = {"status": status}
        if reason:
            payload["reason"] = reason
        await self._audit(f"org.{status}", payload)

    async def _audit(self, type_: str, payload: dict[str, JsonValue]) -> None:
        """Announce a state change; the id is deterministic, so a retry republishes the same one."""
        info = workflow.info()
        record_id = str(workflow.uuid4())
        record = Record(
            id=record_id,
            type=type_,
            org=self._spec.org,
            source="system:org-workflow",
            correlation_id=f"{info.workflow_id}:{info.run_id}",
            timestamp=workflow.now(),
            payload=payload,
        )
        await workflow.execute_activity_method(
            KafkaActivities.publish,
            PublishInput(org=self._spec.org, topic=AUDIT_TOPIC, records=[record]),
            start_to_close_timeout=_TIMEOUT,
            retry_policy=_RETRY,
        )
        self._audit_count += 1

    @workflow.signal
    def stop(self, request: OrgStopRequest) -> None:
        self._stop = request

    @workflow.query
    def status(self) -> OrgStatus:
        return OrgStatus(
            org=self._spec.org,
            phase=self._phase,
            topics=[t.name for t in self._spec.topics],
            agents=[a.name for a in self._spec.agents],
            audit_records=self._audit_count,
        )
