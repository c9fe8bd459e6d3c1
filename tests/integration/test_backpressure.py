"""Backpressure: Temporal down or an inbox over its bound pauses partitions; nothing is lost.

The records wait in Kafka (visible as the bridge group's lag), not in the bridge's
memory, and come out exactly once when the cause is gone.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from kafkaorg.bridge_status import read_bridge_statuses
from kafkaorg.config import Settings
from kafkaorg.devstack import DevStack
from kafkaorg.envelope import Record
from kafkaorg.lag import bridge_lag
from kafkaorg.names import agent_workflow_id
from tests.support import Collected, Platform, ProcessHandle, echo_spec, run_cli, task, unique_org
from workflows.agent import AgentWorkflow

pytestmark = pytest.mark.integration

OUTAGE_S = 30.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def total_lag(settings: Settings, org: str) -> int:
    return sum(item.lag for item in bridge_lag(settings, org))


async def wait_lag(settings: Settings, org: str, target: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        lag = await asyncio.to_thread(total_lag, settings, org)
        if lag == target or time.monotonic() > deadline:
            return lag
        await asyncio.sleep(0.5)


def assert_exactly_once(sent: list[Record], out: list[Collected]) -> int:
    """Each input has exactly one distinct output id; returns republished duplicates."""
    outputs: dict[str | None, set[str]] = defaultdict(set)
    for c in out:
        outputs[c.record.causation_id].add(c.record.id)
    assert set(outputs) == {r.id for r in sent}, "every input, and only those, has an output"
    assert all(len(ids) == 1 for ids in outputs.values()), "no input processed twice"
    return len(out) - len({c.record.id for c in out})


def restart_temporal(dev: DevStack) -> None:
    if dev.temporal.our_pid() is None:
        dev.temporal.launch()
    deadline = time.monotonic() + 60
    while not dev.temporal.healthy():
        assert time.monotonic() < deadline, "Temporal did not come back"
        time.sleep(0.5)


async def test_temporal_outage_pauses_partitions_and_loses_nothing(platform: Platform) -> None:
    dev = DevStack(platform.settings)
    if dev.temporal.our_pid() is None:
        pytest.skip("Temporal was not started by kafkaorg dev; the test cannot stop it")
    assert platform.bridge.process is not None
    bridge_pid = platform.bridge.process.pid
    org = unique_org("bp")
    await platform.start_org(echo_spec(org, partitions=3))
    warm = [task(org, n) for n in range(20)]
    await platform.send(org, "inbox", warm)
    assert len(await platform.collect(org, "outbox", 20, timeout=60)) >= 20
    assert await wait_lag(platform.settings, org, 0, timeout=20) == 0
    rss_before = rss_mb(bridge_pid)
    sent = [task(org, n, correlation_id=f"c{n % 11}") for n in range(6000)]

    await asyncio.to_thread(dev.temporal.stop)
    down_at = time.monotonic()
    try:
        await platform.send(org, "inbox", sent)
        rss_peak, lags, paused_reasons = rss_before, [], set()
        while time.monotonic() - down_at < OUTAGE_S:
            await asyncio.sleep(2)
            platform.bridge.ensure_alive()
            rss_peak = max(rss_peak, rss_mb(bridge_pid))
            lags.append(await asyncio.to_thread(total_lag, platform.settings, org))
            for status in read_bridge_statuses(platform.settings):
                if status["pid"] == bridge_pid:
                    paused_reasons |= {r for p in status["paused"] for r in p["reasons"]}
        dev_status = run_cli("dev", "status", "--json")
        bridge_row = next(s for s in json.loads(dev_status.stdout) if s["name"] == "bridge")
    finally:
        await asyncio.to_thread(restart_temporal, dev)
    back_at = time.monotonic()

    print(
        f"outage: lag samples {lags}; bridge RSS {rss_before:.0f} MB before, "
        f"{rss_peak:.0f} MB peak during; dev status bridge: {bridge_row['detail']}"
    )
    assert lags[-1] == len(sent), "every record sent during the outage waits in Kafka"
    assert rss_peak - rss_before < 100, "the bridge does not hold the backlog in memory"
    assert paused_reasons == {"temporal"}
    assert f"lag {len(sent)}" in bridge_row["detail"] and "paused" in bridge_row["detail"]

    out = await platform.collect(org, "outbox", len(warm) + len(sent), timeout=120, settle=2.0)
    drained_s = time.monotonic() - back_at
    duplicates = assert_exactly_once(warm + sent, out)
    platform.bridge.ensure_alive()
    assert await wait_lag(platform.settings, org, 0, timeout=30) == 0
    org_status = run_cli("org", "status", org, "--json")
    assert org_status.returncode == 0, org_status.stderr
    # The bridge reads each org's sys.approvals too (verdicts sent as records).
    assert json.loads(org_status.stdout)["lag"] == {"inbox": 0, "outbox": 0, "sys.approvals": 0}
    print(f"outage: drained {len(sent)} in {drained_s:.1f} s; {duplicates} republished dup(s)")


@contextmanager
def alone_in_the_group(
    platform: Platform, log_dir: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> Iterator[ProcessHandle]:
    """A bridge with small bounds as the only one in the group (the usual one comes back)."""
    platform.bridge.stop()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KAFKAORG_BRIDGE_INBOX_CHECK_INTERVAL_S", "0.5")
    small = ProcessHandle("bridge", log_dir)
    small.start()
    monkeypatch.undo()
    try:
        yield small
    finally:
        small.stop()
        platform.bridge.start()


@dataclass
class Held:
    inbox_peak: int
    bytes_peak: int
    lag: int
    reasons: set[str]


async def watch_the_hold(platform: Platform, small: ProcessHandle, org: str, total: int) -> Held:
    """Watch a paused agent's inbox fill until the bridge holds the rest in Kafka for 3 s."""
    handle = platform.client.get_workflow_handle_for(
        AgentWorkflow.run, agent_workflow_id(org, "echo")
    )
    inbox_peak, bytes_peak, lag, settled_at = 0, 0, total, None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        small.ensure_alive()
        status = await handle.query(AgentWorkflow.status)
        lag = await asyncio.to_thread(total_lag, platform.settings, org)
        inbox_peak = max(inbox_peak, status.inbox)
        bytes_peak = max(bytes_peak, status.inbox_bytes)
        if status.inbox + lag == total and status.inbox > 0:
            settled_at = settled_at or time.monotonic()
            if time.monotonic() - settled_at > 3:  # stays held, not just slow
                break
    assert small.process is not None
    reasons = {
        r
        for s in read_bridge_statuses(platform.settings)
        if s["pid"] == small.process.pid
        for p in s["paused"]
        for r in p["reasons"]
    }
    return Held(inbox_peak, bytes_peak, lag, reasons)


async def resume_and_drain(platform: Platform, org: str, sent: list[Record]) -> None:
    resumed = run_cli("agent", "resume", org, "echo")
    assert resumed.returncode == 0, resumed.stderr
    started = time.monotonic()
    out = await platform.collect(org, "outbox", len(sent), timeout=90, settle=1.0)
    print(f"inbox bound: {len(sent)} out {time.monotonic() - started:.1f} s after resume")
    assert_exactly_once(sent, out)
    assert await wait_lag(platform.settings, org, 0, timeout=20) == 0


async def test_inbox_over_its_bound_leaves_records_in_kafka(
    platform: Platform, log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit, batch, total = 50, 25, 500
    org = unique_org("bp")
    await platform.start_org(echo_spec(org, partitions=3))
    paused = run_cli("agent", "pause", org, "echo")
    assert paused.returncode == 0, paused.stderr
    env = {"KAFKAORG_AGENT_INBOX_LIMIT": str(limit), "KAFKAORG_BRIDGE_BATCH_SIZE": str(batch)}
    with alone_in_the_group(platform, log_dir, monkeypatch, env) as small:
        sent = [task(org, n, correlation_id=f"c{n % 5}") for n in range(total)]
        await platform.send(org, "inbox", sent)
        held = await watch_the_hold(platform, small, org, total)
        print(f"inbox bound {limit}: {held}")
        assert limit < held.inbox_peak <= limit + batch
        assert held.lag == total - held.inbox_peak
        assert held.reasons == {f"inbox:{org}/echo"}
        await resume_and_drain(platform, org, sent)


async def test_inbox_over_its_byte_bound_leaves_large_records_in_kafka(
    platform: Platform, log_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Few large records: the count bound is far away, the byte bound holds them."""
    max_bytes, batch, total, blob = 200_000, 5, 60, 20_000
    org = unique_org("bp")
    await platform.start_org(echo_spec(org, partitions=3))
    paused = run_cli("agent", "pause", org, "echo")
    assert paused.returncode == 0, paused.stderr
    env = {
        "KAFKAORG_AGENT_INBOX_MAX_BYTES": str(max_bytes),
        "KAFKAORG_BRIDGE_BATCH_SIZE": str(batch),
    }
    with alone_in_the_group(platform, log_dir, monkeypatch, env) as small:
        sent = [
            task(org, n, correlation_id=f"c{n % 5}").model_copy(
                update={"payload": {"n": n, "blob": "x" * blob}}
            )
            for n in range(total)
        ]
        await platform.send(org, "inbox", sent)
        held = await watch_the_hold(platform, small, org, total)
        print(f"inbox byte bound {max_bytes}: {held}")
        assert max_bytes < held.bytes_peak <= max_bytes + batch * (blob + 1_000)
        assert held.inbox_peak < total / 2, "most records wait in Kafka"
        assert held.lag == total - held.inbox_peak
        assert held.reasons == {f"inbox:{org}/echo"}
        await resume_and_drain(platform, org, sent)
