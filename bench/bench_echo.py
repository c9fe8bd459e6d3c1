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
import sys
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.echo.ceiling import run_ceiling
from bench.echo.floor import run_floor
from bench.echo.harness import PHASES, BenchError, PhaseResult, err
from bench.echo.kafkaorg_path import run_kafkaorg
from bench.echo.report import machine, ratios, render
from bench.echo.stack import (
    POLLER_FRESH_S,
    PlatformProcesses,
    check_processes,
    check_stack,
    wait_for_own_processes,
)
from kafkaorg.config import get_settings
from kafkaorg.errors import KafkaorgError
from kafkaorg.names import TASK_QUEUE


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


__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
