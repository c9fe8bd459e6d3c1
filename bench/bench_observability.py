"""What watching costs: the echo burst with metrics and traces off and on, and with the
console streaming the org's records to a live view, measured side by side in one run.

Each variant gets a fresh worker and bridge (settings are read at start), in rotating
order over several rounds:

* **bare**: ``KAFKAORG_METRICS_ENABLED=false``, no ``KAFKAORG_OTLP_ENDPOINT``;
* **metrics**: metrics on;
* **traced**: metrics, and every record's path traced to ``--otlp-endpoint``;
* **sampled**: metrics, and ``--sample-ratio`` of the traces (parent-based sampling);
* **streamed**: metrics, plus a ``kafkaorg console`` streaming every record of the org
  (both topics) to a live view, read here as a browser's EventSource would.

Reported: median throughput and p50/p99 latency per variant and the ratios to the
variant below it (metrics/bare, traced/metrics, sampled/metrics, streamed/metrics) and
to bare (sampled/bare: metrics and traces at the default sampling against neither); for
streamed, how many records the live view received and skipped (it shows a bounded
window; nothing queues without bound); with ``--otlp-endpoint sink``, the spans each
variant's processes exported per record (what sampling leaves out costs no span).

    python -m bench.bench_observability --records 10000 --rounds 2 \\
        --otlp-endpoint http://127.0.0.1:6006 --out bench/results/obs.json

Needs the core stack up (``kafkaorg dev up``, which runs Phoenix when installed) and no
other worker or bridge running. The trace backend runs on the same machine, so the
traced variants also pay for its ingestion.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.echo.harness import BenchError, PhaseResult, bench_records, err, measure
from bench.echo.kafkaorg_path import stop_org
from bench.echo.report import machine, write_report
from bench.echo.stack import PlatformProcesses, check_stack, wait_for_own_processes
from kafkaorg import client as service
from kafkaorg.config import Settings, get_settings
from kafkaorg.devstack import KafkaorgProcess
from kafkaorg.kafka import create_producer
from kafkaorg.names import kafka_topic
from kafkaorg.spec import validate_spec

VARIANTS = ("bare", "metrics", "traced", "sampled", "streamed")
CONSOLE_PORT = 18290


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_observability")
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--correlation-ids", type=int, default=300)
    parser.add_argument("--phase-timeout", type=float, default=600)
    parser.add_argument(
        "--otlp-endpoint",
        default=None,
        help="collector for traced/sampled; `sink`: one in this process that discards",
    )
    parser.add_argument("--sample-ratio", type=float, default=0.05, help="for the sampled variant")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args(argv)


def variant_env(variant: str, args: argparse.Namespace) -> dict[str, str | None]:
    """bare: nothing; metrics: metrics only; traced: metrics and every trace; sampled:
    metrics and ``--sample-ratio`` of the traces; streamed: metrics and the live view."""
    env: dict[str, str | None] = {
        "KAFKAORG_METRICS_ENABLED": "false" if variant == "bare" else "true",
        "KAFKAORG_OTLP_ENDPOINT": None,
    }
    if variant in ("traced", "sampled"):
        if not args.otlp_endpoint:
            raise BenchError(f"{variant} needs --otlp-endpoint (e.g. http://127.0.0.1:6006)")
        env["KAFKAORG_OTLP_ENDPOINT"] = args.otlp_endpoint
        env["KAFKAORG_TRACE_SAMPLE_RATIO"] = (
            "1.0" if variant == "traced" else str(args.sample_ratio)
        )
    return env


class DiscardingCollector:
    """An OTLP/HTTP endpoint that accepts every export and keeps nothing (``--otlp-endpoint
    sink``): the traced variants then measure what tracing costs the platform's processes,
    without a trace backend's ingestion competing for the same cores."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        self.spans = 0
        lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                request = ExportTraceServiceRequest.FromString(body)
                count = sum(
                    len(scope.spans) for rs in request.resource_spans for scope in rs.scope_spans
                )
                with lock:
                    sink.spans += count
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class LiveView:
    """An EventSource on the console's record stream: counts what a browser would get."""

    def __init__(self, base_url: str, org: str) -> None:
        self.url = f"{base_url}/orgs/{org}/records/stream?backlog=0"
        self.received = 0
        self.skipped = 0
        self.batches = 0
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    async def _read(self) -> None:
        async with (
            httpx.AsyncClient(timeout=None) as client,
            client.stream("GET", self.url) as response,
        ):
            response.raise_for_status()
            self.connected.set()
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    batch = json.loads(line[6:])
                    self.batches += 1
                    self.received += len(batch["records"])
                    self.skipped += batch["skipped"]

    async def __aenter__(self) -> LiveView:
        self._task = asyncio.create_task(self._read())
        await asyncio.wait_for(self.connected.wait(), timeout=30)
        await asyncio.sleep(1.0)  # the console's consumer is assigned before the burst
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.sleep(2.0)  # the last batches
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await self._task


@contextlib.asynccontextmanager
async def maybe_live_view(on: bool, base_url: str, org: str) -> AsyncIterator[LiveView | None]:
    if not on:
        yield None
        return
    async with LiveView(base_url, org) as view:
        yield view


async def one_burst(
    settings: Settings, args: argparse.Namespace, variant: str, console_url: str
) -> tuple[PhaseResult, dict[str, int] | None]:
    client = await check_stack(settings)
    processes = PlatformProcesses(variant_env(variant, args))
    processes.start()
    try:
        await wait_for_own_processes(client, settings, processes)
        org = f"obs-{uuid.uuid4().hex[:8]}"
        spec = validate_spec(
            {
                "org": org,
                "topics": [
                    {"name": "inbox", "partitions": args.partitions},
                    {"name": "outbox", "partitions": args.partitions},
                ],
                "agents": [
                    {
                        "name": "echo",
                        "kind": "echo",
                        "subscribes": ["inbox"],
                        "publishes": ["outbox"],
                    }
                ],
            },
            source="bench",
        )
        await asyncio.wait_for(service.launch_org(settings, spec), timeout=90)
        try:
            async with maybe_live_view(variant == "streamed", console_url, org) as view:
                result = await measure(
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
            seen = (
                {"received": view.received, "skipped": view.skipped, "batches": view.batches}
                if view
                else None
            )
            return result, seen
        finally:
            await asyncio.wait_for(stop_org(client, org), timeout=60)
    finally:
        processes.stop()


def start_console(settings: Settings, log_dir: Path) -> KafkaorgProcess:
    console = KafkaorgProcess(f"console --port {CONSOLE_PORT}", log_dir)
    console.start()
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{CONSOLE_PORT}/healthz", timeout=2):
                return console
        except OSError:
            console.ensure_alive()
            if time.monotonic() > deadline:
                raise BenchError("the console did not answer within 30 s") from None
            time.sleep(0.3)


def summary(results: dict[str, list[PhaseResult]]) -> dict[str, Any]:
    def median(variant: str, field: str) -> float:
        return statistics.median(getattr(r, field) for r in results[variant])

    out: dict[str, Any] = {
        v: {
            "records_per_s": median(v, "records_per_s"),
            "p50_ms": median(v, "p50_ms"),
            "p99_ms": median(v, "p99_ms"),
        }
        for v in results
        if results[v]
    }
    for over, under in (
        ("metrics", "bare"),
        ("traced", "metrics"),
        ("sampled", "metrics"),
        ("streamed", "metrics"),
        ("sampled", "bare"),  # all of it on (the default sampling) against all of it off
        ("traced", "bare"),
    ):
        if over in out and under in out:
            ratio = out[over]["records_per_s"] / out[under]["records_per_s"]
            out[f"{over}/{under}"] = round(ratio, 3)
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = get_settings()
    log_dir = Path(PlatformProcesses().log_dir)
    console = start_console(settings, log_dir)
    sink = DiscardingCollector() if args.otlp_endpoint == "sink" else None
    if sink is not None:
        args.otlp_endpoint = sink.url
    variants = tuple(v for v in args.variants.split(",") if v)
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise BenchError(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    results: dict[str, list[PhaseResult]] = {v: [] for v in variants}
    streamed: list[dict[str, int]] = []
    spans_per_record: dict[str, list[float]] = {v: [] for v in variants}
    try:
        for round_ in range(args.rounds):
            shift = round_ % len(variants)
            order = variants[shift:] + variants[:shift]
            for variant in order:
                err.print(f"round {round_ + 1}/{args.rounds}: {variant} …")
                spans_before = sink.spans if sink is not None else 0
                result, seen = await one_burst(
                    settings, args, variant, f"http://127.0.0.1:{CONSOLE_PORT}"
                )
                if sink is not None:  # the processes flushed their spans as they stopped
                    exported = sink.spans - spans_before
                    spans_per_record[variant].append(round(exported / args.records, 3))
                if not result.complete:
                    raise BenchError(f"{variant}: {result.received}/{result.records} came out")
                results[variant].append(result)
                if seen is not None:
                    streamed.append(seen)
                err.print(
                    f"  {result.records_per_s:,.0f} records/s, p50 {result.p50_ms} ms, "
                    f"p99 {result.p99_ms} ms"
                    + (f"; live view {seen}" if seen else "")
                    + (f"; {spans_per_record[variant][-1]} spans/record" if sink else "")
                )
    finally:
        console.stop()
        if sink is not None:
            sink.close()
    return {
        "when": datetime.now(UTC).isoformat(),
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "summary": summary(results),
        "live_view": streamed,
        "spans_per_record": {v: n for v, n in spans_per_record.items() if n},
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
    if report["live_view"]:
        print("live view:", report["live_view"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
