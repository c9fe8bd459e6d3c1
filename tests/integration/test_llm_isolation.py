"""An llm agent's built-in tools see only its own org.

Org B has a tool, a same-named agent with archived conversation turns, and topics
named like A's. Org A's llm agent asks for all of it through its built-ins
(``find_tools``, ``find_agents``, ``call_tool``, ``recall_conversation``, ``publish``):
each answer comes from org A alone, and nothing reaches org B's topics.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from activities.conversation import ArchiveInput, ConversationActivities
from kafkaorg import client as service
from kafkaorg.names import agent_workflow_id, kafka_topic
from tests.llm_server import ScriptedLLM, ScriptedReply, ScriptedToolCall
from tests.support import Platform, db_sessions, raw_messages, task, unique_org

pytestmark = pytest.mark.integration

SECRET_TOOL = "def run(args):\n    return {'secret': 42}\n"


def _call(tool: str, /, **arguments: Any) -> ScriptedReply:
    return ScriptedReply(tool_calls=[ScriptedToolCall(name=tool, arguments=arguments)])


def _tool_results(request: dict[str, Any]) -> dict[str, Any]:
    tool_messages = [m for m in request["messages"] if m.get("role") == "tool"]
    return dict(json.loads(tool_messages[-1]["content"]))


async def test_an_llm_agents_built_ins_never_reach_another_org(
    platform: Platform, scripted_llm: ScriptedLLM
) -> None:
    a, b = unique_org("iso-a"), unique_org("iso-b")
    spy = f"spy-{uuid.uuid4().hex[:8]}"  # the scripted server tells agents apart by name
    secret = f"secret_{uuid.uuid4().hex[:6]}"
    topics = [{"name": "tasks", "partitions": 1}, {"name": "results", "partitions": 1}]
    await platform.start_org(
        {
            "org": b,
            "topics": topics,
            "tools": [{"name": secret, "code": SECRET_TOOL, "tests": "assert run({})"}],
            "agents": [
                {"name": spy, "kind": "echo", "subscribes": ["tasks"], "publishes": ["results"]}
            ],
        }
    )
    await platform.start_org(
        {
            "org": a,
            "topics": topics,
            "agents": [
                {
                    "name": spy,
                    "kind": "llm",
                    "instructions": "Look around.",
                    "subscribes": ["tasks"],
                    "publishes": ["results"],
                }
            ],
        }
    )
    # B's same-named agent has archived turns under the very chain id A's agent uses.
    description = await service.agent_handle(platform.client, a, spy).describe()
    sessions = db_sessions(platform.settings)
    ConversationActivities(sessions).archive_turns(
        ArchiveInput(
            org=b,
            agent=spy,
            workflow_id=agent_workflow_id(b, spy),
            chain_id=description.run_id or "",
            first_turn=1,
            turns=[[{"role": "user", "content": "B-SECRET plans"}]],
        )
    )
    sessions.kw["bind"].dispose()
    scripted_llm.script(
        spy,
        [
            _call("find_tools", query=""),
            _call("find_agents", query=""),
            _call("call_tool", name=secret, args={}),
            _call("recall_conversation", query="B-SECRET"),
            _call("publish", topic=kafka_topic(b, "results"), type="leak", payload={}),
            _call("publish", topic="results", type="found", payload={"n": 1}),
            ScriptedReply(content="done"),
        ],
    )
    await platform.send(a, "tasks", [task(a, 1)])

    for _ in range(300):
        if len(scripted_llm.requests_for(spy)) >= 7:
            break
        await asyncio.sleep(0.2)
    requests = scripted_llm.requests_for(spy)
    assert len(requests) == 7, requests
    found_tools, found_agents, called, recalled, leaked, published = (
        _tool_results(r) for r in requests[1:7]
    )
    assert found_tools["ok"] and found_tools["tools"] == []
    assert found_agents["ok"]
    assert [x["name"] for x in found_agents["agents"]] == [spy]
    assert not called["ok"] and secret in called["error"]
    assert recalled["ok"] and recalled["turns"] == []
    assert not leaked["ok"] and "may not publish" in leaked["error"]
    assert published["ok"]
    out = await platform.collect(a, "results", 1, timeout=30)
    assert [c.record.type for c in out] == ["found"]
    in_b = await asyncio.to_thread(raw_messages, platform.settings, kafka_topic(b, "results"), 1, 3)
    assert in_b == []
