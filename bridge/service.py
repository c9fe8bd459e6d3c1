"""The bridge process: consume org topics, signal agents, then commit.

Offsets are committed only after Temporal accepted every signal of a batch
(at-least-once); each agent gets one signal per poll batch carrying all of its
records (fewer history events than one signal per record). Poison records go to
``<org>.sys.dlq`` and never stop the bridge.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from temporalio.client import Client
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from bridge.mapping import (
    Accepted,
    Origin,
    Poison,
    chunk_by_size,
    commit_positions,
    dead_letter,
    decode,
    route,
)
from bridge.subscriptions import SubscriptionCache
from kafkaorg.config import Settings
from kafkaorg.db import create_engine, create_sessionmaker
from kafkaorg.kafka import Outgoing, check_kafka, client_config, create_producer, produce_and_wait
from kafkaorg.names import (
    BRIDGE_GROUP_ID,
    BRIDGE_TOPIC_PATTERN,
    TASK_QUEUE,
    agent_search_attributes,
    agent_workflow_id,
    dlq_topic,
)
from kafkaorg.temporal import connect_temporal
from workflows.agent import AgentInput, AgentWorkflow, Delivery

log = logging.getLogger(__name__)

SIGNAL_LIMIT_BYTES = 1_500_000
"""Stay under Temporal's 2 MB payload limit with room for the envelope overhead."""


def consumer_config(settings: Settings) -> dict[str, object]:
    return client_config(
        settings,
        **{
            "group.id": BRIDGE_GROUP_ID,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "topic.metadata.refresh.interval.ms": 2000,
            "max.poll.interval.ms": 600_000,
            # A bridge that died is out of the group (its partitions reassigned) in ~10 s.
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 2_000,
            "fetch.max.bytes": 16 * 1024 * 1024,
            "max.partition.fetch.bytes": 8 * 1024 * 1024,
            "client.id": "kafkaorg-bridge",
        },
    )


class BridgeStats:
    def __init__(self) -> None:
        self.records = 0
        self.signals = 0
        self.dead_lettered = 0
        self.batches = 0


class Bridge:
    def __init__(
        self,
        settings: Settings,
        client: Client,
        consumer: Consumer,
        producer: Producer,
        subscriptions: SubscriptionCache,
    ) -> None:
        self._settings = settings
        self._client = client
        self._consumer = consumer
        self._producer = producer
        self._subscriptions = subscriptions
        self.stats = BridgeStats()

    async def run(self, stop: asyncio.Event) -> None:
        self._consumer.subscribe([BRIDGE_TOPIC_PATTERN])
        log.info("bridge consuming %s as group %r", BRIDGE_TOPIC_PATTERN, BRIDGE_GROUP_ID)
        try:
            while not stop.is_set():
                messages = await asyncio.to_thread(self._poll_batch)
                if messages:
                    await self.handle_batch(messages, stop)
        finally:
            await asyncio.to_thread(self._consumer.close)

    def _poll_batch(self) -> list[Message]:
        """Wait for the first record only, then take what is already buffered (no added delay)."""
        first = self._consumer.poll(self._settings.bridge_poll_timeout_s)
        if first is None:
            return []
        return [first, *self._consumer.consume(self._settings.bridge_batch_size - 1, 0)]

    def _decode(self, message: Message) -> Accepted | Poison | None:
        err = message.error()
        if err is not None:
            if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                log.debug("no org topic exists yet: %s", err)
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("consume error: %s", err)
            return None
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if topic is None or partition is None or offset is None:
            return None
        _, ts = message.timestamp()
        return decode(
            Origin(topic, partition, offset),
            message.value(),
            headers=message.headers(),
            timestamp_ms=ts if ts and ts > 0 else None,
            max_bytes=self._settings.max_record_bytes,
        )

    async def handle_batch(self, messages: list[Message], stop: asyncio.Event) -> None:
        decoded = [d for d in (self._decode(m) for m in messages) if d is not None]
        accepted = [d for d in decoded if isinstance(d, Accepted)]
        poison = [d for d in decoded if isinstance(d, Poison)]
        topics = {(a.origin.org, a.origin.topic) for a in accepted}
        subscribers = await self._subscriptions.get(must_know=topics)
        deliveries = route(accepted, subscribers)

        if poison:
            await self._dead_letter(poison)
        async for attempt in AsyncRetrying(
            wait=wait_exponential(multiplier=0.2, max=10),
            retry=retry_if_exception_type(Exception),
            reraise=True,
        ):
            with attempt:
                if stop.is_set() and attempt.retry_state.attempt_number > 1:
                    return  # not committed: the records come again after restart
                await asyncio.gather(
                    *(
                        self._signal(org, agent, chunk)
                        for (org, agent), items in deliveries.items()
                        for chunk in chunk_by_size(items, SIGNAL_LIMIT_BYTES)
                    )
                )
        positions = commit_positions(d.origin for d in decoded)
        offsets = [TopicPartition(t, p, off) for (t, p), off in positions.items()]
        await asyncio.to_thread(self._commit, offsets)
        self.stats.batches += 1
        self.stats.records += len(accepted)
        self.stats.dead_lettered += len(poison)

    def _commit(self, offsets: list[TopicPartition]) -> None:
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except Exception as exc:  # a revoked partition: its new owner redelivers, dedup absorbs it
            log.warning("offset commit failed (records will be redelivered): %s", exc)

    async def _signal(self, org: str, agent: str, items: list[Accepted]) -> None:
        delivery = Delivery(
            records=[i.record for i in items],
            marks={i.record.id: i.mark for i in items if i.mark},
        )
        await self._client.start_workflow(
            AgentWorkflow.run,
            AgentInput(org=org, agent=agent),
            id=agent_workflow_id(org, agent),
            task_queue=TASK_QUEUE,
            start_signal="deliver",
            start_signal_args=[delivery],
            search_attributes=agent_search_attributes(org, agent),
        )
        self.stats.signals += 1

    async def _dead_letter(self, poison: list[Poison]) -> None:
        now = datetime.now(UTC)
        outgoing = []
        existing = await asyncio.to_thread(self._existing_topics)
        for p in poison:
            if dlq_topic(p.origin.org) not in existing:
                log.error(
                    "no DLQ topic for %s[%d]@%d (%s); skipped: org %r was not started by kafkaorg",
                    p.origin.kafka_topic,
                    p.origin.partition,
                    p.origin.offset,
                    p.reason,
                    p.origin.org,
                )
                continue
            record, headers = dead_letter(p, now)
            outgoing.append(Outgoing(dlq_topic(p.origin.org), record, tuple(headers)))
            log.info(
                "dead-lettered %s[%d]@%d: %s",
                p.origin.kafka_topic,
                p.origin.partition,
                p.origin.offset,
                p.reason,
            )
        await asyncio.to_thread(produce_and_wait, self._producer, outgoing)

    def _existing_topics(self) -> set[str]:
        return set(self._consumer.list_topics(timeout=10).topics)


async def run_bridge(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT; an interrupted batch is simply consumed again next time."""
    check_kafka(settings)
    client = await connect_temporal(settings)
    sessions = create_sessionmaker(create_engine(settings.database_url, pool_size=2))
    bridge = Bridge(
        settings,
        client,
        Consumer(consumer_config(settings)),
        create_producer(settings),
        SubscriptionCache(sessions),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await bridge.run(stop)
