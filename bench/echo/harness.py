"""What every design is measured with: records, the open-loop burst, the output clock.

The three designs differ only in what sits between an input topic and an output
topic; everything here is shared so that their numbers are comparable: the same
envelopes, the same burst, the same ``time.monotonic()`` stamps in this process,
the same nearest-rank percentiles.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from rich.console import Console

from kafkaorg.config import Settings
from kafkaorg.envelope import Record, new_record
from kafkaorg.kafka import client_config, create_admin

PHASES = ("ceiling", "kafkaorg", "floor")
"""The designs, in the order a run measures and reports them."""

err = Console(stderr=True, highlight=False)
"""Progress and warnings go to stderr, so ``--json`` leaves stdout to the report."""


class BenchError(Exception):
    """Ends the run with one line on stderr (exit 1), never a traceback."""


# --------------------------------------------------------------------------- measurement


class Tracker:
    """Send and receive times of one set of records, matched by input id.

    Written by the producing thread and the collector thread; single dict
    operations are atomic under the GIL, and an input's send time is stored
    before it is produced, so its output can never be seen first.
    """

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.sent: dict[str, float] = {}
        self.received: dict[str, float] = {}
        self.duplicates = 0
        self.done = threading.Event()

    def mark_received(self, input_id: str, at: float) -> None:
        if input_id not in self.sent:
            return  # a warm-up straggler or another run's record
        if input_id in self.received:
            self.duplicates += 1
            return
        self.received[input_id] = at
        if len(self.received) >= self.expected:
            self.done.set()


@dataclass
class PhaseResult:
    name: str
    records: int
    received: int
    duplicates: int
    seconds: float
    records_per_s: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    complete: bool
    note: str = ""


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: an actual observed latency, not an interpolation."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(name: str, tracker: Tracker, note: str = "") -> PhaseResult:
    latencies = sorted(
        (tracker.received[i] - tracker.sent[i]) * 1000
        for i in tracker.received
        if i in tracker.sent
    )
    n = len(latencies)
    first_in = min(tracker.sent.values()) if tracker.sent else 0.0
    last_out = max(tracker.received.values()) if tracker.received else first_in
    seconds = last_out - first_in
    return PhaseResult(
        name=name,
        records=tracker.expected,
        received=n,
        duplicates=tracker.duplicates,
        seconds=round(seconds, 3),
        records_per_s=round(n / seconds, 1) if seconds > 0 else 0.0,
        p50_ms=round(percentile(latencies, 50), 1),
        p99_ms=round(percentile(latencies, 99), 1),
        mean_ms=round(sum(latencies) / n, 1) if n else math.nan,
        max_ms=round(latencies[-1], 1) if n else math.nan,
        complete=n == tracker.expected,
        note=note,
    )


def bench_records(org: str, count: int, correlation_ids: int, tag: str) -> list[Record]:
    """Envelopes as a user would send them; a few hundred conversations spread the partitions."""
    return [
        new_record(
            org=org,
            type="bench.echo",
            source="user:bench",
            payload={"n": i, "tag": tag, "text": f"record {i} of {count}"},
            correlation_id=f"conv-{i % correlation_ids}",
        )
        for i in range(count)
    ]


def produce_burst(producer: Producer, topic: str, records: list[Record], tracker: Tracker) -> None:
    """Open loop: produce every record as fast as the client takes them, then wait for acks.

    Values are serialized before the clock starts, so the timed part is only the
    client call; the send time is taken just before each ``produce``.
    """
    prepared = [(r.id, r.kafka_key(), r.kafka_value(), r.kafka_headers()) for r in records]
    for record_id, key, value, headers in prepared:
        tracker.sent[record_id] = time.monotonic()
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=headers)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(60):
        raise BenchError(f"inputs to {topic} not acknowledged by Kafka within 60 s")


def causation_of(value: bytes | None) -> str | None:
    """The input id an output answers; plain ``json`` keeps the collector cheap."""
    try:
        doc = json.loads(value or b"")
    except ValueError:
        return None
    cause = doc.get("causation_id") if isinstance(doc, dict) else None
    return cause if isinstance(cause, str) else None


class OutputCollector(threading.Thread):
    """Reads an output topic from its start and stamps each output the moment it is polled.

    ``poll`` (one message at a time) rather than ``consume(n, timeout)``, which
    waits for a full batch or the timeout and would add that wait to latencies.
    """

    def __init__(self, settings: Settings, topic: str, partitions: int) -> None:
        super().__init__(name=f"collect-{topic}", daemon=True)
        self.topic = topic
        self.tracker = Tracker(0)
        self._halt = threading.Event()
        self._consumer = Consumer(
            client_config(
                settings,
                **{
                    "group.id": f"bench-collect-{uuid.uuid4().hex[:8]}",
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                    "fetch.wait.max.ms": 10,
                },
            )
        )
        self._consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        self.error: str | None = None

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                message = self._consumer.poll(0.05)
                if message is None:
                    continue
                now = time.monotonic()
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        self.error = str(error)
                    continue
                cause = causation_of(message.value())
                if cause is not None:
                    self.tracker.mark_received(cause, now)
        finally:
            self._consumer.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=15)


async def wait_tracker(tracker: Tracker, timeout: float) -> bool:
    """In a thread: the floor's worker and driver share this event loop and must keep running."""
    return await asyncio.to_thread(tracker.done.wait, timeout)


async def measure(
    name: str,
    settings: Settings,
    producer: Producer,
    in_topic: str,
    out_topic: str,
    partitions: int,
    records: list[Record],
    warmup: list[Record],
    timeout: float,
    note: str = "",
) -> PhaseResult:
    """Warm up (consumer groups joined, workflows started), then time one burst."""
    collector = OutputCollector(settings, out_topic, partitions)
    collector.start()
    try:
        warm = Tracker(len(warmup))
        collector.tracker = warm
        await asyncio.to_thread(produce_burst, producer, in_topic, warmup, warm)
        if not await wait_tracker(warm, 90):
            raise BenchError(
                f"{name}: {len(warm.received)}/{len(warmup)} warm-up outputs on {out_topic} "
                f"within 90 s ({collector.error or 'no consumer error'})"
            )
        tracker = Tracker(len(records))
        collector.tracker = tracker
        err.print(f"[bold]{name}[/]: burst of {len(records)} records …")
        await asyncio.to_thread(produce_burst, producer, in_topic, records, tracker)
        if not await wait_tracker(tracker, timeout):
            note = f"{note}; " if note else ""
            note += f"timed out after {timeout:.0f} s with {len(tracker.received)} outputs"
            err.print(f"[yellow]{name}: {note}[/]")
    finally:
        await asyncio.to_thread(collector.stop)
    result = summarize(name, tracker, note)
    err.print(
        f"{name}: {result.received}/{result.records} in {result.seconds:.2f} s, "
        f"{result.records_per_s:.0f} rec/s, p50 {result.p50_ms:.0f} ms, p99 {result.p99_ms:.0f} ms"
    )
    return result


# --------------------------------------------------------------------------- topics


@contextmanager
def scratch_topics(settings: Settings, names: list[str], partitions: int) -> Iterator[None]:
    """Topics for one phase, deleted afterwards; names without a dot, so the bridge ignores them."""
    admin = create_admin(settings)
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names],
        operation_timeout=30,
    )
    for name, future in futures.items():
        try:
            future.result(timeout=40)
        except KafkaException as exc:
            raise BenchError(f"cannot create topic {name}: {exc}") from None
    wait_for_metadata(settings, names, partitions)
    try:
        yield
    finally:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            try:
                future.result(timeout=40)
            except KafkaException as exc:
                err.print(f"[yellow]could not delete a scratch topic: {exc}[/]")


def wait_for_metadata(settings: Settings, names: list[str], partitions: int) -> None:
    """Until every topic shows all its partitions, so no warm-up record meets a missing one."""
    admin = create_admin(settings)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        topics = admin.list_topics(timeout=10).topics
        if all(n in topics and len(topics[n].partitions) == partitions for n in names):
            return
        time.sleep(0.2)
    raise BenchError(f"topics {names} did not appear in metadata within 30 s")
