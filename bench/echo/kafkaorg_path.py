"""The kafkaorg design: the real platform path, through the same service layer as the CLI.

An org with one echo agent; the bridge batches records into signals, the
AgentWorkflow runs one activity per inbox batch, the activity produces the
outputs. Started and stopped exactly as ``kafkaorg org start`` / ``org stop`` do,
so the bench measures the platform and not a shortcut around it.
"""

from __future__ import annotations

import argparse
import asyncio

from temporalio.client import Client

from bench.echo.harness import PhaseResult, bench_records, err, measure
from kafkaorg import client as service
from kafkaorg.config import Settings
from kafkaorg.contracts import OrgStopRequest
from kafkaorg.kafka import create_producer
from kafkaorg.names import kafka_topic
from kafkaorg.spec import validate_spec


async def run_kafkaorg(
    settings: Settings, client: Client, args: argparse.Namespace, run_id: str
) -> PhaseResult:
    """The platform path, untouched: the org is started exactly as ``kafkaorg org start`` does."""
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
    await asyncio.wait_for(service.launch_org(settings, spec), timeout=90)
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
        try:
            await asyncio.wait_for(stop_org(client, org), timeout=60)
        except Exception as exc:
            err.print(f"[yellow]could not stop org {org!r} cleanly: {exc}[/]")


async def stop_org(client: Client, org: str) -> None:
    """Stop the org as ``kafkaorg org stop`` does and wait until its workflow has ended."""
    handle = await service.stop_org(client, org, OrgStopRequest(reason="benchmark finished"))
    await handle.result()
