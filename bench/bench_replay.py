"""The longest workflow task an agent has: a cold replay of its fullest history.

A worker that takes over an agent (its cache evicted, or the agent's worker killed) first
fetches the run's whole history and replays it, inside one workflow task. That task must
finish well within the agent's workflow task timeout (``AGENT_TASK_TIMEOUT``, kept short
so that a killed worker's task is retried elsewhere in seconds), or the task would time
out again on every retry. This drives one echo agent a step at a time until its run
continues-as-new (at ``HISTORY_EVENTS_BEFORE_CONTINUE`` events, or at the bytes limit
when records are large), then times, on the run that just closed:

* **fetch**: reading the history from Temporal, as a worker does on a cache miss;
* **replay**: replaying it with the worker's workflows (``kafkaorg workflow replay``'s
  replayer), median of ``--repeats``;

and prints both against the task timeout, for small records and for ``--payload-bytes``.

    python -m bench.bench_replay --out bench/results/2026-12-01-recovery/replay.json

Needs the core stack up (``kafkaorg dev up``) and no other worker or bridge running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from temporalio.client import Client

from bench.echo.harness import BenchError, err
from bench.echo.report import machine
from bench.echo.stack import check_stack, worker_pollers
from kafkaorg.client import AGENT_TASK_TIMEOUT
from kafkaorg.config import Settings, get_settings
from kafkaorg.history_replay import fetch_workflow_histories
from kafkaorg.names import agent_workflow_id
from tests.support import Platform, ProcessHandle, echo_spec, task, unique_org
from workers.replayer import make_replayer
from workflows.agent import AgentWorkflow


async def _fill_one_run(platform: Platform, org: str, payload_bytes: int) -> int:
    """Send records one step at a time until the agent continues-as-new; steps taken."""
    handle = platform.client.get_workflow_handle_for(
        AgentWorkflow.run, agent_workflow_id(org, "echo")
    )
    steps = 0
    while True:
        record = task(org, steps)
        if payload_bytes:
            record = record.model_copy(update={"payload": {"n": steps, "pad": "x" * payload_bytes}})
        await platform.send(org, "inbox", [record])
        deadline = time.monotonic() + 30
        while (status := await handle.query(AgentWorkflow.status)).processed <= steps:
            if time.monotonic() > deadline:
                raise BenchError(f"step {steps} not processed within 30 s")
            await asyncio.sleep(0.01)
        steps += 1
        if status.runs > 1:
            return steps
        if steps % 100 == 0:
            err.print(f"  {steps} steps")


def _save(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


async def _measure(
    platform: Platform, payload_bytes: int, repeats: int, save_dir: Path | None
) -> dict[str, Any]:
    org = unique_org("replay")
    await platform.start_org(echo_spec(org, partitions=1))
    steps = await _fill_one_run(platform, org, payload_bytes)
    workflow_id = agent_workflow_id(org, "echo")
    fetches, histories = [], []
    for _ in range(repeats):
        began = time.perf_counter()
        histories = await fetch_workflow_histories(platform.client, workflow_id)
        fetches.append(time.perf_counter() - began)
    full = max(histories, key=lambda h: len(h.events))
    if save_dir is not None:  # to profile its replay offline
        await asyncio.to_thread(_save, save_dir / f"{org}-{payload_bytes}.json", full.to_json())
    size = sum(e.ByteSize() for e in full.events)
    replayer = make_replayer([AgentWorkflow])
    replays = []
    for _ in range(repeats):
        began = time.perf_counter()
        result = await replayer.replay_workflow(full, raise_on_replay_failure=False)
        replays.append(time.perf_counter() - began)
        if result.replay_failure is not None:
            raise BenchError(f"the history did not replay: {result.replay_failure}")
    fetch_s = statistics.median(fetches) / len(histories)  # per run fetched
    replay_s = statistics.median(replays)
    timeout_s = AGENT_TASK_TIMEOUT.total_seconds()
    return {
        "payload_bytes": payload_bytes,
        "steps": steps,
        "events": len(full.events),
        "history_bytes": size,
        "fetch_s_median": round(fetch_s, 4),
        "replay_s_median": round(replay_s, 4),
        "task_timeout_s": timeout_s,
        "share_of_timeout": round((fetch_s + replay_s) / timeout_s, 3),
    }


async def _main(args: argparse.Namespace) -> int:
    settings = get_settings()
    client = await check_stack(settings)
    logs = Path(tempfile.mkdtemp(prefix="kafkaorg-bench-replay-"))
    worker, bridge = ProcessHandle("worker", logs), ProcessHandle("bridge", logs)
    worker.start()
    bridge.start()
    results = []
    try:
        await wait_for_pollers(client, settings, worker)
        platform = await Platform.connect(settings, worker=worker, bridge=bridge)
        for payload in args.payload_bytes:
            err.print(f"filling one run with records of {payload} B of padding")
            results.append(await _measure(platform, payload, args.repeats, args.save_history))
            err.print(json.dumps(results[-1]))
        await platform.close()
    except BenchError as exc:
        err.print(f"bench_replay: {exc} (logs in {logs})")
        return 1
    finally:
        worker.stop()
        bridge.stop()
    report = {"bench": "replay", "machine": machine(), "results": results}
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    return 0


async def wait_for_pollers(client: Client, settings: Settings, worker: ProcessHandle) -> None:
    deadline = time.monotonic() + 60
    while not any(p.startswith(f"{worker.pid}@") for p in await worker_pollers(client, settings)):
        worker.ensure_alive()
        if time.monotonic() > deadline:
            raise BenchError("the worker did not poll within 60 s")
        await asyncio.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payload-bytes", type=int, nargs="+", default=[0, 20_000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--save-history", type=Path, help="write each full history here (JSON)")
    sys.exit(asyncio.run(_main(parser.parse_args())))


if __name__ == "__main__":
    main()
