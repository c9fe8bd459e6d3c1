"""An llm agent against the real local model (llama-cpp-python serving SmolLM2-135M).

Runs when the local model is installed (``kafkaorg dev install --llm``; the README's test
command installs it). Asserts structure, not wording: the record is finished, every
model reply is prose or tool calls the platform answered (an error for broken JSON or an
unknown tool), what came out answers the record, the tokens are in PostgreSQL and
the agent's history replays against the code.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from kafkaorg.client import agent_conversation, agent_report
from kafkaorg.config import Settings
from kafkaorg.db import Org
from kafkaorg.db.models import LlmUsage
from kafkaorg.devstack import LocalModelService, model_file, server_installed
from kafkaorg.llm.failures import LLM_REPLY_TYPE
from kafkaorg.llm.prompts import allowed_tools
from kafkaorg.names import agent_workflow_id
from kafkaorg.spec import AgentSpec
from tests.support import Platform, db_sessions, run_cli_async, task, unique_org

pytestmark = pytest.mark.integration

INSTRUCTIONS = (
    'Each record is a task. Answer it in one short sentence by calling publish with topic "results"'
    ', type "task.done" and payload {"answer": "<your sentence>"}.'
)


@pytest.fixture(scope="module")
def local_model(stack: Settings) -> Iterator[LocalModelService]:
    if not (server_installed(stack) and model_file(stack) is not None):
        pytest.skip("the local model is not installed (kafkaorg dev install --llm)")
    service = LocalModelService(stack)
    started_here = not service.healthy()
    if started_here:
        service.preflight()
        service.launch()
        deadline = time.monotonic() + service.timeout_s
        while not service.healthy():
            assert service.our_pid() is not None, service.log_file.read_text()[-2000:]
            assert time.monotonic() < deadline, "the local model did not start"
            time.sleep(0.5)
    yield service
    if started_here:
        service.stop()


def _spec(org: str) -> dict[str, Any]:
    return {
        "org": org,
        "topics": [{"name": "tasks", "partitions": 1}, {"name": "results", "partitions": 1}],
        "agents": [
            {
                "name": "thinker",
                "kind": "llm",
                "instructions": INSTRUCTIONS,
                "subscribes": ["tasks"],
                "publishes": ["results"],
                "on_text_reply": "publish",
                "first_tool_choice": "publish",  # as kafkaorg demo --llm does
            }
        ],
    }


def _answered(conversation: list[dict[str, Any]], tools: set[str]) -> None:
    """Every call a model reply made is answered by a tool message; a call the platform
    cannot run (no JSON object, a tool the agent lacks) is answered with an error naming
    it. A 135M model writes broken JSON now and then: the platform's part is to say so
    rather than crash or hang, and that is what this checks."""
    answers = {m.get("tool_call_id"): m for m in conversation if m.get("role") == "tool"}
    for reply in (m for m in conversation if m.get("role") == "assistant"):
        calls = reply.get("tool_calls") or []
        if not calls:
            assert isinstance(reply.get("content"), str | list), reply
            continue
        for call in calls:
            answer = answers.get(call.get("id"))
            if answer is None:  # the last turn of a record that ended on this call
                continue
            name, arguments = call["function"]["name"], call["function"]["arguments"]
            try:
                parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
            except json.JSONDecodeError:
                parsed = None
            result = json.loads(answer["content"])
            if result.get("error", "").startswith("not run:"):  # the record hit its call cap
                continue
            if not isinstance(parsed, dict):
                assert result["ok"] is False, (call, answer)
                assert name in result["error"] and "JSON" in result["error"], (call, answer)
            elif name not in tools:
                assert result["ok"] is False and f"no tool {name!r}" in result["error"], answer


async def test_an_llm_agent_answers_with_the_local_model(
    platform: Platform, local_model: LocalModelService
) -> None:
    org = unique_org("local")
    with platform.replaced(
        platform.worker,
        KAFKAORG_LLM_BASE_URL=local_model.base_url,
        KAFKAORG_LLM_MODEL=local_model.model_name,
        KAFKAORG_LLM_MAX_TOKENS_PARAM="max_tokens",
        KAFKAORG_LLM_MAX_TOKENS="128",
        KAFKAORG_LLM_MAX_RETRIES="0",
        KAFKAORG_LLM_TIMEOUT_S="300",
    ):
        spec = await platform.start_org(_spec(org))
        sent = task(org, 1)
        await platform.send(org, "tasks", [sent])
        deadline = asyncio.get_running_loop().time() + 240
        while (report := await agent_report(platform.client, org, "thinker")).processed < 1:
            assert asyncio.get_running_loop().time() < deadline, report
            assert report.failed_reason is None, report
            await asyncio.sleep(1)
        conversation = await agent_conversation(platform.client, org, "thinker")

    assert (report.processed, report.failed_reason) == (1, None)
    replies = [m for m in conversation.messages if m.get("role") == "assistant"]
    assert replies, (report, conversation)
    agent = AgentSpec.model_validate(spec.agents[0].model_dump())
    _answered(conversation.messages, set(allowed_tools(agent)))
    if report.dead_lettered == 0:  # published, by a publish call or as its prose answer
        [out] = await platform.collect(org, "results", 1)
        assert out.record.causation_id == sent.id
        assert out.record.source == "agent:thinker"
        assert out.record.type == LLM_REPLY_TYPE or "publish" in json.dumps(replies)
    with db_sessions(platform.settings)() as session:
        usage = session.scalars(select(LlmUsage).join(Org).where(Org.name == org)).all()
    assert usage and all(u.total_tokens > 0 for u in usage)
    assert {u.model for u in usage} == {local_model.model_name}
    replayed = await run_cli_async("workflow", "replay", agent_workflow_id(org, "thinker"))
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "0 failed" in replayed.stdout
