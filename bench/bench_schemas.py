"""What record schemas cost on the record path: echo bursts with schemas enforced and without.

Two variants, alternated round by round on the same worker and bridge processes (so the
machine's noise falls on both alike):

* **plain**: an echo org with no schemas (the bridge and workers skip every check);
* **enforced**: the same org with a JSON Schema for ``bench.echo``, the type of every
  input and output, and ``policy.unregistered_types: reject``. Each record is checked
  three times: by the bridge as it arrives on ``inbox``, by the worker before the echo's
  output is produced, by the bridge again as the output arrives on ``outbox``.

Reported per variant: median records/s, p50 and p99 latency over the rounds, and the
ratio enforced/plain (the goal is >= 0.9). Needs the core stack up (``kafkaorg dev up``)
and no other worker or bridge::

    python -m bench.bench_schemas --records 5000 --rounds 3 \\
        --out bench/results/2026-12-07-schemas/schemas.json
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.echo.harness import BenchError, PhaseResult, bench_records, err, measure
from bench.echo.kafkaorg_path import stop_org
from bench.echo.report import machine, write_report
from bench.echo.stack import PlatformProcesses, check_stack, wait_for_own_processes
from kafkaorg import client as service
from kafkaorg.config import Settings, get_settings
from kafkaorg.kafka import create_producer
from kafkaorg.names import kafka_topic
from kafkaorg.spec import validate_spec

VARIANTS = ("plain", "enforced")

BENCH_ECHO_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "n": {"type": "integer", "minimum": 0},
        "tag": {"type": "string", "minLength": 1},
        "text": {"type": "string", "maxLength": 200},
    },
    "required": ["n", "tag", "text"],
    "additionalProperties": False,
}
"""The shape of ``bench_records``' payloads, closed and bounded: every field is checked."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5_000)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--correlation-ids", type=int, default=300)
    parser.add_argument("--phase-timeout", type=float, default=600)
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args(argv)


def org_spec(org: str, variant: str, partitions: int) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "org": org,
        "topics": [
            {"name": "inbox", "partitions": partitions},
            {"name": "outbox", "partitions": partitions},
        ],
        "agents": [
            {"name": "echo", "kind": "echo", "subscribes": ["inbox"], "publishes": ["outbox"]}
        ],
    }
    if variant == "enforced":
        spec["schemas"] = [{"type": "bench.echo", "schema": BENCH_ECHO_SCHEMA}]
        spec["policy"] = {"unregistered_types": "reject"}
        for topic in spec["topics"]:
            topic["types"] = ["bench.echo"]
    return spec


async def one_burst(settings: Settings, args: argparse.Namespace, variant: str) -> PhaseResult:
    client = await check_stack(settings)
    org = f"sch-{uuid.uuid4().hex[:8]}"
    spec = validate_spec(org_spec(org, variant, args.partitions), source="bench")
    await asyncio.wait_for(service.launch_org(settings, spec), timeout=90)
    # The workers' copy of the schemas is at most this old (the bridge's refreshes itself).
    await asyncio.sleep(settings.schema_cache_ttl_s + 0.5)
    try:
        return await measure(
            variant,
            settings,
            create_producer(settings),
            kafka_topic(org, "inbox"),
            kafka_topic(org, "outbox"),
            args.partitions,
            bench_records(org, args.records, args.correlation_ids, variant),
            bench_records(org, args.warmup, args.correlation_ids, "warmup"),
            args.phase_timeout,
        )
    finally:
        await asyncio.wait_for(stop_org(client, org), timeout=60)


def summary(results: dict[str, list[PhaseResult]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        v: {
            field: statistics.median(getattr(r, field) for r in runs)
            for field in ("records_per_s", "p50_ms", "p99_ms")
        }
        for v, runs in results.items()
        if runs
    }
    if "plain" in out and "enforced" in out:
        per_round = [
            e.records_per_s / p.records_per_s
            for p, e in zip(results["plain"], results["enforced"], strict=True)
        ]
        out["enforced/plain"] = round(
            out["enforced"]["records_per_s"] / out["plain"]["records_per_s"], 3
        )
        out["enforced/plain per round"] = [round(r, 3) for r in per_round]
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = get_settings()
    client = await check_stack(settings)
    processes = PlatformProcesses()
    processes.start()
    results: dict[str, list[PhaseResult]] = {v: [] for v in VARIANTS}
    try:
        await wait_for_own_processes(client, settings, processes)
        for round_ in range(args.rounds):
            order = VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                err.print(f"round {round_ + 1}/{args.rounds}: {variant} …")
                result = await one_burst(settings, args, variant)
                processes.check_alive()
                if not result.complete:
                    raise BenchError(f"{variant}: {result.received}/{result.records} came out")
                results[variant].append(result)
                err.print(
                    f"  {result.records_per_s:,.0f} records/s, p50 {result.p50_ms} ms, "
                    f"p99 {result.p99_ms} ms"
                )
    finally:
        processes.stop()
    return {
        "when": datetime.now(UTC).isoformat(),
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "summary": summary(results),
        "runs": {v: [asdict(r) for r in rs] for v, rs in results.items()},
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
