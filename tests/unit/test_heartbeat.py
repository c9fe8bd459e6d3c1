"""Steps heartbeat from a side thread while they block (activities/heartbeat.py)."""

from __future__ import annotations

import time
from typing import Any

from temporalio.testing import ActivityEnvironment

from activities.heartbeat import heartbeating


def _blocks_for(seconds: float) -> str:
    with heartbeating(every_s=0.1):
        time.sleep(seconds)  # a produce or a commit that does not return for a while
    return "done"


def test_a_blocked_activity_heartbeats_until_the_block_ends() -> None:
    beats: list[tuple[Any, ...]] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details)

    assert env.run(_blocks_for, 0.65) == "done"
    during = len(beats)
    time.sleep(0.3)

    assert during >= 4, f"{during} heartbeats in 0.65 s at one per 0.1 s"
    assert len(beats) == during, "no heartbeat once the block has ended"
