"""Prometheus metrics of the real worker and bridge: counters move by exactly what was sent.

Read straight from the processes' endpoints (found through their registration files), no
Prometheus server in between. Counters are per process, so each figure is the sum over
every live process of that kind sharing this state dir (normally exactly one).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from confluent_kafka.admin import NewTopic
from temporalio import workflow
from temporalio.worker import Worker

from activities.sandbox import (
    RUN_CODE_HEARTBEAT_TIMEOUT,
    RUN_CODE_RETRY,
    SandboxRequest,
    run_code_timeout,
)
from kafkaorg.config import Settings
from kafkaorg.devstack._workers import PlatformProcess
from kafkaorg.kafka import create_admin, create_missing_topics
from kafkaorg.metrics import metric_value, metrics_endpoints, read_metrics
from kafkaorg.names import PLATFORM_ORG, SANDBOX_TASK_QUEUE, dlq_topic
from kafkaorg.sandbox import SandboxPolicy, SandboxResult
from tests.llm_server import ScriptedLLM, ScriptedReply, ScriptedToolCall
from tests.support import (
    Platform,
    ProcessHandle,
    echo_spec,
    raw_messages,
    run_cli_async,
    task,
    unique_org,
)

pytestmark = pytest.mark.integration

SETTLE_S = 2.0
"""After a figure reached what was sent, how long it must stay there (no late double count)."""


async def _urls(settings: Settings, process: str, pid: int, timeout: float = 30) -> list[str]:
    """Endpoints of every live ``process``; waits until the one of ``pid`` is announced."""
    deadline = time.monotonic() + timeout
    while True:
        endpoints = [e for e in metrics_endpoints(settings) if e.process == process]
        if any(e.pid == pid for e in endpoints):
            return [e.url for e in endpoints]
        assert time.monotonic() < deadline, f"{process} pid {pid} announced no metrics endpoint"
        await asyncio.sleep(0.2)


async def _value(urls: list[str], name: str, **labels: str) -> float:
    total = 0.0
    for url in urls:
        samples = await asyncio.to_thread(read_metrics, url)
        total += metric_value(samples, name, **labels)
    return total


async def _settled(
    urls: list[str],
    name: str,
    reached: Callable[[float], bool],
    timeout: float = 60,
    **labels: str,
) -> float:
    """The figure once ``reached`` holds and it stayed put for ``SETTLE_S`` (or at timeout)."""
    deadline = time.monotonic() + timeout
    value = await _value(urls, name, **labels)
    while not reached(value) and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        value = await _value(urls, name, **labels)
    await asyncio.sleep(SETTLE_S)
    return await _value(urls, name, **labels)


async def test_records_signals_and_outputs_are_counted_exactly(platform: Platform) -> None:
    n = 37
    org = unique_org("m")
    await platform.start_org(echo_spec(org, partitions=3))
    bridge = await _urls(platform.settings, "bridge", platform.bridge.pid)
    worker = await _urls(platform.settings, "worker", platform.worker.pid)
    batches_before = await _value(bridge, "kafkaorg_bridge_batch_size_count")

    await platform.send(org, "inbox", [task(org, i, correlation_id=f"c{i % 5}") for i in range(n)])
    out = await platform.collect(org, "outbox", n, timeout=120)
    assert len({c.record.id for c in out}) == n

    records = await _settled(
        bridge, "kafkaorg_bridge_records_total", lambda v: v >= n, org=org, topic="inbox"
    )
    signals = await _value(
        bridge, "kafkaorg_bridge_signals_total", org=org, topic="inbox", agent="echo"
    )
    produced = await _settled(
        worker,
        "kafkaorg_records_produced_total",
        lambda v: v >= n,
        org=org,
        topic="outbox",
        agent="echo",
    )
    assert (records, signals, produced) == (n, n, n)
    # Nothing else of this org was counted: one edge in, one edge out.
    assert await _value(bridge, "kafkaorg_bridge_signals_total", org=org) == n
    assert await _value(worker, "kafkaorg_records_produced_total", org=org) == n
    assert await _value(bridge, "kafkaorg_dlq_records_total", org=org) == 0

    steps = await _value(
        worker, "kafkaorg_agent_steps_total", org=org, agent="echo", kind="echo", outcome="ok"
    )
    assert 1 <= steps <= n
    timed = await _value(
        worker, "kafkaorg_agent_step_seconds_count", org=org, agent="echo", kind="echo"
    )
    assert timed == steps
    assert await _value(bridge, "kafkaorg_bridge_batch_size_count") > batches_before
    assert await _value(bridge, "kafkaorg_bridge_signal_seconds_count") >= 1
    # The bridge queried the echo agent's inbox while feeding it, and measured its lag.
    samples = [s for url in bridge for s in await asyncio.to_thread(read_metrics, url)]
    inbox = [
        s.value
        for s in samples
        if s.name == "kafkaorg_agent_inbox_records" and s.labels == {"org": org, "agent": "echo"}
    ]
    assert len(inbox) == 1 and 0 <= inbox[0] <= n, inbox
    deadline = time.monotonic() + 20
    while True:  # lag is set at each commit and on idle ticks, from the last fetch's watermark
        samples = [s for url in bridge for s in await asyncio.to_thread(read_metrics, url)]
        lag = {
            s.labels["partition"]: s.value
            for s in samples
            if s.name == "kafkaorg_bridge_lag" and s.labels.get("org") == org
        }
        if (lag and not any(lag.values())) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert lag and set(lag) <= {"0", "1", "2"} and not any(lag.values()), lag


async def test_poison_is_counted_by_reason_and_not_as_records(platform: Platform) -> None:
    k_not_json, k_bad_envelope = 4, 3
    org = unique_org("m")
    await platform.start_org(echo_spec(org, partitions=1))
    bridge = await _urls(platform.settings, "bridge", platform.bridge.pid)

    for i in range(k_not_json):
        await platform.send_raw(org, "inbox", f"\x00not json {i}".encode())
    for i in range(k_bad_envelope):
        bad = task(org, i).model_dump(mode="json") | {"schema_version": "one"}
        await platform.send_raw(org, "inbox", json.dumps(bad).encode())
    good = task(org, 99)
    await platform.send(org, "inbox", [good])
    out = await platform.collect(org, "outbox", 1, timeout=60)
    assert [c.record.causation_id for c in out] == [good.id]

    not_json = await _settled(
        bridge, "kafkaorg_dlq_records_total", lambda v: v >= k_not_json, org=org, reason="not-json"
    )
    bad_envelope = await _value(
        bridge, "kafkaorg_dlq_records_total", org=org, reason="bad-envelope"
    )
    assert (not_json, bad_envelope) == (k_not_json, k_bad_envelope)
    assert (
        await _value(bridge, "kafkaorg_dlq_records_total", org=org) == k_not_json + k_bad_envelope
    )
    # Poison never counts as consumed, nor reaches an agent (the bridge reads the echo's
    # output on outbox too: consumed, but nobody subscribes to it).
    records = await _settled(bridge, "kafkaorg_bridge_records_total", lambda v: v >= 2, org=org)
    assert records == 2
    assert await _value(bridge, "kafkaorg_bridge_records_total", org=org, topic="inbox") == 1
    assert await _value(bridge, "kafkaorg_bridge_signals_total", org=org) == 1


async def test_poison_of_no_org_is_counted_under_the_platform_dlq(platform: Platform) -> None:
    ghost = f"ghost-{uuid.uuid4().hex[:8]}"
    topic = f"{ghost}.tasks"
    await asyncio.to_thread(
        create_missing_topics, create_admin(platform.settings), [NewTopic(topic, 1, 1)]
    )
    bridge = await _urls(platform.settings, "bridge", platform.bridge.pid)
    labels = {"org": PLATFORM_ORG, "reason": "not-json"}
    before = await _value(bridge, "kafkaorg_dlq_records_total", **labels)
    for i in range(2):
        await platform.send_raw(ghost, "tasks", f"not json {i}".encode())
    # The bridge sees a new topic within its metadata refresh.
    after = await _settled(
        bridge, "kafkaorg_dlq_records_total", lambda v: v >= before + 2, timeout=60, **labels
    )
    assert after - before == 2
    assert await _value(bridge, "kafkaorg_dlq_records_total", org=ghost) == 0


async def test_failed_step_is_counted_in_the_worker_dlq_and_step_outcome(
    platform: Platform,
) -> None:
    """An output over the size limit fails the step for good: the worker writes the DLQ entry."""
    org = unique_org("m")
    spec = echo_spec(org, partitions=1)
    spec["topics"].append({"name": "big", "class": "work"})
    spec["agents"].append(
        {
            "name": "doubler",
            "kind": "rule",
            "subscribes": ["inbox"],
            "publishes": ["big"],
            "rules": [
                {
                    "on": "blob",
                    "emit": "blob.twice",
                    "to": "big",
                    "map": {"a": "$.payload.x", "b": "$.payload.x"},
                }
            ],
        }
    )
    # Payload references off: an output over the record limit still fails the step
    # for good (with them on, it would be stored by reference instead).
    refs_off = {"KAFKAORG_PAYLOAD_REF_BYTES": str(10**9)}
    with platform.replaced(platform.worker, **refs_off) as worker_process:
        await platform.start_org(spec)
        worker = await _urls(platform.settings, "worker", worker_process.pid)
        blob = task(org, 0, type_="blob")
        blob.payload = {"x": "y" * (platform.settings.max_record_bytes // 2 + 1000)}
        await platform.send(org, "inbox", [blob])  # one record: the doubler's step fails on it
        await platform.collect(org, "outbox", 1, timeout=60)

        dead = await _settled(
            worker,
            "kafkaorg_dlq_records_total",
            lambda v: v >= 1,
            org=org,
            reason="agent-step-failed",
        )
        assert dead == 1
        failed = await _value(
            worker, "kafkaorg_agent_steps_total", org=org, agent="doubler", outcome="failed"
        )
        assert failed == 1
        assert (
            await _value(worker, "kafkaorg_records_produced_total", org=org, agent="doubler") == 0
        )
        assert await _value(worker, "kafkaorg_records_produced_total", org=org, agent="echo") == 1
        dlq = await asyncio.to_thread(raw_messages, platform.settings, dlq_topic(org), 2, 5)
        assert len(dlq) == dead, "the counter says what the DLQ holds"


async def test_every_process_announces_its_endpoints_and_dev_status_lists_them(
    platform: Platform, sandbox_worker: ProcessHandle
) -> None:
    settings = platform.settings
    pids = {
        "worker": platform.worker.pid,
        "bridge": platform.bridge.pid,
        "sandbox-worker": sandbox_worker.pid,
    }
    for process, pid in pids.items():
        await _urls(settings, process, pid)
        await _urls(settings, f"{process}-temporal-sdk", pid)
    endpoints = {(e.process, e.pid): e.url for e in metrics_endpoints(settings)}
    for process, pid in pids.items():
        own = await asyncio.to_thread(read_metrics, endpoints[(process, pid)])
        assert any(s.name.startswith("python_") or s.name.startswith("process_") for s in own)
    # The SDK's endpoint carries Temporal's own metrics (the worker polls all the time).
    sdk = await asyncio.to_thread(read_metrics, endpoints[("worker-temporal-sdk", pids["worker"])])
    assert any(s.name.startswith("temporal_") for s in sdk), sorted({s.name for s in sdk})[:20]

    # ``kafkaorg dev status --json`` names the URLs of the processes the stack knows by pid
    # file; the session's processes are not the stack's, so they are made known for a moment.
    written = []
    for process, pid in pids.items():
        managed = PlatformProcess(settings, process.replace("-", " "))
        if managed.our_pid() is None:
            managed.pid_file.write(pid)
            written.append(managed)
    try:
        result = await run_cli_async("dev", "status", "--json")
    finally:
        for managed in written:
            managed.pid_file.remove()
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert {"kafka", "temporal", "postgres"} <= set(rows)
    assert all("metrics_url" in row for row in rows.values())
    for managed in written:
        row = rows[managed.name]
        assert row["pid"] == pids[managed.name]
        assert row["metrics_url"] == endpoints[(managed.name, row["pid"])]
        assert row["sdk_metrics_url"] == endpoints[(f"{managed.name}-temporal-sdk", row["pid"])]


@workflow.defn(sandboxed=False)
class SandboxCallerWorkflow:
    """Calls ``run_code`` on the sandbox worker's task queue, as AgentWorkflow does."""

    @workflow.run
    async def run(self, request: SandboxRequest) -> SandboxResult:
        return await workflow.execute_activity(
            "run_code",
            request,
            task_queue=SANDBOX_TASK_QUEUE,
            result_type=SandboxResult,
            start_to_close_timeout=run_code_timeout(SandboxPolicy()),
            heartbeat_timeout=RUN_CODE_HEARTBEAT_TIMEOUT,
            retry_policy=RUN_CODE_RETRY,
        )


async def test_sandbox_runs_are_counted_by_outcome_and_limit(
    platform: Platform, sandbox_worker: ProcessHandle
) -> None:
    sandbox = await _urls(platform.settings, "sandbox-worker", sandbox_worker.pid)
    name = "kafkaorg_sandbox_runs_total"
    ok_before = await _value(sandbox, name, outcome="ok", limit="none")
    wall_before = await _value(sandbox, name, outcome="limit", limit="wall_time")
    exit_before = await _value(sandbox, name, outcome="exit-nonzero", limit="none")
    queue = f"metrics-test-{uuid.uuid4().hex[:10]}"
    requests = [
        SandboxRequest(code="print(1)"),
        SandboxRequest(code="print(2)"),
        SandboxRequest(code="raise SystemExit(3)"),
        SandboxRequest(
            code="import time\nwhile True:\n    time.sleep(0.1)\n",
            policy=SandboxPolicy(wall_time_s=1),
        ),
    ]
    async with Worker(platform.client, task_queue=queue, workflows=[SandboxCallerWorkflow]):
        results = [
            await platform.client.execute_workflow(
                SandboxCallerWorkflow.run,
                request,
                id=f"{queue}-{i}",
                task_queue=queue,
                execution_timeout=timedelta(seconds=60),
            )
            for i, request in enumerate(requests)
        ]
    assert [r.ok for r in results] == [True, True, False, False]
    assert results[3].limit_hit == "wall_time"

    assert await _value(sandbox, name, outcome="ok", limit="none") - ok_before == 2
    assert await _value(sandbox, name, outcome="limit", limit="wall_time") - wall_before == 1
    assert await _value(sandbox, name, outcome="exit-nonzero", limit="none") - exit_before == 1
    runs = await _value(sandbox, "kafkaorg_sandbox_run_seconds_count")
    assert runs == await _value(sandbox, name)


async def test_model_calls_and_tokens_are_counted_per_agent(
    platform: Platform, scripted_llm: ScriptedLLM
) -> None:
    org, agent = unique_org("m"), "counter"
    scripted_llm.script(
        agent,
        [
            ScriptedReply(
                tool_calls=[
                    ScriptedToolCall(
                        name="publish",
                        arguments={"topic": "results", "type": "task.done", "payload": {"n": 1}},
                    )
                ],
                prompt_tokens=100,
                completion_tokens=10,
            ),
            ScriptedReply(content="done", prompt_tokens=120, completion_tokens=5),
        ],
    )
    await platform.start_org(
        {
            "org": org,
            "topics": [{"name": "tasks", "partitions": 1}, {"name": "results", "partitions": 1}],
            "agents": [
                {
                    "name": agent,
                    "kind": "llm",
                    "instructions": "Publish a result for each task.",
                    "subscribes": ["tasks"],
                    "publishes": ["results"],
                }
            ],
        }
    )
    worker = await _urls(platform.settings, "worker", platform.worker.pid)
    await platform.send(org, "tasks", [task(org, 1)])
    out = await platform.collect(org, "results", 1, timeout=60)
    assert len(out) == 1
    labels = {"org": org, "agent": agent}
    calls = await _settled(
        worker, "kafkaorg_llm_calls_total", lambda v: v >= 2, org=org, agent=agent, outcome="ok"
    )
    assert calls == 2
    assert await _value(worker, "kafkaorg_llm_calls_total", **labels) == 2
    assert await _value(worker, "kafkaorg_llm_tokens_total", kind="prompt", **labels) == 220
    assert await _value(worker, "kafkaorg_llm_tokens_total", kind="completion", **labels) == 15
    assert await _value(worker, "kafkaorg_llm_call_seconds_count", **labels) == 2
    produced = await _value(worker, "kafkaorg_records_produced_total", topic="results", **labels)
    assert produced == 1
    steps = await _value(worker, "kafkaorg_agent_steps_total", kind="llm", outcome="ok", **labels)
    assert steps == 1  # the one publish the model asked for
