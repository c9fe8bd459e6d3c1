"""How an ``llm`` agent meets a misbehaving model or provider: every mode has one outcome.

Either the model is told what was wrong and asked again (a tool message or a nudge
in its next request), or the record goes to the DLQ with a reason naming the
failure and the agent keeps working. The scripted server plays the provider; all
else is real.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest

from kafkaorg.client import agent_report
from kafkaorg.config import Settings
from kafkaorg.contracts import AgentReport
from kafkaorg.envelope import Record
from kafkaorg.llm.failures import EMPTY_REPLY_NUDGE, MAX_MODEL_CALLS_PER_RECORD, MODEL_CALL_RETRY
from kafkaorg.names import agent_workflow_id, dlq_topic
from tests.llm_server import Messages, ReplyFactory, ScriptedLLM, ScriptedReply, ScriptedToolCall
from tests.support import Platform, raw_messages, run_cli_async, task, unique_org

pytestmark = pytest.mark.integration


def _spec(org: str, agent: str) -> dict[str, Any]:
    return {
        "org": org,
        "topics": [{"name": "tasks", "partitions": 1}, {"name": "results", "partitions": 1}],
        "agents": [
            {
                "name": agent,
                "kind": "llm",
                "instructions": "Answer each task on results.",
                "subscribes": ["tasks"],
                "publishes": ["results"],
            }
        ],
    }


def _call(tool: str, /, **arguments: Any) -> ScriptedReply:
    return ScriptedReply(tool_calls=[ScriptedToolCall(name=tool, arguments=arguments)])


def _publish(n: int) -> ScriptedReply:
    return _call("publish", topic="results", type="task.done", payload={"n": n})


def _tool_results(messages: Messages) -> list[dict[str, Any]]:
    return [json.loads(m["content"]) for m in messages if m.get("role") == "tool"]


def _about(record: Record) -> Any:
    """Requests whose newest user turn hands the model ``record`` (retries included)."""

    def when(messages: Messages) -> bool:
        users = [m for m in messages if m.get("role") == "user"]
        return bool(users) and record.id in str(users[-1].get("content"))

    return when


async def _requests(llm: ScriptedLLM, agent: str, count: int, timeout: float = 90) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while len(llm.requests_for(agent)) < count:
        assert asyncio.get_running_loop().time() < deadline, llm.requests_for(agent)
        await asyncio.sleep(0.2)
    return llm.requests_for(agent)


async def _report(
    platform: Platform, org: str, agent: str, processed: int, timeout: float = 120
) -> AgentReport:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        report = await agent_report(platform.client, org, agent)
        if report.processed >= processed or asyncio.get_running_loop().time() > deadline:
            return report
        await asyncio.sleep(0.2)


def _dead_letters(settings: Settings, org: str, count: int, timeout: float = 120) -> list[Any]:
    out = []
    for message in raw_messages(settings, dlq_topic(org), count, timeout=timeout):
        headers = {k: (v or b"").decode() for k, v in message.headers() or []}
        out.append((headers, json.loads(message.value())))
    return out


async def _replays(org: str, agent: str) -> None:
    """The new paths are deterministic: the agent's history replays against the code."""
    result = await run_cli_async("workflow", "replay", agent_workflow_id(org, agent))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failed" in result.stdout


async def _told_and_retried(
    platform: Platform, llm: ScriptedLLM, agent: str, bad: ScriptedReply
) -> tuple[dict[str, Any], str]:
    """The agent gets ``bad``, then publishes and answers; returns what it was told."""
    org = unique_org("llmf")
    llm.script(agent, [bad, _publish(1), ScriptedReply(content="done")])
    await platform.start_org(_spec(org, agent))
    await platform.send(org, "tasks", [task(org, 1)])
    requests = await _requests(llm, agent, 3)
    told = _tool_results(requests[1]["messages"])[-1]
    results = await platform.collect(org, "results", 1)
    assert [c.record.payload for c in results] == [{"n": 1}]
    report = await _report(platform, org, agent, 1)
    assert (report.processed, report.dead_lettered, report.failed_reason) == (1, 0, None)
    return told, org


async def test_arguments_that_are_not_json_are_told_to_the_model(
    platform: Platform, scripted_llm: ScriptedLLM
) -> None:
    bad = ScriptedReply(
        tool_calls=[ScriptedToolCall(name="publish", raw_arguments='{"topic": "results",')]
    )
    told, _ = await _told_and_retried(platform, scripted_llm, "writer-json", bad)
    assert told["ok"] is False
    assert "arguments of publish are not valid JSON" in told["error"]


async def test_an_unknown_tool_is_told_to_the_model(
    platform: Platform, scripted_llm: ScriptedLLM
) -> None:
    told, _ = await _told_and_retried(
        platform, scripted_llm, "writer-tool", _call("teleport", to="mars")
    )
    assert told["ok"] is False
    assert "no tool 'teleport'" in told["error"]
    assert "publish" in told["error"], "the tools it has are named"


async def test_invalid_arguments_are_told_to_the_model(
    platform: Platform, scripted_llm: ScriptedLLM
) -> None:
    bad = _call("publish", topic="results", payload="not an object")
    told, _ = await _told_and_retried(platform, scripted_llm, "writer-args", bad)
    assert told["ok"] is False
    assert told["error"] == (
        "invalid arguments for publish: type: required; payload: expected object, got string"
    )


async def test_a_provider_that_keeps_failing_dead_letters_the_record_not_the_agent(
    platform: Platform, scripted_llm: ScriptedLLM
) -> None:
    org, agent = unique_org("llmf"), "writer-down"
    first, second = task(org, 1), task(org, 2)
    statuses = itertools.cycle([429, 500, 503])
    scripted_llm.add_rule(
        agent,
        _about(first),
        lambda messages: ScriptedReply.failure(next(statuses), "provider unavailable"),
        times=None,
    )
    scripted_llm.script(agent, [_publish(2), ScriptedReply(content="done")])
    await platform.start_org(_spec(org, agent))
    await platform.send(org, "tasks", [first, second])

    [(headers, value)] = _dead_letters(platform.settings, org, 1)
    assert value["id"] == first.id
    assert headers["dlq.reason"] == "llm-call-failed"
    assert "provider unavailable" in headers["dlq.error"]
    assert headers["dlq.attempts"] == str(MODEL_CALL_RETRY.maximum_attempts)
    # The endpoint client's retries inside each of the activity's attempts.
    tries = (platform.settings.llm_max_retries + 1) * MODEL_CALL_RETRY.maximum_attempts
    about_first = [r for r in scripted_llm.requests_for(agent) if _about(first)(r["messages"])]
    assert len(about_first) == tries
    # The agent keeps working: the next record is answered.
    results = await platform.collect(org, "results", 1)
    assert [c.record.causation_id for c in results] == [second.id]
    report = await _report(platform, org, agent, 2)
    assert (report.processed, report.dead_lettered, report.failed_reason) == (2, 1, None)
    await _replays(org, agent)


async def test_a_model_that_answers_too_late_dead_letters_the_record_not_the_agent(
    platform: Platform, scripted_llm: ScriptedLLM
) -> None:
    org, agent = unique_org("llmf"), "writer-slow"
    first, second = task(org, 1), task(org, 2)
    scripted_llm.add_rule(
        agent, _about(first), ScriptedReply(content="too late", delay_s=3.0), times=None
    )
    scripted_llm.script(agent, [_publish(2), ScriptedReply(content="done")])
    with platform.replaced(
        platform.worker, KAFKAORG_LLM_TIMEOUT_S="1", KAFKAORG_LLM_MAX_RETRIES="0"
    ):
        await platform.start_org(_spec(org, agent))
        await platform.send(org, "tasks", [first, second])
        [(headers, value)] = _dead_letters(platform.settings, org, 1)
        results = await platform.collect(org, "results", 1)
        report = await _report(platform, org, agent, 2)
    assert value["id"] == first.id
    assert headers["dlq.reason"] == "llm-call-failed"
    assert "timed out" in headers["dlq.error"].lower()
    assert headers["dlq.attempts"] == str(MODEL_CALL_RETRY.maximum_attempts)
    about_first = [r for r in scripted_llm.requests_for(agent) if _about(first)(r["messages"])]
    assert len(about_first) == MODEL_CALL_RETRY.maximum_attempts
    assert [c.record.causation_id for c in results] == [second.id]
    assert (report.processed, report.dead_lettered, report.failed_reason) == (2, 1, None)


async def test_an_empty_reply_is_nudged_once_and_a_second_dead_letters_the_record(
    platform: Platform, scripted_llm: ScriptedLLM
) -> None:
    org, agent = unique_org("llmf"), "writer-mute"
    first, second, third = task(org, 1), task(org, 2), task(org, 3)
    scripted_llm.script(
        agent,
        [
            ScriptedReply(),  # first record: empty, nudged, then answered
            _publish(1),
            ScriptedReply(content="done"),
            ScriptedReply(content=""),  # second record: empty twice
            ScriptedReply(),
            _publish(3),  # third record: the agent still works
            ScriptedReply(content="done"),
        ],
    )
    await platform.start_org(_spec(org, agent))
    await platform.send(org, "tasks", [first, second, third])

    [(headers, value)] = _dead_letters(platform.settings, org, 1)
    assert value["id"] == second.id
    assert headers["dlq.reason"] == "llm-empty-reply"
    assert "neither content nor tool calls 2 time(s)" in headers["dlq.error"]
    results = await platform.collect(org, "results", 2)
    assert [c.record.causation_id for c in results] == [first.id, third.id]
    requests = await _requests(scripted_llm, agent, 7)
    for nudged in (requests[1], requests[4]):
        assert nudged["messages"][-1] == {"role": "user", "content": EMPTY_REPLY_NUDGE}
    for asked in (requests[0], requests[3]):  # the record itself, not a nudge
        assert asked["messages"][-1]["role"] == "user"
        assert asked["messages"][-1]["content"] != EMPTY_REPLY_NUDGE
    report = await _report(platform, org, agent, 3)
    assert (report.processed, report.dead_lettered, report.failed_reason) == (3, 1, None)
    await _replays(org, agent)


async def test_the_call_cap_dead_letters_a_record_without_a_final_answer(
    platform: Platform, scripted_llm: ScriptedLLM
) -> None:
    org, agent = unique_org("llmf"), "writer-loop"
    first, second = task(org, 1), task(org, 2)
    cap = MAX_MODEL_CALLS_PER_RECORD
    # First record: never done. Second: its last allowed call is the final answer.
    looping: list[ScriptedReply | ReplyFactory] = [_call("find_agents")] * (2 * cap - 2)
    scripted_llm.script(agent, [*looping, _publish(2), ScriptedReply(content="done")])
    await platform.start_org(_spec(org, agent))
    await platform.send(org, "tasks", [first, second])

    [(headers, value)] = _dead_letters(platform.settings, org, 1)
    assert value["id"] == first.id
    assert headers["dlq.reason"] == "llm-call-cap"
    assert f"called {cap} times" in headers["dlq.error"]
    results = await platform.collect(org, "results", 1)
    assert [c.record.causation_id for c in results] == [second.id]
    report = await _report(platform, org, agent, 2)
    assert (report.processed, report.dead_lettered, report.failed_reason) == (2, 1, None)
    requests = scripted_llm.requests_for(agent)
    assert len(requests) == 2 * cap
    # The first record's last calls were answered as not run: the carried chat stays valid.
    carried = requests[cap]["messages"]
    not_run = _tool_results(carried)[cap - 1]
    assert not_run["ok"] is False and f"called {cap} times" in not_run["error"]
    await _replays(org, agent)
