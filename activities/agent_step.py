"""One agent step: the records an agent answers its inbox batch with, produced to Kafka."""

from __future__ import annotations

from collections import Counter

from confluent_kafka import Producer
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from kafkaorg.envelope import Record, utcnow
from kafkaorg.kafka import Outgoing, produce_and_wait
from kafkaorg.kinds import AgentStepError, Emission, emissions_for
from kafkaorg.names import kafka_topic
from kafkaorg.spec import AgentSpec


class StepInput(BaseModel):
    org: str
    workflow_id: str
    agent: AgentSpec
    records: list[Record]
    marks: list[str | None] = []
    """Parallel to ``records``: replay/redrive marks (outputs get their own ids and a header)."""


class StepResult(BaseModel):
    consumed: int
    published: int
    by_topic: dict[str, int]


class EmissionsInput(BaseModel):
    """Records a workflow built itself (``tool`` agents): ids are already final."""

    org: str
    emissions: list[Emission]
    marks: list[str | None] = []
    """Parallel to ``emissions``: the replay/redrive mark of the input each answers."""


class AgentStepActivities:
    def __init__(self, producer: Producer, max_record_bytes: int) -> None:
        self._producer = producer
        self._max_record_bytes = max_record_bytes

    @activity.defn
    def run_agent_step(self, input: StepInput) -> StepResult:
        """Idempotent: outputs carry ids derived from (workflow id, input id, index)."""
        now = utcnow()
        outgoing: list[Outgoing] = []
        try:
            for i, record in enumerate(input.records):
                mark = input.marks[i] if i < len(input.marks) else None
                # A replayed record's outputs are new records: ids derive from the mark too.
                id_scope = f"{input.workflow_id}#{mark}" if mark else input.workflow_id
                headers: tuple[tuple[str, str | bytes | None], ...] = (
                    (("kafkaorg.mark", mark.encode()),) if mark else ()
                )
                for emission in emissions_for(input.agent, id_scope, record, now):
                    size = len(emission.record.kafka_value())
                    if size > self._max_record_bytes:
                        # Retrying cannot help, and downstream it would only be poison.
                        raise AgentStepError(
                            f"output record for {record.id} is {size} bytes, over the "
                            f"{self._max_record_bytes}-byte limit"
                        )
                    outgoing.append(
                        Outgoing(kafka_topic(input.org, emission.topic), emission.record, headers)
                    )
        except AgentStepError as exc:
            raise ApplicationError(str(exc), type="AgentStepError", non_retryable=True) from exc
        activity.heartbeat(len(outgoing))
        produce_and_wait(self._producer, outgoing)
        by_topic = Counter(o.kafka_topic for o in outgoing)
        return StepResult(
            consumed=len(input.records), published=len(outgoing), by_topic=dict(by_topic)
        )

    @activity.defn
    def publish_emissions(self, input: EmissionsInput) -> StepResult:
        """Produce records with final ids; an oversized one fails the call, not retried."""
        outgoing: list[Outgoing] = []
        for i, emission in enumerate(input.emissions):
            mark = input.marks[i] if i < len(input.marks) else None
            size = len(emission.record.kafka_value())
            if size > self._max_record_bytes:
                raise ApplicationError(
                    f"output record {emission.record.id} is {size} bytes, over the "
                    f"{self._max_record_bytes}-byte limit",
                    type="AgentStepError",
                    non_retryable=True,
                )
            headers: tuple[tuple[str, str | bytes | None], ...] = (
                (("kafkaorg.mark", mark.encode()),) if mark else ()
            )
            outgoing.append(
                Outgoing(kafka_topic(input.org, emission.topic), emission.record, headers)
            )
        produce_and_wait(self._producer, outgoing)
        by_topic = Counter(o.kafka_topic for o in outgoing)
        return StepResult(
            consumed=len(input.emissions), published=len(outgoing), by_topic=dict(by_topic)
        )
