"""One agent step: the records an agent answers its inbox batch with, produced to Kafka."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from confluent_kafka import Producer
from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeating
from kafkaorg import tracing
from kafkaorg.envelope import Record, utcnow
from kafkaorg.faults import FaultPoint, fail
from kafkaorg.kafka import Outgoing, TransactionalProducers, produce_and_wait
from kafkaorg.kinds import AgentStepError, Emission, emissions_for
from kafkaorg.metrics import DLQ_RECORDS, count_produced, timed_step
from kafkaorg.names import dlq_topic, kafka_topic, split_kafka_topic
from kafkaorg.payloads import PayloadMissingError, offload, resolve_all
from kafkaorg.schema_registry.cache import SchemaCache
from kafkaorg.schema_registry.validation import Violation
from kafkaorg.spec import AgentKind, AgentSpec


class StepInput(BaseModel):
    org: str
    workflow_id: str
    agent: AgentSpec
    records: list[Record]
    marks: list[str | None] = []
    """Parallel to ``records``: replay/redrive marks (outputs get their own ids and a header)."""
    traces: list[dict[str, str] | None] = []
    """Parallel to ``records``: each record's trace carrier (kafkaorg/tracing.py), if any."""


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
    kind: AgentKind | None = None
    """The publishing agent's kind, for the step metrics (the agent is each record's source)."""
    traces: list[dict[str, str] | None] = []
    """Parallel to ``emissions``: the trace carrier of the input record each answers."""
    refuse_invalid: bool = False
    """A record its type's schema refuses fails the call (``SchemaViolation``, for an
    ``llm`` agent's ``publish``, whose model gets the error) instead of going to the DLQ."""


SCHEMA_VIOLATION_ERROR = "SchemaViolation"


def _edge(item: Outgoing) -> tuple[str, str]:
    """(org topic, agent) of an output: the agent→topic edge its count goes to."""
    return split_kafka_topic(item.kafka_topic)[1], item.record.source.removeprefix("agent:")


def _violation_headers(
    violation: Violation, record: Record, intended: str
) -> tuple[tuple[str, str | bytes | None], ...]:
    return (
        ("dlq.reason", violation.reason.encode()),
        ("dlq.error", violation.detail[:500].encode()),
        ("dlq.agent", record.source.removeprefix("agent:").encode()),
        ("dlq.intended_topic", intended.encode()),
    )


def _text(value: str | bytes | None) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _mark_headers(mark: str | None) -> tuple[tuple[str, str | bytes | None], ...]:
    return (("kafkaorg.mark", mark.encode()),) if mark else ()


class _StepSpans:
    """One ``agent.step`` span per input record, its parent the record's trace carrier and
    linked to the activity's own span; the record's outputs are produced under it. Ended
    once the outputs are written. Does nothing when tracing is off."""

    def __init__(self, org: str, agent: str, kind: str, workflow_id: str | None) -> None:
        self._on = tracing.enabled()
        self._attributes = {
            "kafkaorg.org": org,
            "kafkaorg.agent": agent,
            "kafkaorg.agent.kind": kind,
            "kafkaorg.workflow_id": workflow_id or "",
        }
        self._name = f"agent.step {agent}"
        self._link = tracing.current_span_for_link() if self._on else None
        self._spans: dict[str, tracing.Span | None] = {}

    def carrier_for(
        self, record_id: str, parent: dict[str, str] | None, **attributes: str
    ) -> Mapping[str, str] | None:
        """The carrier the record's outputs are produced under: None when tracing is off,
        ``NOT_SAMPLED`` for a record with no sampled trace (no span, and its outputs never
        join the trace of another record of the batch)."""
        if not self._on:
            return None
        if not parent:
            return tracing.NOT_SAMPLED
        if record_id not in self._spans:
            self._spans[record_id] = tracing.start_span(
                self._name,
                parent=parent,
                attributes={**self._attributes, "kafkaorg.record.id": record_id, **attributes},
                links=[self._link],
                nest=True,
            )
        span = self._spans[record_id]
        return tracing.carrier_of(span) if span is not None else tracing.NOT_SAMPLED

    def end(self, exc: BaseException | None = None) -> None:
        tracing.end_spans(self._spans.values(), exc)


class PayloadStore:
    """Large payloads by reference for a worker (``kafkaorg.payloads``), one short
    transaction per stored payload."""

    def __init__(self, sessions: sessionmaker[Session], threshold: int) -> None:
        self._sessions = sessions
        self.threshold = threshold

    def offload(self, record: Record) -> Record:
        with self._sessions.begin() as session:
            return offload(session, record, self.threshold)

    def resolve(self, records: list[Record]) -> list[Record]:
        try:
            with self._sessions() as session:
                return resolve_all(session, records)
        except PayloadMissingError as exc:
            raise ApplicationError(str(exc), type="AgentStepError", non_retryable=True) from exc


class AgentStepActivities:
    def __init__(
        self,
        producer: Producer,
        max_record_bytes: int,
        transactions: TransactionalProducers | None = None,
        schemas: SchemaCache | None = None,
        payloads: PayloadStore | None = None,
    ) -> None:
        self._producer = producer
        self._max_record_bytes = max_record_bytes
        self._transactions = transactions
        self._schemas = schemas
        self._payloads = payloads

    def _outgoing(
        self,
        org: str,
        emission: Emission,
        mark: str | None,
        trace: Mapping[str, str] | None = None,
        refuse_invalid: bool = False,
    ) -> Outgoing:
        """The record bound for Kafka; one over the size limit fails the step for good.

        A record its type's schema refuses goes to the org's DLQ instead, with the reason
        and where it was bound (``dlq.intended_topic``); a valid one is stamped with the
        version it was checked against.
        """
        record, headers = emission.record, _mark_headers(mark)
        target = kafka_topic(org, emission.topic)
        book = self._schemas.get() if self._schemas is not None else None
        if book is not None and org in book.orgs:
            violation = book.check(org, emission.topic, record.type, record.payload)
            if violation is not None:
                if refuse_invalid:
                    raise ApplicationError(
                        f"record refused by its schema ({violation.reason}): {violation.detail}",
                        type=SCHEMA_VIOLATION_ERROR,
                        non_retryable=True,
                    )
                headers += _violation_headers(violation, record, target)
                target = dlq_topic(org)
            elif (latest := book.orgs[org].latest(record.type)) is not None:
                record = record.model_copy(update={"schema_version": latest})
        item = Outgoing(target, record, headers, trace=trace)
        if self._payloads is not None and len(item.value) > self._payloads.threshold:
            # Stored (and committed) before the record that points at it is produced.
            item = Outgoing(target, self._payloads.offload(record), headers, trace=trace)
        size = len(item.value)
        if size > self._max_record_bytes:
            # Retrying cannot help, and downstream it would only be poison.
            raise ApplicationError(
                f"output record for {emission.record.causation_id} is {size} bytes, over the "
                f"{self._max_record_bytes}-byte limit",
                type="AgentStepError",
                non_retryable=True,
            )
        return item

    def _produce(self, org: str, outgoing: list[Outgoing], consumed: int) -> StepResult:
        invalid = Counter(
            dict(o.extra_headers).get("dlq.reason")
            for o in outgoing
            if o.kafka_topic == dlq_topic(org)
        )
        activity.heartbeat(len(outgoing))
        with heartbeating():
            if len(outgoing) > 1 and self._transactions is not None:
                # Several records: all visible to read-committed consumers, or none.
                self._transactions.produce(outgoing)
            else:
                produce_and_wait(self._producer, outgoing)
        # Counted once written (the transaction committed): a failed try counts nothing.
        count_produced(
            org, Counter(_edge(o) for o in outgoing if o.kafka_topic != dlq_topic(org)).items()
        )
        for reason, n in invalid.items():
            DLQ_RECORDS.labels(org, _text(reason)).inc(n)
        by_topic = Counter(o.kafka_topic for o in outgoing)
        return StepResult(consumed=consumed, published=len(outgoing), by_topic=dict(by_topic))

    @activity.defn
    def run_agent_step(self, input: StepInput) -> StepResult:
        """Idempotent: outputs carry ids derived from (workflow id, input id, index)."""
        with timed_step(input.org, input.agent.name, input.agent.kind):
            spans = _StepSpans(input.org, input.agent.name, input.agent.kind, input.workflow_id)
            try:
                result = self._run_agent_step(input, spans)
            except BaseException as exc:
                spans.end(exc)
                raise
            spans.end()
            return result

    def _run_agent_step(self, input: StepInput, spans: _StepSpans) -> StepResult:
        fail(FaultPoint.AGENT_STEP_RAISE)
        now = utcnow()
        outgoing: list[Outgoing] = []
        records = input.records
        if self._payloads is not None and any(r.payload_ref for r in records):
            records = self._payloads.resolve(records)
        for i, record in enumerate(records):
            mark = input.marks[i] if i < len(input.marks) else None
            trace = spans.carrier_for(
                record.id,
                input.traces[i] if i < len(input.traces) else None,
                **{"kafkaorg.record.type": record.type},
            )
            # A replayed record's outputs are new records: ids derive from the mark too.
            id_scope = f"{input.workflow_id}#{mark}" if mark else input.workflow_id
            try:
                emissions = emissions_for(input.agent, id_scope, record, now)
            except AgentStepError as exc:
                raise ApplicationError(str(exc), type="AgentStepError", non_retryable=True) from exc
            outgoing += [self._outgoing(input.org, e, mark, trace) for e in emissions]
        return self._produce(input.org, outgoing, len(input.records))

    @activity.defn
    def publish_emissions(self, input: EmissionsInput) -> StepResult:
        """Produce records with final ids; an oversized one fails the call, not retried."""
        agents = {e.record.source.removeprefix("agent:") for e in input.emissions}
        with timed_step(input.org, ",".join(sorted(agents)), input.kind or "unknown"):
            if not tracing.enabled():
                outgoing = [
                    self._outgoing(
                        input.org,
                        e,
                        input.marks[i] if i < len(input.marks) else None,
                        refuse_invalid=input.refuse_invalid,
                    )
                    for i, e in enumerate(input.emissions)
                ]
                return self._produce(input.org, outgoing, len(input.emissions))
            return self._publish_traced(input)

    def _publish_traced(self, input: EmissionsInput) -> StepResult:
        """As ``publish_emissions``, each output under a span of the record it answers."""
        info = activity.info()
        agent = input.emissions[0].record.source.removeprefix("agent:") if input.emissions else ""
        spans = _StepSpans(input.org, agent, input.kind or "unknown", info.workflow_id)
        try:
            outgoing = []
            for i, e in enumerate(input.emissions):
                parent = input.traces[i] if i < len(input.traces) else None
                # Keyed by the input record (the causation id): one span per record answered.
                trace = spans.carrier_for(e.record.causation_id or e.record.id, parent)
                mark = input.marks[i] if i < len(input.marks) else None
                outgoing.append(
                    self._outgoing(input.org, e, mark, trace, refuse_invalid=input.refuse_invalid)
                )
            result = self._produce(input.org, outgoing, len(input.emissions))
        except BaseException as exc:
            spans.end(exc)
            raise
        spans.end()
        return result
