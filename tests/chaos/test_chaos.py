"""Chaos: SIGKILLs of bridge and worker, a broker restart and a Temporal restart, mid-stream.

Every input must still have exactly one effect at the end of a two-agent chain,
in per-key order; raw duplicates (a retried activity republishing the same ids)
are printed with the other figures, not hidden. ``bench/bench_chaos.py`` runs the
same driver at 100,000 records.

Raw duplicates are counted, not asserted to be zero: a step's transaction makes its
outputs all-or-nothing and fences a dead worker's open transaction, but the commit
and Temporal's record of the activity's completion are two systems. A worker killed
between them has its step retried, which commits the same ids again; the next
agent's dedup (and a reader deduplicating by id) turns that into one effect.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kafkaorg.devstack import DevStack
from tests.chaos.driver import ChaosReport, EventKind, Restartable, chain_spec, run_chaos
from tests.support import Platform, ProcessHandle, unique_org

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

CHAOS_RECORDS = int(os.environ.get("KAFKAORG_CHAOS_RECORDS", "3000"))


async def test_every_input_has_one_effect_in_key_order_through_kills_and_restarts(
    platform: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = DevStack(platform.settings)
    if stack.kafka.our_pid() is None or stack.temporal.our_pid() is None:
        pytest.skip("the chaos test restarts Kafka and Temporal: it needs a stack it started")
    org = unique_org("chaos")
    await platform.start_org(chain_spec(org))
    targets = Restartable(
        kill_bridge=platform.bridge.restart_after_kill,
        kill_worker=platform.worker.restart_after_kill,
        stack=stack,
    )

    report = await run_chaos(
        platform.settings, platform.client, org, targets, records=CHAOS_RECORDS
    )

    _show(report, capsys)
    kinds = [e.kind for e in report.events]
    assert kinds.count("kill-bridge") == 3 and kinds.count("kill-worker") == 3
    assert kinds.count("restart-kafka") == 1 and kinds.count("restart-temporal") == 1
    _assert_one_effect_each_in_order(report)


TWO_BY_TWO_SCHEDULE: tuple[tuple[float, EventKind], ...] = (
    (0.20, "kill-bridge"),
    (0.32, "kill-worker"),
    (0.44, "kill-bridge"),
    (0.56, "kill-worker"),
    (0.68, "kill-bridge"),
    (0.80, "kill-worker"),
)


async def test_two_bridges_and_two_workers_lose_nothing_when_one_of_each_is_killed(
    platform: Platform, log_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two of each share the partitions and the task queue (own worker ids); one bridge
    and one worker are SIGKILLed and restarted under load, the others keep running.
    Recovery is printed: a killed worker's agents move to the live one after the sticky
    queue timeout (``KAFKAORG_WORKER_STICKY_TIMEOUT_S``) and the 3 s step heartbeat."""
    second_worker = ProcessHandle("worker", log_dir, name="worker-2")
    second_bridge = ProcessHandle("bridge", log_dir, name="bridge-2")
    second_worker.start()
    second_bridge.start()
    try:
        org = unique_org("chaos2x2")
        await platform.start_org(chain_spec(org))
        targets = Restartable(
            kill_bridge=platform.bridge.restart_after_kill,
            kill_worker=platform.worker.restart_after_kill,
            stack=DevStack(platform.settings),
        )
        report = await run_chaos(
            platform.settings,
            platform.client,
            org,
            targets,
            records=CHAOS_RECORDS,
            schedule=TWO_BY_TWO_SCHEDULE,
        )
        second_worker.ensure_alive()
        second_bridge.ensure_alive()
    finally:
        second_bridge.stop()
        second_worker.stop()
    _show(report, capsys, prefix="chaos 2x2")
    kinds = [e.kind for e in report.events]
    assert kinds.count("kill-bridge") == 3 and kinds.count("kill-worker") == 3
    _assert_one_effect_each_in_order(report)
    worker_log = second_worker.log_path.read_text()
    assert "worker polling task queue" in worker_log
    assert "fenc" not in worker_log.lower(), "two live workers never fence each other"


def _show(report: ChaosReport, capsys: pytest.CaptureFixture[str], prefix: str = "chaos") -> None:
    with capsys.disabled():  # shown in every run, green or red
        print("\n" + "\n".join(f"{prefix}: {line}" for line in report.lines()))


def _assert_one_effect_each_in_order(report: ChaosReport) -> None:
    assert all(e.at_progress >= 0.2 for e in report.events)
    assert all(e.recovery_s is not None for e in report.events), "output resumed after each"
    assert all(e.every_key_s is not None for e in report.events), "every key resumed after each"
    assert report.missing_ids == 0 and report.unexpected_ids == 0, "distinct ids on out"
    assert report.lost == 0, "every input has an effect"
    assert report.doubled == 0, "no input has two different effects"
    assert report.reordered_keys == 0, "per-key order is kept"
    assert report.processed == {"first": CHAOS_RECORDS, "second": CHAOS_RECORDS}
    assert report.hops["out"].distinct_ids == CHAOS_RECORDS
