"""The chaos driver: keyed records through a chain of two agents while things break.

Modelled on Kafka's transactions system test: a paced producer writes keyed
records with per-key sequence numbers; a reader follows the last topic of the
chain; at set points of progress the driver SIGKILLs the bridge and the worker
and restarts the Kafka broker and the Temporal dev server. Afterwards it checks
that every input had exactly one effect and that per-key order held, and counts
what it could not prevent (raw duplicates republished by a retried activity).

Used by ``tests/chaos/test_chaos.py`` (CI size) and ``bench/bench_chaos.py``
(100,000 records), so both run the same code.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from pydantic import BaseModel, Field
from temporalio.client import Client

from kafkaorg.config import Settings
from kafkaorg.devstack import DevStack
from kafkaorg.envelope import Record, derived_id, new_record
from kafkaorg.kafka import Outgoing, client_config, producer_config
from kafkaorg.names import agent_workflow_id, kafka_topic
from workflows.agent import AgentWorkflow

EventKind = Literal["kill-bridge", "kill-worker", "restart-kafka", "restart-temporal"]

DEFAULT_SCHEDULE: tuple[tuple[float, EventKind], ...] = (
    (0.20, "kill-bridge"),
    (0.28, "kill-worker"),
    (0.36, "restart-kafka"),
    (0.44, "kill-bridge"),
    (0.52, "kill-worker"),
    (0.60, "restart-temporal"),
    (0.68, "kill-bridge"),
    (0.76, "kill-worker"),
)
"""Progress (share of inputs whose effect is out) at which each event happens."""


class Restartable:
    """What the driver kills and restarts; tests and the bench wire in their processes."""

    def __init__(
        self,
        kill_bridge: Callable[[], None],
        kill_worker: Callable[[], None],
        stack: DevStack,
    ) -> None:
        self.kill_bridge = kill_bridge
        self.kill_worker = kill_worker
        self.stack = stack

    def run(self, kind: EventKind) -> None:
        if kind == "kill-bridge":
            self.kill_bridge()
        elif kind == "kill-worker":
            self.kill_worker()
        elif kind == "restart-kafka":
            self._restart(self.stack.kafka)
        else:
            self._restart(self.stack.temporal)

    def _restart(self, service: Any) -> None:
        if not service.stop():
            raise RuntimeError(f"{service.title} was not started by this stack; cannot restart it")
        # Only what was stopped comes back: the trace backend (Phoenix) takes tens of seconds
        # to start, and the chain would run on meanwhile, past the next events' thresholds.
        self.stack.up(workers=False, trace_backend=False)


class ChaosEvent(BaseModel):
    kind: EventKind
    at_progress: float
    """Share of inputs with their effect out when the event began."""
    took_s: float
    """How long the kill/restart itself took."""
    recovery_s: float | None = None
    """From the event's start until the first input sent after it had its effect."""
    every_key_s: float | None = None
    """Until every key had an input sent after the event come out: the slowest partition
    (with two bridges, the killed one's partitions wait while the other's flow)."""


class HopCounts(BaseModel):
    """One topic of the chain, read committed from the beginning."""

    messages: int
    distinct_ids: int
    raw_duplicates: int


class ChaosReport(BaseModel):
    records: int
    keys: int
    duration_s: float
    events: list[ChaosEvent]
    missing_ids: int
    """Expected output ids (derived from the inputs' ids) never seen on ``out``."""
    unexpected_ids: int
    """Distinct ids on ``out`` that no input should have produced."""
    lost: int
    """Inputs without an effect on the last topic."""
    doubled: int
    """Inputs with more than one distinct effect (two different output ids)."""
    reordered_keys: int
    """Keys whose effects came out of sequence order."""
    processed: dict[str, int]
    """Records each agent's workflow processed (after its dedup): N each means one effect."""
    hops: dict[str, HopCounts]
    median_recovery_s: dict[str, float] = Field(default_factory=dict)
    median_every_key_s: dict[str, float] = Field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return (
            self.missing_ids == 0
            and self.unexpected_ids == 0
            and self.lost == 0
            and self.doubled == 0
            and self.reordered_keys == 0
            and all(n == self.records for n in self.processed.values())
        )

    def lines(self) -> list[str]:
        out = [
            f"records {self.records} over {self.keys} keys in {self.duration_s:.1f} s",
            f"output ids: {self.missing_ids} missing, {self.unexpected_ids} unexpected; "
            f"lost {self.lost}, doubled {self.doubled}, reordered keys {self.reordered_keys}",
            "processed per agent: "
            + ", ".join(f"{agent} {n}" for agent, n in sorted(self.processed.items())),
        ]
        for topic, hop in self.hops.items():
            out.append(
                f"{topic}: {hop.messages} messages, {hop.distinct_ids} distinct ids, "
                f"{hop.raw_duplicates} raw duplicate(s)"
            )
        for event in self.events:
            recovery = f"{event.recovery_s:.1f} s" if event.recovery_s is not None else "n/a"
            every = f"{event.every_key_s:.1f} s" if event.every_key_s is not None else "n/a"
            out.append(
                f"{event.kind:<17} at {event.at_progress:5.1%}: took {event.took_s:.1f} s, "
                f"recovered in {recovery}, every key in {every}"
            )
        for kind, median in sorted(self.median_recovery_s.items()):
            every_key = self.median_every_key_s.get(kind)
            tail = f" (every key: {every_key:.1f} s)" if every_key is not None else ""
            out.append(f"median recovery after {kind}: {median:.1f} s{tail}")
        return out


def chain_spec(org: str, partitions: int = 3) -> dict[str, Any]:
    """``in`` → rule ``first`` → ``mid`` → echo ``second`` → ``out``; payloads copied through."""
    return {
        "org": org,
        "topics": [
            {"name": "in", "partitions": partitions},
            {"name": "mid", "partitions": partitions},
            {"name": "out", "partitions": partitions},
        ],
        "agents": [
            {
                "name": "first",
                "kind": "rule",
                "subscribes": ["in"],
                "publishes": ["mid"],
                "rules": [{"on": "*", "emit": "chaos.mid", "to": "mid"}],
            },
            {"name": "second", "kind": "echo", "subscribes": ["mid"], "publishes": ["out"]},
        ],
    }


def expected_output_ids(org: str, inputs: list[Record]) -> set[str]:
    """The one id each input's effect on ``out`` must have: both agents derive output ids
    from (workflow id, input id, index), so the whole chain's outcome is known up front."""
    first, second = agent_workflow_id(org, "first"), agent_workflow_id(org, "second")
    return {derived_id(second, derived_id(first, r.id, 0), 0) for r in inputs}


def make_inputs(org: str, records: int, keys: int) -> list[Record]:
    seqs: dict[int, int] = defaultdict(int)
    inputs = []
    for n in range(records):
        key = n % keys
        record = new_record(
            org=org,
            type="chaos.in",
            source="user:chaos",
            correlation_id=f"key-{key}",
            payload={"key": key, "seq": seqs[key]},
        )
        # Both agents copy payloads, so the input's id reaches the last topic with it.
        record.payload["input"] = record.id
        inputs.append(record)
        seqs[key] += 1
    return inputs


@dataclass
class _Seen:
    """What the reader found on a topic so far (guarded by ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    messages: list[tuple[int, int, Record]] = field(default_factory=list)
    """(partition, offset, record) in arrival order."""
    effects: dict[str, float] = field(default_factory=dict)
    """Input id → when its (first) effect arrived (the last hop only)."""


class _Reader(threading.Thread):
    """Follows one topic read-committed from the beginning until told to stop."""

    def __init__(
        self, settings: Settings, topic: str, seen: _Seen, input_of: Callable[[Record], str]
    ) -> None:
        super().__init__(name=f"chaos-reader-{topic}", daemon=True)
        self.settings, self.topic, self.seen, self.input_of = settings, topic, seen, input_of
        self.stop = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        consumer = Consumer(
            {
                **client_config(self.settings),
                "group.id": f"chaos-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        try:
            metadata = consumer.list_topics(self.topic, timeout=30)
            partitions = len(metadata.topics[self.topic].partitions)
            consumer.assign(
                [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in range(partitions)]
            )
            while not self.stop.is_set():
                message = consumer.poll(0.2)
                if message is None:
                    continue
                err = message.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF and err.fatal():
                        self.error = str(err)
                        return
                    continue  # the broker restarting: the client reconnects by itself
                record = Record.from_kafka_value(message.value() or b"")
                source = self.input_of(record)
                with self.seen.lock:
                    self.seen.messages.append(
                        (message.partition() or 0, message.offset() or 0, record)
                    )
                    self.seen.effects.setdefault(source, time.monotonic())
        finally:
            consumer.close()


def _gated_produce(
    settings: Settings,
    topic: str,
    records: list[Record],
    allowed: Callable[[], int],
    stop: threading.Event,
    sent: list[int],
) -> None:
    """Produce record i once ``allowed() > i``: inputs stay a window ahead of the effects, so
    records are in flight at every event however long the events take. librdkafka buffers
    and retries while the broker is down."""
    producer = Producer(producer_config(settings))
    for i, record in enumerate(records):
        while allowed() <= i:
            if stop.is_set():
                return
            producer.poll(0.05)
        item = Outgoing(topic, record)
        while True:
            try:
                producer.produce(
                    topic, key=record.kafka_key(), value=item.value, headers=record.kafka_headers()
                )
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        sent[0] = i + 1
    remaining = producer.flush(120)
    if remaining:
        raise RuntimeError(f"{remaining} input(s) not acknowledged by Kafka")


async def run_chaos(
    settings: Settings,
    client: Client,
    org: str,
    targets: Restartable,
    *,
    records: int,
    keys: int = 50,
    window: int | None = None,
    schedule: tuple[tuple[float, EventKind], ...] = DEFAULT_SCHEDULE,
    timeout_s: float = 600.0,
    log: Callable[[str], None] = print,
) -> ChaosReport:
    """Drive ``records`` inputs through the org's chain (already started) while breaking it."""
    import asyncio

    inputs = make_inputs(org, records, keys)
    window = window or max(100, records // 20)
    input_ids = {r.id for r in inputs}
    seq_of = {r.id: (int(str(r.payload["key"])), int(str(r.payload["seq"]))) for r in inputs}
    held_back = max(1, records // 10)  # sent after the last event, so every event meets flow
    # Inputs are sent no further than the next event's threshold plus the window until that
    # event has happened: a slow event cannot let the chain run past the ones after it, and
    # every event still meets records in flight (and inputs sent after it, for its recovery).
    upcoming = [0]
    mid, out = _Seen(), _Seen()
    readers = [
        _Reader(settings, kafka_topic(org, "mid"), mid, lambda r: r.causation_id or ""),
        _Reader(settings, kafka_topic(org, "out"), out, lambda r: str(r.payload.get("input"))),
    ]
    stop_producing = threading.Event()
    started = time.monotonic()
    for reader in readers:
        reader.start()
    release_rest = threading.Event()
    sent = [0]

    def allowed() -> int:
        with out.lock:
            ahead = len(out.effects) + window
        if release_rest.is_set():
            return ahead
        limit = records - held_back
        if upcoming[0] < len(schedule):
            limit = min(limit, int(schedule[upcoming[0]][0] * records) + window)
        return min(ahead, limit)

    producing = threading.Thread(
        target=_gated_produce,
        args=(settings, kafka_topic(org, "in"), inputs, allowed, stop_producing, sent),
        daemon=True,
    )
    producing.start()

    def progress() -> float:
        with out.lock:
            return len(out.effects) / records

    events: list[ChaosEvent] = []
    deadline = started + timeout_s
    try:
        for threshold, kind in schedule:
            while progress() < threshold:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"progress stuck at {progress():.1%} before {kind}")
                await asyncio.sleep(0.1)
            at, began, first_after = progress(), time.monotonic(), sent[0]
            log(f"chaos: {kind} at {at:.1%}")
            upcoming[0] += 1  # inputs may go on towards the next event's threshold
            await asyncio.to_thread(targets.run, kind)
            events.append(ChaosEvent(kind=kind, at_progress=at, took_s=time.monotonic() - began))
            # Recovered: an input sent after the event began has come out the other end.
            later = {r.id for r in inputs[first_after : records - held_back]}
            recovered_at: float | None = None
            while recovered_at is None and later and time.monotonic() < deadline:
                with out.lock:
                    times = [t for i, t in out.effects.items() if i in later]
                if times:
                    recovered_at = min(times)
                else:
                    await asyncio.sleep(0.1)
            if recovered_at is not None:
                events[-1].recovery_s = recovered_at - began
            keys_later = {seq_of[i][0] for i in later}
            while keys_later and time.monotonic() < deadline:
                firsts: dict[int, float] = {}
                with out.lock:
                    for i, t in out.effects.items():
                        if i in later:
                            key = seq_of[i][0]
                            firsts[key] = min(firsts.get(key, t), t)
                if keys_later <= firsts.keys():
                    events[-1].every_key_s = max(firsts.values()) - began
                    break
                await asyncio.sleep(0.1)
        release_rest.set()
        # Polled: the readers are threads, the counters theirs.
        while progress() < 1.0 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)  # late duplicates, if any, are counted too
    finally:
        stop_producing.set()
        producing.join(timeout=130)
        for reader in readers:
            reader.stop.set()
        for reader in readers:
            reader.join(timeout=30)
    duration = time.monotonic() - started
    for reader in readers:
        if reader.error:
            raise RuntimeError(f"reader of {reader.topic}: {reader.error}")

    effects_of: dict[str, set[str]] = defaultdict(set)
    order: dict[int, list[int]] = defaultdict(list)
    first_seen: set[str] = set()
    for _partition, _offset, record in out.messages:
        source = str(record.payload.get("input"))
        effects_of[source].add(record.id)
        if record.id not in first_seen:
            first_seen.add(record.id)
            if source in seq_of:
                key, seq = seq_of[source]
                order[key].append(seq)
    processed: dict[str, int] = {}
    for agent in ("first", "second"):
        handle = client.get_workflow_handle_for(AgentWorkflow.run, agent_workflow_id(org, agent))
        processed[agent] = (await handle.query(AgentWorkflow.status)).processed

    def hop(seen: _Seen) -> HopCounts:
        ids = [r.id for _, _, r in seen.messages]
        return HopCounts(
            messages=len(ids), distinct_ids=len(set(ids)), raw_duplicates=len(ids) - len(set(ids))
        )

    expected = expected_output_ids(org, inputs)
    out_ids = {r.id for _, _, r in out.messages}
    by_kind: dict[str, list[float]] = defaultdict(list)
    every_key_by_kind: dict[str, list[float]] = defaultdict(list)
    for event in events:
        if event.recovery_s is not None:
            by_kind[event.kind].append(event.recovery_s)
        if event.every_key_s is not None:
            every_key_by_kind[event.kind].append(event.every_key_s)
    return ChaosReport(
        records=records,
        keys=keys,
        duration_s=duration,
        events=events,
        missing_ids=len(expected - out_ids),
        unexpected_ids=len(out_ids - expected),
        lost=len(input_ids - set(effects_of)),
        doubled=sum(1 for i in input_ids if len(effects_of.get(i, ())) > 1),
        reordered_keys=sum(1 for seqs in order.values() if seqs != sorted(seqs)),
        processed=processed,
        hops={"mid": hop(mid), "out": hop(out)},
        median_recovery_s={k: statistics.median(v) for k, v in by_kind.items()},
        median_every_key_s={k: statistics.median(v) for k, v in every_key_by_kind.items()},
    )
