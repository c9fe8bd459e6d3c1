"""Producing records and creating topics: the Kafka side effects of workflows."""

from __future__ import annotations

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient
from pydantic import BaseModel
from temporalio import activity

from kafkaorg.config import Settings
from kafkaorg.envelope import Record
from kafkaorg.kafka import Outgoing, create_missing_topics, new_topic, produce_and_wait
from kafkaorg.metrics import DLQ_RECORDS
from kafkaorg.names import DLQ_TOPIC, kafka_topic


class TopicToEnsure(BaseModel):
    kafka_topic: str
    partitions: int
    configs: dict[str, str]
    topic_class: str | None = None
    """Picks its replication (``KAFKAORG_KAFKA_CLASS_REPLICATION``); None: the cluster-wide pair."""


class EnsureTopicsInput(BaseModel):
    topics: list[TopicToEnsure]


class EnsureTopicsResult(BaseModel):
    created: list[str]
    existing: list[str]


class DeleteTopicsInput(BaseModel):
    kafka_topics: list[str]


class PublishInput(BaseModel):
    """Records for topics of one org; ids are already final (deterministic)."""

    org: str
    topic: str
    records: list[Record]
    headers: dict[str, str] = {}
    record_headers: dict[str, dict[str, str]] = {}
    """Record id → headers for that record only (e.g. where a dead-lettered record came from)."""
    traces: dict[str, dict[str, str]] = {}
    """Record id → its trace carrier: the produce joins that record's trace (tracing.py)."""


class PublishResult(BaseModel):
    published: int


class KafkaActivities:
    """Holds the process's producer and admin client (built once in workers/), and the
    settings new topics take their replication from."""

    def __init__(self, producer: Producer, admin: AdminClient, settings: Settings) -> None:
        self._producer = producer
        self._admin = admin
        self._settings = settings

    @activity.defn
    def publish(self, input: PublishInput) -> PublishResult:
        topic = kafka_topic(input.org, input.topic)
        headers = tuple((k, v.encode()) for k, v in input.headers.items())

        def headers_of(record: Record) -> tuple[tuple[str, str | bytes | None], ...]:
            extra = input.record_headers.get(record.id, {})
            return headers + tuple((k, v.encode()) for k, v in extra.items())

        count = produce_and_wait(
            self._producer,
            (
                Outgoing(topic, r, headers_of(r), trace=input.traces.get(r.id))
                for r in input.records
            ),
        )
        if input.topic == DLQ_TOPIC:  # failed work of an agent (step, tool, model, not running)
            DLQ_RECORDS.labels(input.org, input.headers.get("dlq.reason", "unknown")).inc(count)
        return PublishResult(published=count)

    @activity.defn
    def missing_topics(self, input: DeleteTopicsInput) -> list[str]:
        """Which of these topics Kafka does not have (deleted behind the org's back)."""
        existing = set(self._admin.list_topics(timeout=10).topics)
        return [t for t in input.kafka_topics if t not in existing]

    @activity.defn
    def delete_topics(self, input: DeleteTopicsInput) -> list[str]:
        """Delete topics that exist; a missing one (already deleted) is fine."""
        existing = set(self._admin.list_topics(timeout=10).topics)
        doomed = [t for t in input.kafka_topics if t in existing]
        if not doomed:
            return []
        for future in self._admin.delete_topics(doomed, operation_timeout=30).values():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].name() != "UNKNOWN_TOPIC_OR_PART":
                    raise
        return doomed

    @activity.defn
    def ensure_topics(self, input: EnsureTopicsInput) -> EnsureTopicsResult:
        """Create missing topics with their class's configs; existing ones are left alone."""
        created = create_missing_topics(
            self._admin,
            [
                new_topic(self._settings, t.kafka_topic, t.partitions, t.configs, t.topic_class)
                for t in input.topics
            ],
        )
        return EnsureTopicsResult(
            created=sorted(created),
            existing=sorted(t.kafka_topic for t in input.topics if t.kafka_topic not in created),
        )
