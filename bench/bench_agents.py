"""A thousand agents: how fast an org of N echo agents starts, how long one record takes
to reach all of them, and what they cost the worker in memory, per configuration.

Each configuration gets a fresh worker and bridge (started here, with its settings in
their environment) and a fresh org of ``--agents`` echo agents that all subscribe to one
topic. Measured, in order:

* **start**: ``launch_org`` (what ``kafkaorg org start`` runs) until the org reports
  running: agents per second.
* **fan-out**: one record to the shared topic, until all N outputs are read back.
* **memory**: the worker's resident set (``VmRSS``) once every agent has taken its step,
  and again after ``--idle-s`` seconds of quiet.

Configurations (``--configs``): ``concurrency/cache`` pairs, the agent lifecycle
concurrency (``KAFKAORG_AGENT_LIFECYCLE_CONCURRENCY``; 1 is the old one-at-a-time start)
and the worker's workflow cache (``KAFKAORG_WORKER_MAX_CACHED_WORKFLOWS``), measured one
after the other in one run::

    python -m bench.bench_agents --agents 1000 --configs 1/1000,32/1000,32/200 \\
        --out bench/results/2026-12-02-agents/agents.json

Needs the core stack up (``kafkaorg dev up``) and no other worker or bridge running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError

from bench.echo.harness import BenchError, err
from bench.echo.kafkaorg_path import stop_org
from bench.echo.report import machine
from bench.echo.stack import PlatformProcesses, check_stack, wait_for_own_processes
from kafkaorg import client as service
from kafkaorg.config import Settings, get_settings
from kafkaorg.envelope import new_record
from kafkaorg.kafka import Outgoing, client_config, create_producer, produce_and_wait
from kafkaorg.names import kafka_topic
from kafkaorg.spec import OrgSpec, validate_spec


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--configs", default="1/1000,32/1000,32/200")
    parser.add_argument("--idle-s", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args(argv)


def org_spec(org: str, agents: int) -> OrgSpec:
    return validate_spec(
        {
            "org": org,
            "limits": {"max_agents": max(50, agents)},
            "topics": [{"name": "tasks", "partitions": 1}, {"name": "results", "partitions": 4}],
            "agents": [
                {
                    "name": f"echo-{i:04d}",
                    "kind": "echo",
                    "subscribes": ["tasks"],
                    "publishes": ["results"],
                }
                for i in range(agents)
            ],
        }
    )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for pid {pid}")


def wait_outputs(settings: Settings, org: str, expected: int, timeout: float) -> float:
    """Read the results topic from the start until ``expected`` records; when the last came."""
    consumer = Consumer(
        client_config(
            settings,
            **{
                "group.id": f"bench-agents-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            },
        )
    )
    consumer.subscribe([kafka_topic(org, "results")])
    seen = 0
    deadline = time.monotonic() + timeout
    try:
        while seen < expected:
            if time.monotonic() > deadline:
                raise BenchError(f"{seen} of {expected} outputs within {timeout:.0f} s")
            for message in consumer.consume(500, 0.5):
                error = message.error()
                if error is None:
                    seen += 1
                elif error.code() != KafkaError._PARTITION_EOF:
                    raise BenchError(f"consuming outputs: {error}")
        return time.monotonic()
    finally:
        consumer.close()


async def one_config(
    settings: Settings, agents: int, concurrency: int, cache: int, idle_s: float
) -> dict[str, Any]:
    processes = PlatformProcesses(
        {
            "KAFKAORG_AGENT_LIFECYCLE_CONCURRENCY": str(concurrency),
            "KAFKAORG_WORKER_MAX_CACHED_WORKFLOWS": str(cache),
        }
    )
    processes.start()
    client = await check_stack(settings)
    try:
        await wait_for_own_processes(client, settings, processes)
        worker = processes.processes["worker"].pid
        rss_before = rss_mb(worker)
        org = f"bench-agents-{uuid.uuid4().hex[:6]}"
        spec = org_spec(org, agents)
        started = time.monotonic()
        # Not launch_org's own bound (what `org start` waits): the old one-at-a-time start
        # of 1,000 agents outlasted it. Here the org gets as long as it takes.
        await service.launch_org(settings, spec, wait=False)
        await service.wait_until_applied(await service.running_org(client, org), 1200)
        start_s = time.monotonic() - started
        running = await service.running_agents(client, org)
        err.print(f"  {concurrency}/{cache}: {agents} agents running in {start_s:.1f} s")

        record = new_record(org=org, type="task.request", source="user:bench", payload={"n": 1})
        producer = create_producer(settings)
        sent = time.monotonic()
        await asyncio.to_thread(
            produce_and_wait, producer, [Outgoing(kafka_topic(org, "tasks"), record)]
        )
        last = await asyncio.to_thread(wait_outputs, settings, org, agents, 600)
        fanout_s = last - sent
        err.print(f"  {concurrency}/{cache}: one record to {agents} agents in {fanout_s:.1f} s")
        rss_busy = rss_mb(worker)
        await asyncio.sleep(idle_s)
        rss_idle = rss_mb(worker)
        await stop_org(client, org)
        return {
            "concurrency": concurrency,
            "max_cached_workflows": cache,
            "agents": agents,
            "running_after_start": running,
            "start_s": round(start_s, 2),
            "agents_per_s": round(agents / start_s, 1),
            "fanout_all_outputs_s": round(fanout_s, 2),
            "worker_rss_mb_before": round(rss_before, 1),
            "worker_rss_mb_after_fanout": round(rss_busy, 1),
            "worker_rss_mb_idle": round(rss_idle, 1),
        }
    finally:
        processes.stop()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = get_settings()
    await check_stack(settings)
    configs = []
    for item in args.configs.split(","):
        concurrency, cache = (int(x) for x in item.split("/"))
        configs.append(await one_config(settings, args.agents, concurrency, cache, args.idle_s))
    return {"when": datetime.now(UTC).isoformat(), "machine": machine(), "configs": configs}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = asyncio.run(run(args))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
