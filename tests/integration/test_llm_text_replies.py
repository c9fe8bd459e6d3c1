"""An ``llm`` agent that answers in prose instead of calling ``publish``: the answer is
published (the default), dropped and counted, or dead-lettered, as its spec says; never
lost unseen. An agent that published and then says "done" publishes nothing more."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from kafkaorg.client import agent_report
from kafkaorg.contracts import AgentReport
from kafkaorg.llm.failures import LLM_REPLY_TYPE, LlmFailure
from kafkaorg.names import agent_workflow_id, dlq_topic
from tests.llm_server import ScriptedLLM, ScriptedReply, ScriptedToolCall
from tests.support import Platform, raw_messages, run_cli_async, task, unique_org

pytestmark = pytest.mark.integration

ANSWER = "The sky is blue."
AGENTS = {"speaker": "publish", "quiet": "drop", "strict": "dlq", "publisher": "publish"}


def _spec(org: str) -> dict[str, Any]:
    return {
        "org": org,
        "topics": [
            *({"name": f"to-{name}", "partitions": 1} for name in AGENTS),
            {"name": "answers", "partitions": 1},
            {"name": "elsewhere", "partitions": 1},
        ],
        "agents": [
            {
                "name": name,
                "kind": "llm",
                "instructions": "Answer each task.",
                "subscribes": [f"to-{name}"],
                "publishes": ["answers", "elsewhere"],
                "on_text_reply": outcome,
            }
            for name, outcome in AGENTS.items()
        ],
    }


async def _report(platform: Platform, org: str, agent: str) -> AgentReport:
    deadline = asyncio.get_running_loop().time() + 120
    while True:
        report = await agent_report(platform.client, org, agent)
        if report.processed >= 1:
            return report
        assert asyncio.get_running_loop().time() < deadline, report
        await asyncio.sleep(0.2)


async def test_a_prose_answer_is_published_dropped_or_dead_lettered_as_the_spec_says(
    platform: Platform, scripted_llm: ScriptedLLM
) -> None:
    org = unique_org("text")
    for name in ("speaker", "quiet", "strict"):
        scripted_llm.script(name, [ScriptedReply(content=f"  {ANSWER}\n")])
    publish = ScriptedToolCall(
        name="publish", arguments={"topic": "answers", "type": "task.done", "payload": {"n": 1}}
    )
    scripted_llm.script(
        "publisher", [ScriptedReply(tool_calls=[publish]), ScriptedReply(content="done")]
    )
    await platform.start_org(_spec(org))
    tasks = {name: task(org, i) for i, name in enumerate(AGENTS)}
    for name, record in tasks.items():
        await platform.send(org, f"to-{name}", [record])
    reports = {name: await _report(platform, org, name) for name in AGENTS}

    # Published: the first output topic, the documented type, caused by the task answered.
    answers = await platform.collect(org, "answers", 2, settle=3.0)
    by_cause = {c.record.causation_id: c.record for c in answers}
    assert len(answers) == 2, [c.record for c in answers]
    reply = by_cause[tasks["speaker"].id]
    assert (reply.type, reply.payload, reply.source) == (
        LLM_REPLY_TYPE,
        {"text": ANSWER},
        "agent:speaker",
    )
    assert reply.correlation_id == tasks["speaker"].correlation_id
    assert reports["speaker"].published == 1
    # Published nothing more after a real publish ("done" closes the turn).
    assert by_cause[tasks["publisher"].id].type == "task.done"
    assert (reports["publisher"].published, reports["publisher"].text_replies_dropped) == (1, 0)
    # Dropped: counted where the agent's status shows it.
    assert (reports["quiet"].published, reports["quiet"].text_replies_dropped) == (0, 1)
    assert reports["quiet"].dead_lettered == 0
    # Dead-lettered with the reason and the text.
    assert reports["strict"].dead_lettered == 1
    (dead,) = await asyncio.to_thread(raw_messages, platform.settings, dlq_topic(org), 1)
    headers = {k: (v or b"").decode() for k, v in dead.headers() or []}
    assert headers["dlq.reason"] == LlmFailure.TEXT_REPLY.value
    assert headers["dlq.error"] == ANSWER
    assert headers["dlq.agent"] == "strict"
    assert json.loads(dead.value())["id"] == tasks["strict"].id

    # Every new path is deterministic: the four histories replay.
    for name in AGENTS:
        replayed = await run_cli_async("workflow", "replay", agent_workflow_id(org, name))
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        assert "0 failed" in replayed.stdout


async def test_first_tool_choice_makes_the_first_call_on_each_record_call_publish(
    platform: Platform, scripted_llm: ScriptedLLM
) -> None:
    """Small models answer in prose unless made to act: the first call on a record asks
    the endpoint for a ``publish`` call; the next one leaves the choice to the model."""
    org, agent = unique_org("llmfirst"), "made-to-act"
    spec = _spec(org)
    spec["topics"].append({"name": "to-made-to-act", "partitions": 1})
    spec["agents"] = [
        {
            "name": agent,
            "kind": "llm",
            "instructions": "Answer each task.",
            "subscribes": ["to-made-to-act"],
            "publishes": ["answers"],
            "first_tool_choice": "publish",
        }
    ]
    publish = ScriptedToolCall(
        name="publish", arguments={"topic": "answers", "type": "answer", "payload": {"a": 1}}
    )
    scripted_llm.script(agent, [ScriptedReply(tool_calls=[publish]), ScriptedReply(content="ok")])
    await platform.start_org(spec)
    await platform.send(org, "to-made-to-act", [task(org, 1)])
    report = await _report(platform, org, agent)
    first, closing = scripted_llm.requests_for(agent)
    assert first["tool_choice"] == {"type": "function", "function": {"name": "publish"}}
    assert "tool_choice" not in closing
    [topic] = [t for t in first["tools"] if t["function"]["name"] == "publish"]
    assert topic["function"]["parameters"]["properties"]["topic"]["enum"] == ["answers"]
    assert (report.processed, report.published) == (1, 1)
