"""The lifecycle activities act on many agents at once, bounded, in order, heartbeating."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.testing import ActivityEnvironment

from activities.lifecycle import LifecycleActivities


async def test_agents_are_handled_a_bounded_number_at_a_time_and_answered_in_order() -> None:
    lifecycle = LifecycleActivities(client=None, concurrency=4)  # type: ignore[arg-type]
    in_flight = 0
    most = 0

    async def act(name: str) -> str:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01 if name.endswith(("1", "3")) else 0.002)
        in_flight -= 1
        return name.upper()

    heartbeats: list[Any] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: heartbeats.append(details[0])
    names = [f"agent-{i}" for i in range(40)]

    answers = await env.run(lifecycle._each, names, act)

    assert answers == [n.upper() for n in names], "in the order asked, whatever finished first"
    assert most == 4, "never more than the concurrency at once, and that many when there is work"
    assert heartbeats[-1] == "40/40" and len(heartbeats) == 40
