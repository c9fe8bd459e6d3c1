"""What a flow costs: a three-step ``ask`` flow against the same three hops wired by hand,
and how long a 100-way fan-out takes to gather, measured side by side in one run.

One org of echo agents (so the agents' own work is next to nothing and what is measured
is the platform), with a fresh worker and bridge started here:

* **chain**: a record sent to ``chain-1``, answered by ``c1`` onto ``chain-2``, by ``c2``
  onto ``chain-3``, by ``c3`` onto ``chain-out``: three agents, three hops, wired by hand
  with topics. Timed from the send until the last agent's output is read.
* **flow**: a ``FlowWorkflow`` run of ``three`` (``ask: a``, ``ask: b``, ``ask: c``), the
  same three agents' work, routed by the run: each request published by the run, each
  answer routed back by the bridge as a signal. Timed from the start until the result.
* **fanout**: a run of ``fan`` (``map`` over 100 items to ``a``, ``gather: all``): one
  publish of 100 requests, 100 answers routed back. Timed from the start until gathered.

Each round measures, in rotating order, one at a time (latency: ``--sequential`` runs of
chain and flow; the step overhead is (flow - chain) / 3) and at once (throughput:
``--burst`` chains and flow runs started together, runs per second), and ``--fanouts``
fan-out runs. Medians over ``--rounds``.

    python -m bench.bench_flows --rounds 3 --out bench/results/2026-12-01-flows/flows.json

Needs the core stack up (``kafkaorg dev up``) and no other worker or bridge running.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition
from temporalio.client import Client

from bench.echo.harness import BenchError, err
from bench.echo.kafkaorg_path import stop_org
from bench.echo.report import machine, write_report
from bench.echo.stack import PlatformProcesses, check_stack, wait_for_own_processes
from kafkaorg import client as service
from kafkaorg.config import Settings, get_settings
from kafkaorg.contracts import FlowStatus
from kafkaorg.envelope import Record, new_record
from kafkaorg.kafka import Outgoing, client_config, create_producer, produce_and_wait
from kafkaorg.names import kafka_topic
from kafkaorg.spec import validate_spec

VARIANTS = ("chain", "flow", "fanout")
FAN_OUT = 100
STEPS = 3


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sequential", type=int, default=10, help="one-at-a-time runs a round")
    parser.add_argument("--burst", type=int, default=50, help="runs started at once a round")
    parser.add_argument("--fanouts", type=int, default=2, help="100-way fan-out runs a round")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args(argv)


def bench_spec(org: str) -> dict[str, Any]:
    echo = {"kind": "echo"}
    topics = ["a-in", "b-in", "c-in", "replies", "chain-1", "chain-2", "chain-3", "chain-out"]
    agents = [
        {**echo, "name": name, "subscribes": [f"{name}-in"], "publishes": ["replies"]}
        for name in ("a", "b", "c")
    ] + [
        {**echo, "name": f"c{i}", "subscribes": [src], "publishes": [dst]}
        for i, (src, dst) in enumerate(
            [("chain-1", "chain-2"), ("chain-2", "chain-3"), ("chain-3", "chain-out")], start=1
        )
    ]
    flows = [
        {
            "name": "three",
            "steps": [
                {"id": "one", "ask": "a", "timeout_s": 60},
                {"id": "two", "ask": "b", "timeout_s": 60},
                {"id": "three", "ask": "c", "timeout_s": 60},
            ],
        },
        {
            "name": "fan",
            "steps": [{"id": "fan", "map": {"over": "input.items", "ask": "a"}, "timeout_s": 120}],
        },
    ]
    return {
        "org": org,
        "topics": [{"name": t, "partitions": 1} for t in topics],
        "agents": agents,
        "flows": flows,
    }


class ChainOutputs(threading.Thread):
    """Stamps each record on ``chain-out`` with the moment it is polled, by correlation id
    (the chain keeps the input's: one id per record sent)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        super().__init__(name="chain-out", daemon=True)
        self.seen: dict[str, float] = {}
        self.changed = threading.Condition()
        self._halt = threading.Event()
        self._consumer = Consumer(
            client_config(
                settings,
                **{
                    "group.id": f"bench-flows-{uuid.uuid4().hex[:8]}",
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                    "fetch.wait.max.ms": 10,
                },
            )
        )
        self._consumer.assign([TopicPartition(topic, 0, 0)])

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
                        err.print(f"[yellow]chain-out: {error}[/]")
                    continue
                try:
                    record = Record.from_kafka_value(message.value() or b"")
                except ValueError:
                    continue
                with self.changed:
                    self.seen.setdefault(record.correlation_id, now)
                    self.changed.notify_all()
        finally:
            self._consumer.close()

    def wait_for(self, ids: set[str], timeout: float) -> dict[str, float]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not ids <= set(self.seen):
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = len(ids - set(self.seen))
                    raise BenchError(f"chain: {missing} of {len(ids)} records never came out")
                self.changed.wait(min(left, 0.5))
            return {i: self.seen[i] for i in ids}

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=15)


async def chain_records(
    settings: Settings, outputs: ChainOutputs, org: str, count: int, timeout: float
) -> list[float]:
    """Send ``count`` records into the chain at once; each one's time to come out (s)."""
    records = [
        new_record(org=org, type="bench.hop", source="user:bench", payload={"i": i})
        for i in range(count)
    ]
    producer = create_producer(settings)
    sent_at = time.monotonic()
    topic = kafka_topic(org, "chain-1")
    await asyncio.to_thread(produce_and_wait, producer, (Outgoing(topic, r) for r in records))
    seen = await asyncio.to_thread(outputs.wait_for, {r.correlation_id for r in records}, timeout)
    return [seen[r.correlation_id] - sent_at for r in records]


async def flow_runs(
    client: Client,
    org: str,
    flow: str,
    inputs: list[dict[str, Any]],
    timeout: float,
    started: list[float] | None = None,
) -> list[float]:
    """Start one run per input at once; each one's time from start to result (s), and in
    ``started`` the time its start call took (the org's spec read, the workflow started)."""

    async def one(input: dict[str, Any]) -> float:
        began = time.monotonic()
        handle = await service.start_flow(client, org, flow, input)
        if started is not None:
            started.append(time.monotonic() - began)
        result = await asyncio.wait_for(handle.result(), timeout)
        if result.status != FlowStatus.COMPLETED:
            raise BenchError(f"flow {flow} run {handle.id} ended {result.status}: {result.failure}")
        return time.monotonic() - began

    return list(await asyncio.gather(*(one(i) for i in inputs)))


async def one_variant(
    variant: str,
    settings: Settings,
    client: Client,
    outputs: ChainOutputs,
    org: str,
    args: argparse.Namespace,
) -> dict[str, Any]:
    if variant == "fanout":
        items = {"items": list(range(FAN_OUT))}
        times = [
            (await flow_runs(client, org, "fan", [items], args.timeout))[0]
            for _ in range(args.fanouts)
        ]
        return {"gather_s": times}
    sequential: list[float] = []
    for n in range(args.sequential):
        if variant == "chain":
            sequential += await chain_records(settings, outputs, org, 1, args.timeout)
        else:
            sequential += await flow_runs(client, org, "three", [{"n": n}], args.timeout)
    began = time.monotonic()
    if variant == "chain":
        each = await chain_records(settings, outputs, org, args.burst, args.timeout)
    else:
        inputs = [{"n": n} for n in range(args.burst)]
        starts: list[float] = []
        each = await flow_runs(client, org, "three", inputs, args.timeout, starts)
    burst_s = time.monotonic() - began
    extra = {"burst_start_s": sorted(round(t, 3) for t in starts)} if variant == "flow" else {}
    return {
        **extra,
        "latency_s": sequential,
        "burst": args.burst,
        "burst_s": round(burst_s, 3),
        "burst_latency_s": sorted(round(t, 3) for t in each),
        "per_s": args.burst / burst_s,
    }


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def summary(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    def medians(variant: str, field: str) -> list[float]:
        return [statistics.median(r[variant][field]) for r in rounds if variant in r]

    out: dict[str, Any] = {}
    for variant in ("chain", "flow"):
        if any(variant in r for r in rounds):
            out[variant] = {
                "latency_p50_ms": _ms(statistics.median(medians(variant, "latency_s"))),
                "per_s": round(statistics.median(r[variant]["per_s"] for r in rounds), 1),
                "burst_latency_p50_ms": _ms(statistics.median(medians(variant, "burst_latency_s"))),
            }
    if "chain" in out and "flow" in out:
        extra = out["flow"]["latency_p50_ms"] - out["chain"]["latency_p50_ms"]
        out["step_overhead_ms"] = round(extra / STEPS, 1)
        out["flow_per_s/chain_per_s"] = round(out["flow"]["per_s"] / out["chain"]["per_s"], 3)
    gathers = [t for r in rounds for t in r.get("fanout", {}).get("gather_s", [])]
    if gathers:
        out["fanout"] = {
            "branches": FAN_OUT,
            "gather_p50_ms": _ms(statistics.median(gathers)),
            "gather_max_ms": _ms(max(gathers)),
            "runs": len(gathers),
        }
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = get_settings()
    client = await check_stack(settings)
    processes = PlatformProcesses()
    processes.start()
    org = f"bench-flows-{uuid.uuid4().hex[:6]}"
    outputs = ChainOutputs(settings, kafka_topic(org, "chain-out"))
    rounds: list[dict[str, dict[str, Any]]] = []
    try:
        await wait_for_own_processes(client, settings, processes)
        spec = validate_spec(bench_spec(org))
        await asyncio.wait_for(service.launch_org(settings, spec), timeout=90)
        outputs.start()
        err.print(f"org {org} ready; warming up …")
        await chain_records(settings, outputs, org, 3, args.timeout)
        await flow_runs(client, org, "three", [{"warm": 1}], args.timeout)
        await flow_runs(client, org, "fan", [{"items": list(range(10))}], args.timeout)
        for round_ in range(args.rounds):
            shift = round_ % len(VARIANTS)
            order = VARIANTS[shift:] + VARIANTS[:shift]
            measured: dict[str, dict[str, Any]] = {}
            for variant in order:
                err.print(f"round {round_ + 1}/{args.rounds}: {variant} …")
                measured[variant] = await one_variant(variant, settings, client, outputs, org, args)
                processes.check_alive()
                shown = {
                    k: (
                        f"p50 {round(statistics.median(v) * 1000)} ms"
                        if isinstance(v, list) and v
                        else v
                    )
                    for k, v in measured[variant].items()
                }
                err.print(f"  {shown}")
            rounds.append(measured)
        await stop_org(client, org)
    finally:
        outputs.stop()
        processes.stop()
    return {
        "when": datetime.now(UTC).isoformat(),
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "summary": summary(rounds),
        "rounds": rounds,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = asyncio.run(run(args))
    except BenchError as exc:
        err.print(f"[red]error:[/] {exc}")
        return 1
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
