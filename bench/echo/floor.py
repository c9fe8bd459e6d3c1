"""The floor: one Temporal workflow (and one activity) per record.

The design kafkaorg was built to avoid, hosted in this process on its own task
queue: a driver consumes the input topic and starts a workflow per record, whose
one activity produces the same echo output the platform's agent step builds.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
from datetime import timedelta

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from bench.echo.harness import PhaseResult, bench_records, err, measure, scratch_topics
from kafkaorg.config import Settings
from kafkaorg.envelope import Record, utcnow
from kafkaorg.kafka import client_config, create_producer
from kafkaorg.kinds import emissions_for
from kafkaorg.spec import AgentSpec


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
    """One floor phase: scratch topics, an in-process worker on a fresh task queue, a driver."""
    in_topic, out_topic = f"bench-{run_id}-floor-in", f"bench-{run_id}-floor-out"
    task_queue = f"bench-naive-{run_id}"
    org = f"bench-{run_id}"
    note = ""
    if args.floor_records != args.records:
        note = f"{args.floor_records} records (--floor-records), not {args.records}"
    with scratch_topics(settings, [in_topic, out_topic], args.partitions):
        acks = AsyncProducer(settings, asyncio.get_running_loop())
        # Unsandboxed: the sandbox would re-import this module, and whatever it imports that
        # is not passed through, for every workflow run; skipping it only makes the floor
        # faster, i.e. the ratio humbler.
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
