"""End-to-end echo benchmark: kafkaorg between a Kafka ceiling and a naive Temporal floor.

One run measures three designs on the same machine, with the same record shape
(kafkaorg envelopes keyed by correlation id on 3-partition topics), the same
open-loop burst of inputs and the same clock (``time.monotonic()`` in this
process):

* **ceiling**: a plain confluent-kafka consume → produce → commit loop, batching
  like the bridge. Nothing durable in between, so nothing can be faster.
* **kafkaorg**: the real platform path. An org with one echo agent; the bridge
  batches records into signals, the AgentWorkflow runs one activity per inbox
  batch, the activity produces the outputs.
* **floor**: the design kafkaorg was built to avoid, one Temporal workflow (and
  one activity) per record, hosted in this process on its own task queue.

Latency of a record = time its output was consumed - time just before its input
was produced. Throughput = records / (last output - first input). Inputs are an
open-loop burst, so latency includes queueing behind the burst: p50 is roughly
the time to drain half of it.

Run from the repository root, with the stack up (``kafkaorg dev up --workers``)::

    python -m bench.bench_echo --records 10000 --out bench/results/echo-$(date +%F).json

or let the bench run its own worker and bridge with ``--start-workers``. Every
run uses fresh org, topic, group and task-queue names, and every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from temporalio import activity, workflow
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from kafkaorg.client import launch_org
from kafkaorg.config import Settings, get_settings
from kafkaorg.devstack import KafkaorgProcess
from kafkaorg.envelope import Record, derived_id, new_record, utcnow
from kafkaorg.errors import KafkaorgError
from kafkaorg.kafka import check_kafka, client_config, create_admin, create_producer
from kafkaorg.kinds import emissions_for
from kafkaorg.lag import read_bridge_statuses
from kafkaorg.names import BRIDGE_GROUP_ID, TASK_QUEUE, kafka_topic, org_workflow_id
from kafkaorg.spec import AgentSpec, validate_spec
from kafkaorg.temporal import connect_temporal

REPO_ROOT = Path(__file__).resolve().parents[1]
PHASES = ("ceiling", "kafkaorg", "floor")
STACK_HINT = "start the stack with `kafkaorg dev up --workers`"
START_HINT = (
    "start them with `kafkaorg dev up --workers`, "
    "or pass --start-workers to run a worker and a bridge for this run"
)
POLLER_FRESH_S = 90.0
"""A live idle worker re-polls at least every ~70 s (long-poll timeout); older pollers are gone."""

err = Console(stderr=True, highlight=False)


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


def _percentile(sorted_values: Sequence[float], q: float) -> float:
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
        p50_ms=round(_percentile(latencies, 50), 1),
        p99_ms=round(_percentile(latencies, 99), 1),
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
    admin = create_admin(settings)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        topics = admin.list_topics(timeout=10).topics
        if all(n in topics and len(topics[n].partitions) == partitions for n in names):
            return
        time.sleep(0.2)
    raise BenchError(f"topics {names} did not appear in metadata within 30 s")


# --------------------------------------------------------------------------- ceiling


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


# --------------------------------------------------------------------------- kafkaorg


async def run_kafkaorg(
    settings: Settings, client: Client, args: argparse.Namespace, run_id: str
) -> PhaseResult:
    """The platform path, untouched: the org is started exactly as ``kafkaorg org start`` does."""
    # Imported here: only this phase needs the org workflow's message types.
    from workflows.org import OrgStopRequest, OrgWorkflow

    org = f"bench-{run_id}"
    spec = validate_spec(
        {
            "org": org,
            "topics": [
                {"name": "inbox", "class": "work", "partitions": args.partitions},
                {"name": "outbox", "class": "work", "partitions": args.partitions},
            ],
            "agents": [
                {"name": "echo", "kind": "echo", "subscribes": ["inbox"], "publishes": ["outbox"]}
            ],
        },
        source="bench",
    )
    err.print(f"kafkaorg: starting org {org!r} …")
    await asyncio.wait_for(launch_org(settings, spec), timeout=90)
    producer = create_producer(settings)
    try:
        return await measure(
            "kafkaorg",
            settings,
            producer,
            kafka_topic(org, "inbox"),
            kafka_topic(org, "outbox"),
            args.partitions,
            bench_records(org, args.records, args.correlation_ids, "kafkaorg"),
            bench_records(org, args.warmup, args.correlation_ids, "warmup"),
            args.phase_timeout,
        )
    finally:
        # Stop the org so its agent workflow does not outlive the run (its topics stay).
        handle = client.get_workflow_handle_for(OrgWorkflow.run, org_workflow_id(org))
        try:
            await handle.signal(OrgWorkflow.stop, OrgStopRequest(reason="benchmark finished"))
            await asyncio.wait_for(handle.result(), timeout=60)
        except Exception as exc:
            err.print(f"[yellow]could not stop org {org!r} cleanly: {exc}[/]")


# --------------------------------------------------------------------------- floor


class NaiveEchoInput(BaseModel):
    """One record, one workflow: the design the batching bridge exists to avoid."""

    record: Record
    output_topic: str


_ECHO_SPEC = AgentSpec(name="echo", kind="echo", publishes=["out"])


class AsyncProducer:
    """A confluent-kafka producer whose deliveries resolve asyncio futures.

    A thread serves delivery callbacks, so an async activity awaits its own ack
    without ``flush`` (which would wait for every other activity's records too).
    """

    def __init__(self, settings: Settings, loop: asyncio.AbstractEventLoop) -> None:
        self._producer = create_producer(settings)
        self._loop = loop
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="floor-acks", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.05)

    async def send(self, topic: str, record: Record) -> None:
        future: asyncio.Future[None] = self._loop.create_future()

        def delivered(error: KafkaError | None, _message: Message) -> None:
            self._loop.call_soon_threadsafe(_settle, future, error)

        while True:
            try:
                self._producer.produce(
                    topic,
                    key=record.kafka_key(),
                    value=record.kafka_value(),
                    headers=record.kafka_headers(),
                    on_delivery=delivered,
                )
                break
            except BufferError:
                await asyncio.sleep(0.01)
        await future

    def close(self) -> None:
        self._producer.flush(30)
        self._closed.set()
        self._thread.join(timeout=5)


def _settle(future: asyncio.Future[None], error: KafkaError | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(KafkaException(error))


class NaiveEchoActivities:
    def __init__(self, producer: AsyncProducer) -> None:
        self._producer = producer

    @activity.defn
    async def produce_echo(self, input: NaiveEchoInput) -> None:
        """The same echo output the platform's agent step builds, produced and acknowledged."""
        info = activity.info()
        (emission,) = emissions_for(_ECHO_SPEC, info.workflow_id or "", input.record, utcnow())
        await self._producer.send(input.output_topic, emission.record)


@workflow.defn
class NaiveEchoWorkflow:
    @workflow.run
    async def run(self, input: NaiveEchoInput) -> None:
        await workflow.execute_activity_method(
            NaiveEchoActivities.produce_echo,
            input,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=5),
        )


class NaiveDriver:
    """Consumes the input topic and starts one workflow per record, ``concurrency`` in flight.

    Commits a batch's offsets once Temporal accepted every start, like the bridge.
    """

    def __init__(
        self,
        settings: Settings,
        client: Client,
        in_topic: str,
        out_topic: str,
        task_queue: str,
        run_id: str,
        concurrency: int,
    ) -> None:
        self._settings = settings
        self._client = client
        self._in = in_topic
        self._out = out_topic
        self._task_queue = task_queue
        self._run_id = run_id
        self._slots = asyncio.Semaphore(concurrency)
        self.starts = 0

    async def _start(self, record: Record) -> None:
        async with self._slots:
            await self._client.start_workflow(
                NaiveEchoWorkflow.run,
                NaiveEchoInput(record=record, output_topic=self._out),
                id=f"bench-naive:{self._run_id}:{record.id}",
                task_queue=self._task_queue,
            )
            self.starts += 1

    async def run(self, stop: asyncio.Event) -> None:
        consumer = Consumer(
            client_config(
                self._settings,
                **{
                    "group.id": f"bench-floor-{self._run_id}",
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "auto.offset.reset": "earliest",
                    "isolation.level": "read_committed",
                },
            )
        )
        consumer.subscribe([self._in])
        try:
            while not stop.is_set():
                messages = await asyncio.to_thread(
                    consumer.consume,
                    self._settings.bridge_batch_size,
                    self._settings.bridge_poll_timeout_s,
                )
                good = [m for m in messages if m.error() is None]
                if not good:
                    continue
                await asyncio.gather(
                    *(self._start(Record.from_kafka_value(m.value() or b"")) for m in good)
                )
                positions = {m.partition() or 0: (m.offset() or 0) + 1 for m in good}
                offsets = [TopicPartition(self._in, p, o) for p, o in positions.items()]
                await asyncio.to_thread(consumer.commit, offsets=offsets, asynchronous=False)
        finally:
            await asyncio.to_thread(consumer.close)


async def run_floor(
    settings: Settings, client: Client, args: argparse.Namespace, run_id: str
) -> PhaseResult:
    in_topic, out_topic = f"bench-{run_id}-floor-in", f"bench-{run_id}-floor-out"
    task_queue = f"bench-naive-{run_id}"
    org = f"bench-{run_id}"
    note = ""
    if args.floor_records != args.records:
        note = f"{args.floor_records} records (--floor-records), not {args.records}"
    with scratch_topics(settings, [in_topic, out_topic], args.partitions):
        acks = AsyncProducer(settings, asyncio.get_running_loop())
        # Unsandboxed: this workflow lives in the bench's __main__, which the sandbox cannot
        # re-import; skipping the sandbox only makes the floor faster, i.e. the ratio humbler.
        worker = Worker(
            client,
            task_queue=task_queue,
            workflows=[NaiveEchoWorkflow],
            activities=[NaiveEchoActivities(acks).produce_echo],
            workflow_runner=UnsandboxedWorkflowRunner(),
            max_concurrent_activities=args.floor_concurrency,
        )
        driver = NaiveDriver(
            settings, client, in_topic, out_topic, task_queue, run_id, args.floor_concurrency
        )
        stop = asyncio.Event()
        producer = create_producer(settings)
        try:
            async with worker:
                driving = asyncio.create_task(driver.run(stop))
                try:
                    return await measure(
                        "floor",
                        settings,
                        producer,
                        in_topic,
                        out_topic,
                        args.partitions,
                        bench_records(org, args.floor_records, args.correlation_ids, "floor"),
                        bench_records(org, args.warmup, args.correlation_ids, "warmup"),
                        args.phase_timeout,
                        note,
                    )
                finally:
                    stop.set()
                    try:
                        await asyncio.wait_for(driving, timeout=30)
                    except (TimeoutError, Exception) as exc:
                        err.print(f"[yellow]floor driver did not stop cleanly: {exc!r}[/]")
        finally:
            await asyncio.to_thread(acks.close)


# --------------------------------------------------------------------------- stack checks


async def worker_pollers(client: Client, settings: Settings) -> list[str]:
    """Identities of workers that polled the platform's workflow task queue recently."""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=settings.temporal_namespace,
            task_queue=TaskQueue(name=TASK_QUEUE),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        ),
        timeout=timedelta(seconds=5),
    )
    cutoff = time.time() - POLLER_FRESH_S
    return sorted(
        {p.identity for p in response.pollers if p.last_access_time.ToSeconds() >= cutoff}
    )


def bridge_members(settings: Settings) -> int:
    """Members of the bridge's consumer group: 0 means no bridge is running."""
    admin = create_admin(settings)
    try:
        futures = admin.describe_consumer_groups([BRIDGE_GROUP_ID], request_timeout=5)
        return len(futures[BRIDGE_GROUP_ID].result(timeout=10).members)
    except KafkaException:
        return 0


def check_postgres(settings: Settings) -> None:
    engine = sqlalchemy.create_engine(settings.database_url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("select 1"))
    except sqlalchemy.exc.SQLAlchemyError:
        raise BenchError(
            f"PostgreSQL is not reachable at KAFKAORG_DATABASE_URL; {STACK_HINT}"
        ) from None
    finally:
        engine.dispose()


async def check_stack(settings: Settings) -> Client:
    """Kafka, Temporal and PostgreSQL must answer within seconds, or the run ends here."""
    try:
        await asyncio.to_thread(check_kafka, settings)
    except KafkaorgError:
        raise BenchError(
            f"Kafka is not reachable at {settings.kafka_bootstrap}; {STACK_HINT}"
        ) from None
    try:
        client = await asyncio.wait_for(connect_temporal(settings), timeout=15)
    except (KafkaorgError, TimeoutError):
        raise BenchError(
            f"Temporal is not reachable at {settings.temporal_address}; {STACK_HINT}"
        ) from None
    await asyncio.to_thread(check_postgres, settings)
    return client


async def check_processes(client: Client, settings: Settings) -> tuple[list[str], int]:
    pollers = await worker_pollers(client, settings)
    members = await asyncio.to_thread(bridge_members, settings)
    missing = [
        what
        for what, ok in (("kafkaorg worker", bool(pollers)), ("kafkaorg bridge", members > 0))
        if not ok
    ]
    if missing:
        raise BenchError(f"no {' and no '.join(missing)} is running; {START_HINT}")
    return pollers, members


class PlatformProcesses:
    """``kafkaorg worker`` and ``kafkaorg bridge`` subprocesses for one run (--start-workers)."""

    def __init__(self) -> None:
        self.log_dir = Path(tempfile.mkdtemp(prefix="kafkaorg-bench-"))
        env = os.environ.copy()
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        self.processes = {
            command: KafkaorgProcess(command, self.log_dir, env=env, cwd=REPO_ROOT)
            for command in ("worker", "bridge")
        }

    def start(self) -> None:
        for process in self.processes.values():
            process.start()
        err.print(f"started worker and bridge (logs in {self.log_dir})")

    def check_alive(self) -> None:
        for process in self.processes.values():
            if process.returncode is not None:
                raise BenchError(
                    f"`{process.title}` exited with {process.returncode}; see {process.log_path}"
                )

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes.values()]

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop(timeout=20)


async def wait_for_own_processes(
    client: Client, settings: Settings, processes: PlatformProcesses, timeout: float = 60
) -> tuple[list[str], int]:
    """Until our worker polls and a bridge is in its group (bounded; dies early if they do)."""
    worker_pid = processes.processes["worker"].pid
    bridge_pid = processes.processes["bridge"].pid
    deadline = time.monotonic() + timeout
    while True:
        processes.check_alive()
        pollers = await worker_pollers(client, settings)
        members = await asyncio.to_thread(bridge_members, settings)
        # On a fresh broker no topic matches the bridge's pattern yet, so the group has no
        # members; the bridge's own status file says it is up all the same.
        bridge_up = members > 0 or any(
            s.get("pid") == bridge_pid for s in read_bridge_statuses(settings)
        )
        if any(p.startswith(f"{worker_pid}@") for p in pollers) and bridge_up:
            return pollers, members
        if time.monotonic() > deadline:
            raise BenchError(
                f"worker/bridge not ready within {timeout:.0f} s; see logs in {processes.log_dir}"
            )
        await asyncio.sleep(0.5)


# --------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    """What the numbers were measured on; a 2-core shared VM and a workstation differ a lot."""
    model = "unknown"
    memory_gib = math.nan
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gib": memory_gib,
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def machine_line(m: dict[str, Any]) -> str:
    return (
        f"{m['nproc']} CPU · {m['memory_gib']} GiB · {m['cpu_model']} · Python {m['python']} · "
        f"load {' '.join(str(x) for x in m['load_average_at_start'])}"
    )


def ratios(results: dict[str, PhaseResult]) -> dict[str, float]:
    """Throughput ratios of kafkaorg against the two references measured in this run."""
    out: dict[str, float] = {}
    platform_rate = results["kafkaorg"].records_per_s if "kafkaorg" in results else 0.0
    for other in ("ceiling", "floor"):
        if platform_rate and other in results and results[other].records_per_s:
            out[f"kafkaorg/{other}"] = round(platform_rate / results[other].records_per_s, 3)
    return out


def render(report: dict[str, Any], results: dict[str, PhaseResult]) -> Table:
    table = Table(title="echo agent, end to end (open-loop burst)", title_justify="left")
    for column in ("design", "records", "records/s", "p50 ms", "p99 ms", "note"):
        table.add_column(column, justify="left" if column in ("design", "note") else "right")
    for name in PHASES:
        if name not in results:
            continue
        r = results[name]
        received = f"{r.received}" if r.complete else f"{r.received}/{r.records}"
        table.add_row(
            name,
            received,
            f"{r.records_per_s:,.0f}",
            f"{r.p50_ms:,.0f}",
            f"{r.p99_ms:,.0f}",
            r.note,
        )
    captions = [f"{k} = {v:g}" for k, v in report["ratios"].items()]
    captions.append(machine_line(report["machine"]))
    table.caption = " · ".join(captions[:-1]) + ("\n" if len(captions) > 1 else "") + captions[-1]
    table.caption_justify = "left"
    return table


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_echo",
        description="Echo agent end to end: kafkaorg vs a plain Kafka loop and a "
        "workflow-per-record design, measured in one run.",
    )
    parser.add_argument("--records", type=int, default=10_000, help="records per burst")
    parser.add_argument(
        "--floor-records", type=int, default=2000, help="records for the (slow) floor"
    )
    parser.add_argument("--correlation-ids", type=int, default=300)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=20, help="untimed records first")
    parser.add_argument("--floor-concurrency", type=int, default=64, help="starts in flight")
    parser.add_argument(
        "--phase-timeout", type=float, default=600, help="seconds a burst may take at most"
    )
    parser.add_argument(
        "--phases", default=",".join(PHASES), help="comma list of ceiling,kafkaorg,floor"
    )
    parser.add_argument(
        "--start-workers",
        action="store_true",
        help="run `kafkaorg worker` and `kafkaorg bridge` for this run, stop them after",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--out", type=Path, help="also write the JSON report to this file")
    args = parser.parse_args(argv)
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = sorted(set(phases) - set(PHASES))
    if unknown or not phases:
        parser.error(f"--phases takes a comma list of {', '.join(PHASES)}")
    if min(args.records, args.floor_records, args.correlation_ids, args.partitions) < 1:
        parser.error("--records, --floor-records, --correlation-ids, --partitions must be >= 1")
    args.phases = [p for p in PHASES if p in phases]
    return args


async def run_bench(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, PhaseResult]]:
    settings = get_settings()
    run_id = uuid.uuid4().hex[:10]
    started = datetime.now(UTC)
    host = machine()  # before the run: its load average says how busy the machine already was
    client = await check_stack(settings)
    processes: PlatformProcesses | None = None
    try:
        if "kafkaorg" in args.phases:
            if args.start_workers:
                processes = PlatformProcesses()
                processes.start()
                pollers, members = await wait_for_own_processes(client, settings, processes)
            else:
                pollers, members = await check_processes(client, settings)
        else:
            pollers, members = [], 0
        results: dict[str, PhaseResult] = {}
        for name in args.phases:
            if processes is not None:
                processes.check_alive()
            if name == "ceiling":
                results[name] = await run_ceiling(settings, args, run_id)
            elif name == "kafkaorg":
                results[name] = await run_kafkaorg(settings, client, args, run_id)
            else:
                results[name] = await run_floor(settings, client, args, run_id)
    finally:
        if processes is not None:
            await asyncio.to_thread(processes.stop)
    report: dict[str, Any] = {
        "benchmark": "echo",
        "run_id": run_id,
        "started_at": started.isoformat(),
        "command": " ".join(["python -m bench.bench_echo", *sys.argv[1:]]),
        "machine": host,
        "config": {
            "records": args.records,
            "floor_records": args.floor_records,
            "correlation_ids": args.correlation_ids,
            "partitions": args.partitions,
            "warmup": args.warmup,
            "floor_concurrency": args.floor_concurrency,
            "bridge_batch_size": settings.bridge_batch_size,
            "bridge_poll_timeout_s": settings.bridge_poll_timeout_s,
        },
        "stack": {
            "kafka": settings.kafka_bootstrap,
            "temporal": settings.temporal_address,
            "workers_polling_kafkaorg": len(pollers),
            "bridge_group_members": members,
            "own_worker_and_bridge": processes is not None,
        },
        "results": {name: asdict(r) for name, r in results.items()},
        "ratios": ratios(results),
    }
    return report, results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report, results = asyncio.run(run_bench(args))
    except BenchError as exc:
        err.print(f"[red]bench_echo: error:[/] {exc}", soft_wrap=True)
        return 1
    except KafkaorgError as exc:
        err.print(f"[red]bench_echo: error:[/] {exc}", soft_wrap=True)
        return 1
    text = json.dumps(report, indent=2, default=str)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    if args.json:
        sys.stdout.write(text + "\n")
    else:
        Console().print(render(report, results))
        if (
            report["stack"]["workers_polling_kafkaorg"] > 1
            or report["stack"]["bridge_group_members"] > 1
        ):
            err.print(
                "[yellow]note: this stack may be shared: "
                f"{report['stack']['workers_polling_kafkaorg']} worker identities polled "
                f"{TASK_QUEUE!r} in the last {POLLER_FRESH_S:.0f} s (stopped ones linger that "
                f"long), {report['stack']['bridge_group_members']} bridge group member(s); "
                "their load may be in these numbers[/]"
            )
    incomplete = [r.name for r in results.values() if not r.complete]
    return 1 if incomplete else 0


__all__ = ["NaiveEchoWorkflow", "main"]

if __name__ == "__main__":
    sys.exit(main())
