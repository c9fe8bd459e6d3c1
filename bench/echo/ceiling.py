"""The ceiling: the bridge's consume → produce → commit loop with nothing durable in between.

No Temporal, no database, no envelope validation: what a batching Kafka loop on
this machine can do at most, so kafkaorg's number can be read as a fraction of it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import uuid

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from bench.echo.harness import PhaseResult, bench_records, err, measure, scratch_topics
from kafkaorg.config import Settings
from kafkaorg.envelope import derived_id
from kafkaorg.kafka import client_config, create_producer


class CeilingLoop(threading.Thread):
    """The bridge's shape without Temporal: consume a batch, produce it, wait for acks, commit."""

    def __init__(self, settings: Settings, in_topic: str, out_topic: str) -> None:
        super().__init__(name="ceiling-loop", daemon=True)
        self._settings = settings
        self._in = in_topic
        self._out = out_topic
        self._halt = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        settings = self._settings
        consumer = Consumer(
            client_config(
                settings,
                **{
                    "group.id": f"bench-ceiling-{uuid.uuid4().hex[:8]}",
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "auto.offset.reset": "earliest",
                    "isolation.level": "read_committed",
                },
            )
        )
        producer = create_producer(settings)
        consumer.subscribe([self._in])
        try:
            while not self._halt.is_set():
                messages = consumer.consume(
                    settings.bridge_batch_size, settings.bridge_poll_timeout_s
                )
                positions: dict[int, int] = {}
                for message in messages:
                    if message.error() is not None:
                        continue
                    self._echo(producer, message)
                    positions[message.partition() or 0] = (message.offset() or 0) + 1
                if not positions:
                    continue
                if producer.flush(30):
                    self.error = "ceiling outputs not acknowledged within 30 s"
                    return
                consumer.commit(
                    offsets=[TopicPartition(self._in, p, o) for p, o in positions.items()],
                    asynchronous=False,
                )
        finally:
            consumer.close()

    def _echo(self, producer: Producer, message: Message) -> None:
        """What an echo agent does, minus the envelope validation: copy, re-id, point back."""
        doc = json.loads(message.value() or b"{}")
        doc["causation_id"] = doc["id"]
        doc["id"] = derived_id("ceiling", doc["id"])
        doc["source"] = "agent:echo"
        while True:
            try:
                producer.produce(
                    self._out,
                    key=message.key(),
                    value=json.dumps(doc).encode(),
                    headers=message.headers(),
                )
                return
            except BufferError:
                producer.poll(0.05)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)


async def run_ceiling(settings: Settings, args: argparse.Namespace, run_id: str) -> PhaseResult:
    """One ceiling phase on its own scratch topics, deleted afterwards."""
    in_topic, out_topic = f"bench-{run_id}-ceiling-in", f"bench-{run_id}-ceiling-out"
    org = f"bench-{run_id}"
    with scratch_topics(settings, [in_topic, out_topic], args.partitions):
        loop = CeilingLoop(settings, in_topic, out_topic)
        loop.start()
        producer = create_producer(settings)
        try:
            return await measure(
                "ceiling",
                settings,
                producer,
                in_topic,
                out_topic,
                args.partitions,
                bench_records(org, args.records, args.correlation_ids, "ceiling"),
                bench_records(org, args.warmup, args.correlation_ids, "warmup"),
                args.phase_timeout,
            )
        finally:
            await asyncio.to_thread(loop.stop)
            if loop.error:
                err.print(f"[yellow]ceiling loop: {loop.error}[/]")
