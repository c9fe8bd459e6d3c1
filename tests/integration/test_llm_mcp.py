"""MCP tools of ``llm`` agents against a real MCP server built with the official SDK.

The server (tests/mcp_server.py, ``FastMCP`` over streamable HTTP) runs in the test
process and counts the calls it serves; the worker discovers its tools and calls
them as Temporal activities. The scripted server plays the model only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kafkaorg import client as service
from kafkaorg.mcp_tools import CALL_ACTIVITY, DISCOVER_ACTIVITY, MAX_RESULT_BYTES
from kafkaorg.names import agent_workflow_id, dlq_topic
from kafkaorg.spec import validate_spec
from tests.llm_server import Messages, ScriptedLLM, ScriptedReply, tool_call, tool_results
from tests.mcp_server import FACTS, McpTestServer, free_port
from tests.support import (
    Platform,
    assert_one_clear_line,
    raw_messages,
    run_cli,
    run_cli_async,
    task,
    unique_org,
)

pytestmark = pytest.mark.integration

LOOKUP = "mcp__docs__lookup"


@pytest.fixture(scope="module")
def mcp_server() -> Iterator[McpTestServer]:
    with McpTestServer() as server:
        yield server


def _agent(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "llm",
        "instructions": "Look facts up with your MCP tools and publish them on results.",
        "subscribes": ["tasks"],
        "publishes": ["results"],
        **extra,
    }


def _spec(org: str, url: str, *agents: dict[str, Any], **server: Any) -> dict[str, Any]:
    return {
        "org": org,
        "topics": [{"name": "tasks", "partitions": 1}, {"name": "results", "partitions": 1}],
        "mcp_servers": [{"name": "docs", "url": url, **server}],
        "agents": list(agents),
    }


def _offered(request: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in request.get("tools") or []]


def _publish_last_result(messages: Messages) -> ScriptedReply:
    """The model relays what the MCP tool answered: the payload is the tool's."""
    answer = tool_results(messages)[-1]
    return tool_call(
        "publish", topic="results", type="fact.found", payload={"fact": answer["content"]}
    )


async def test_an_agent_calls_an_mcp_tool_once_even_when_its_history_is_replayed(
    platform: Platform, scripted_llm: ScriptedLLM, mcp_server: McpTestServer
) -> None:
    org, agent = unique_org("mcp"), "looker-a"
    scripted_llm.script(
        agent,
        [
            tool_call(LOOKUP, key="kafka"),
            _publish_last_result,
            ScriptedReply(content="Published the fact."),
            ScriptedReply(content="Nothing to look up."),
        ],
    )
    await platform.start_org(_spec(org, mcp_server.url, _agent(agent, mcp=["docs"])))
    request = task(org, 1)
    await platform.send(org, "tasks", [request])

    [found] = await platform.collect(org, "results", 1, timeout=90)
    assert found.record.payload == {"fact": FACTS["kafka"]}
    assert found.record.causation_id == request.id
    first, second = await scripted_llm.wait_for_requests(agent, 2)
    # Discovered at the agent's start: every tool of the server, namespaced.
    assert {LOOKUP, "mcp__docs__explode", "mcp__docs__big"} <= set(_offered(first))
    assert "publish" in _offered(first)
    lookup = next(t for t in first["tools"] if t["function"]["name"] == LOOKUP)["function"]
    assert lookup["parameters"]["required"] == ["key"]
    assert "Look up a fact" in lookup["description"]
    # The model's next request carries the tool's answer.
    assert tool_results(second["messages"])[-1] == {
        "ok": True,
        "server": "docs",
        "tool": "lookup",
        "content": FACTS["kafka"],
    }
    assert mcp_server.calls_of("lookup").count({"key": "kafka"}) == 1

    # A fresh worker replays the agent's whole history for its next record: the MCP call
    # is taken from the history, not made again.
    await asyncio.to_thread(platform.worker.stop)
    await asyncio.to_thread(platform.worker.start)
    await platform.send(org, "tasks", [task(org, 2)])
    await scripted_llm.wait_for_requests(agent, 4, timeout=90)
    status = await platform.agent_status(org, agent, until=lambda s: s.processed == 2, timeout=30)
    assert status.failed_reason is None
    assert mcp_server.calls_of("lookup").count({"key": "kafka"}) == 1

    # Listed once for both records: the second took the catalog from the replayed history.
    history = await platform.client.get_workflow_handle(
        agent_workflow_id(org, agent)
    ).fetch_history()
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert scheduled.count(DISCOVER_ACTIVITY) == 1
    assert scheduled.count(CALL_ACTIVITY) == 1

    replayed = await run_cli_async("workflow", "replay", agent_workflow_id(org, agent))
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "0 failed" in replayed.stdout
    assert mcp_server.calls_of("lookup").count({"key": "kafka"}) == 1


async def test_tool_errors_bad_arguments_and_big_results_go_back_to_the_model(
    platform: Platform, scripted_llm: ScriptedLLM, mcp_server: McpTestServer
) -> None:
    org, agent = unique_org("mcp"), "looker-b"
    scripted_llm.script(
        agent,
        [
            tool_call("mcp__docs__explode", reason="on purpose"),
            tool_call(LOOKUP, wrong="field"),
            tool_call("mcp__docs__big"),
            tool_call("publish", topic="results", type="task.done", payload={"went": "on"}),
            ScriptedReply(content="done"),
        ],
    )
    await platform.start_org(_spec(org, mcp_server.url, _agent(agent, mcp=["docs"])))
    explodes_before = len(mcp_server.calls_of("explode"))
    lookups_before = len(mcp_server.calls_of("lookup"))
    await platform.send(org, "tasks", [task(org, 1)])

    [done] = await platform.collect(org, "results", 1, timeout=90)
    assert done.record.payload == {"went": "on"}
    requests = await scripted_llm.wait_for_requests(agent, 5)
    exploded = tool_results(requests[1]["messages"])[-1]
    assert exploded["ok"] is False
    assert "exploded: on purpose" in exploded["error"]
    # A tool's own error is a result: the server ran it once, it was not retried.
    assert len(mcp_server.calls_of("explode")) == explodes_before + 1
    invalid = tool_results(requests[2]["messages"])[-1]
    assert invalid["ok"] is False
    assert "invalid arguments for docs/lookup" in invalid["error"]
    assert "'key' is a required property" in invalid["error"]
    assert len(mcp_server.calls_of("lookup")) == lookups_before, "refused before the server"
    big = tool_results(requests[3]["messages"])[-1]
    assert big["ok"] is True
    assert big["truncated"] == "40000 bytes in all"
    assert len(big["content"].encode()) < MAX_RESULT_BYTES + 100
    assert big["content"].endswith(f"[truncated: {MAX_RESULT_BYTES} of 40000 bytes shown]")


async def test_an_agent_gets_only_the_mcp_tools_its_spec_allows(
    platform: Platform, scripted_llm: ScriptedLLM, mcp_server: McpTestServer
) -> None:
    org, narrow, outsider = unique_org("mcp"), "narrow-c", "outsider-c"
    scripted_llm.script(
        narrow, [tool_call("mcp__docs__explode", reason="not allowed"), ScriptedReply(content="ok")]
    )
    scripted_llm.script(outsider, [tool_call(LOOKUP, key="kafka"), ScriptedReply(content="ok")])
    await platform.start_org(
        _spec(org, mcp_server.url, _agent(narrow, mcp=["docs.lookup"]), _agent(outsider))
    )
    explodes_before = len(mcp_server.calls_of("explode"))
    lookups_before = len(mcp_server.calls_of("lookup"))
    await platform.send(org, "tasks", [task(org, 1)])

    narrow_requests = await scripted_llm.wait_for_requests(narrow, 2)
    outsider_requests = await scripted_llm.wait_for_requests(outsider, 2)
    offered = _offered(narrow_requests[0])
    assert LOOKUP in offered and "mcp__docs__explode" not in offered
    refused = tool_results(narrow_requests[1]["messages"])[-1]
    assert refused["ok"] is False
    assert "no tool 'mcp__docs__explode'" in refused["error"]
    assert LOOKUP in refused["error"], "the refusal lists the tools it does have"
    assert not [n for n in _offered(outsider_requests[0]) if n.startswith("mcp__")]
    refused = tool_results(outsider_requests[1]["messages"])[-1]
    assert refused["ok"] is False and f"no tool {LOOKUP!r}" in refused["error"]
    assert len(mcp_server.calls_of("explode")) == explodes_before
    assert len(mcp_server.calls_of("lookup")) == lookups_before


async def test_a_changed_allow_list_is_listed_again_on_the_next_record(
    platform: Platform, scripted_llm: ScriptedLLM, mcp_server: McpTestServer
) -> None:
    org, agent = unique_org("mcp"), "looker-e"
    scripted_llm.script(agent, [ScriptedReply(content="first"), ScriptedReply(content="second")])
    await platform.start_org(_spec(org, mcp_server.url, _agent(agent, mcp=["docs.lookup"])))
    await platform.send(org, "tasks", [task(org, 1)])
    [before] = await scripted_llm.wait_for_requests(agent, 1)
    assert [n for n in _offered(before) if n.startswith("mcp__")] == [LOOKUP]

    wider = validate_spec(_spec(org, mcp_server.url, _agent(agent, mcp=["docs"])))
    applied = await service.apply_spec(platform.client, wider)
    assert applied.changed and any("mcp changed" in line for line in applied.summary)
    await platform.agent_status(org, agent, until=lambda s: s.version >= 2, timeout=30)
    await platform.send(org, "tasks", [task(org, 2)])
    after = (await scripted_llm.wait_for_requests(agent, 2))[1]
    assert {LOOKUP, "mcp__docs__explode", "mcp__docs__big"} <= set(_offered(after))


async def test_a_server_down_at_discovery_dead_letters_the_record_and_the_agent_goes_on(
    platform: Platform, scripted_llm: ScriptedLLM
) -> None:
    org, agent = unique_org("mcp"), "looker-d"
    down = f"http://127.0.0.1:{free_port()}/mcp"
    await platform.start_org(_spec(org, down, _agent(agent, mcp=["docs"]), timeout_s=5))
    request = task(org, 1)
    await platform.send(org, "tasks", [request])

    [message] = await asyncio.to_thread(raw_messages, platform.settings, dlq_topic(org), 1, 90)
    headers = {k: (v or b"").decode() for k, v in message.headers() or []}
    assert headers["dlq.reason"] == "mcp-unavailable"
    assert headers["dlq.agent"] == agent
    assert f"MCP server docs ({down}) unreachable" in headers["dlq.error"]
    assert headers["dlq.attempts"] == "3"
    assert json.loads(message.value())["id"] == request.id
    status = await platform.agent_status(org, agent, until=lambda s: s.dead_lettered == 1)
    assert status.failed_reason is None, "the agent keeps working"
    assert scripted_llm.requests_for(agent) == [], "no model call without its tools"


def test_plan_and_apply_refuse_an_agent_naming_an_undeclared_server(
    stack: Any, tmp_path: Path
) -> None:
    spec = _spec(unique_org("mcp"), "http://127.0.0.1:9/mcp", _agent("helper", mcp=["wiki"]))
    spec_file = tmp_path / "org.json"
    spec_file.write_text(json.dumps(spec))
    for command in ("plan", "apply"):
        result = run_cli("org", command, str(spec_file))
        assert_one_clear_line(result, 2, "agent 'helper'", "unknown MCP server 'wiki'")
