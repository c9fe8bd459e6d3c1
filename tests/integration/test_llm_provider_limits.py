"""Provider reality: a provider's ``Retry-After`` is honoured, and one busy org cannot fill
the shared model endpoint (``KAFKAORG_LLM_ORG_CONCURRENCY``). The scripted server plays
the provider (and counts each org's open requests); all else is real."""

from __future__ import annotations

import asyncio
from itertools import pairwise
from typing import Any

import pytest
from sqlalchemy import func, select

from kafkaorg.client import agent_report
from kafkaorg.db import Org
from kafkaorg.db.models import LlmUsage
from tests.llm_server import ScriptedLLM, ScriptedReply, ScriptedToolCall
from tests.support import Platform, db_sessions, task, unique_org

pytestmark = pytest.mark.integration


def _agent(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "llm",
        "instructions": "Answer each task on results.",
        "subscribes": ["tasks"],
        "publishes": ["results"],
    }


def _spec(org: str, *agents: str) -> dict[str, Any]:
    return {
        "org": org,
        "topics": [{"name": "tasks", "partitions": 1}, {"name": "results", "partitions": 1}],
        "agents": [_agent(a) for a in agents],
    }


def _publish(n: int, delay_s: float = 0.0) -> ScriptedReply:
    call = ScriptedToolCall(
        name="publish", arguments={"topic": "results", "type": "task.done", "payload": {"n": n}}
    )
    return ScriptedReply(tool_calls=[call], delay_s=delay_s)


async def test_a_providers_retry_after_is_waited_for_by_the_client_and_by_temporal(
    platform: Platform, scripted_llm: ScriptedLLM
) -> None:
    """Three 429s asking for 3 s: the client's two retries wait 3 s (openai's client), and
    so does the activity's next attempt, where the retry policy alone would wait 2 s."""
    org, agent = unique_org("llmp"), "patient"
    busy = ScriptedReply.failure(429, "slow down", retry_after_s=3)
    scripted_llm.add_rule(agent, lambda messages: True, busy, times=3)
    scripted_llm.script(agent, [_publish(1), ScriptedReply(content="done")])
    await platform.start_org(_spec(org, agent))
    await platform.send(org, "tasks", [task(org, 1)])

    results = await platform.collect(org, "results", 1)
    assert [c.record.payload for c in results] == [{"n": 1}]
    arrivals = scripted_llm.arrivals_for(agent)
    assert len(arrivals) >= 4  # 3 refused, then the publish (the final answer may follow)
    gaps = [later - earlier for earlier, later in pairwise(arrivals[:4])]
    assert all(gap >= 2.9 for gap in gaps), gaps
    deadline = asyncio.get_running_loop().time() + 60
    while (report := await agent_report(platform.client, org, agent)).processed < 1:
        assert asyncio.get_running_loop().time() < deadline, report
        await asyncio.sleep(0.2)
    assert (report.dead_lettered, report.failed_reason) == (0, None)
    with db_sessions(platform.settings)() as session:
        calls = session.scalar(
            select(func.count()).select_from(LlmUsage).join(Org).where(Org.name == org)
        )
    assert calls == 2  # refusals cost nothing; the two answers are counted once


async def test_one_busy_org_keeps_to_its_limit_and_another_org_is_not_kept_waiting(
    platform: Platform, scripted_llm: ScriptedLLM
) -> None:
    busy_org, quiet_org = unique_org("llmbusy"), unique_org("llmquiet")
    writers = [f"writer-{n}" for n in range(6)]
    for n, writer in enumerate(writers):
        scripted_llm.script(writer, [_publish(n, delay_s=2.0), ScriptedReply(content="done")])
    scripted_llm.script("quiet", [_publish(99), ScriptedReply(content="done")])
    with platform.replaced(platform.worker, KAFKAORG_LLM_ORG_CONCURRENCY="2"):
        await platform.start_org(_spec(busy_org, *writers))
        await platform.start_org(_spec(quiet_org, "quiet"))
        loop = asyncio.get_running_loop()
        started = loop.time()
        await platform.send(busy_org, "tasks", [task(busy_org, 1)])
        await asyncio.sleep(0.5)
        await platform.send(quiet_org, "tasks", [task(quiet_org, 1)])
        [quiet] = await platform.collect(quiet_org, "results", 1)
        quiet_after = loop.time() - started
        busy = await platform.collect(busy_org, "results", len(writers))
        busy_after = loop.time() - started

    assert quiet.record.payload == {"n": 99}
    assert sorted(int(str(c.record.payload["n"])) for c in busy) == list(range(6))
    # Six slow calls two at a time: three waves of 2 s; the quiet org's call went past them.
    assert scripted_llm.max_in_flight[busy_org] == 2
    assert busy_after >= 6.0, busy_after
    assert quiet_after < busy_after - 2.0, (quiet_after, busy_after)
