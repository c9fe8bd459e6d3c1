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

import pytest

from kafkaorg.devstack import DevStack
from tests.chaos.driver import Restartable, chain_spec, run_chaos
from tests.support import Platform, unique_org

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

    with capsys.disabled():  # shown in every run, green or red
        print("\n" + "\n".join(f"chaos: {line}" for line in report.lines()))
    kinds = [e.kind for e in report.events]
    assert kinds.count("kill-bridge") == 3 and kinds.count("kill-worker") == 3
    assert kinds.count("restart-kafka") == 1 and kinds.count("restart-temporal") == 1
    assert all(e.at_progress >= 0.2 for e in report.events)
    assert all(e.recovery_s is not None for e in report.events), "output resumed after each"
    assert report.missing_ids == 0 and report.unexpected_ids == 0, "distinct ids on out"
    assert report.lost == 0, "every input has an effect"
    assert report.doubled == 0, "no input has two different effects"
    assert report.reordered_keys == 0, "per-key order is kept"
    assert report.processed == {"first": CHAOS_RECORDS, "second": CHAOS_RECORDS}
    assert report.hops["out"].distinct_ids == CHAOS_RECORDS
