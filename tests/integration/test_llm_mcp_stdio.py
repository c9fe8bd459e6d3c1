"""stdio MCP servers: started by the sandbox worker in nsjail, a fresh jail per session.

The server (tests/mcp_stdio_server.py, ``FastMCP`` over stdio) is run the way an org
runs one: Debian's Python in the jail, with an ``mcp`` installed for that Python in a
directory the spec mounts read-only. Its tools report what the jail lets them do, so
the tests see the jail from inside; the scripted server plays the model only.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from kafkaorg.mcp_tools import CALL_ACTIVITY, DISCOVER_ACTIVITY, LIST_JAILED_ACTIVITY
from kafkaorg.names import SANDBOX_TASK_QUEUE, TASK_QUEUE, agent_workflow_id, dlq_topic
from tests.llm_server import Messages, ScriptedLLM, ScriptedReply, tool_call, tool_results
from tests.mcp_stdio_server import FACTS, install_for_jail
from tests.support import Platform, raw_messages, run_cli_async, task, unique_org

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server_dir() -> Path:
    """``server.py`` and ``lib/`` (the SDK, for the jail's Python), readable by uid 65534."""
    return install_for_jail()


def _agent(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "llm",
        "instructions": "Use your MCP tools and publish what they said on results.",
        "subscribes": ["tasks"],
        "publishes": ["results"],
        "mcp": ["notes"],
    }


def _spec(org: str, server_dir: Path, agent: str, **server: Any) -> dict[str, Any]:
    notes = {
        "name": "notes",
        "command": ["python3", str(server_dir / "server.py")],
        "mounts": [str(server_dir)],
        "env": {"PYTHONPATH": str(server_dir / "lib"), "GREETING": "hello from the spec"},
        "timeout_s": 30,
        **server,
    }
    return {
        "org": org,
        "topics": [{"name": "tasks", "partitions": 1}, {"name": "results", "partitions": 1}],
        "mcp_servers": [notes],
        "agents": [_agent(agent)],
    }


def _publish_tool_results(messages: Messages) -> ScriptedReply:
    results = tool_results(messages)
    return tool_call("publish", topic="results", type="notes.found", payload={"results": results})


def _results(payload: dict[str, Any]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = payload["results"]
    return results


async def _scheduled(platform: Platform, org: str, agent: str) -> list[tuple[str, str]]:
    """The agent's activities as (type, task queue), in order."""
    history = await platform.client.get_workflow_handle(
        agent_workflow_id(org, agent)
    ).fetch_history()
    return [
        (
            e.activity_task_scheduled_event_attributes.activity_type.name,
            e.activity_task_scheduled_event_attributes.task_queue.name,
        )
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]


async def test_an_agent_uses_a_stdio_server_that_runs_jailed_on_the_sandbox_worker(
    platform: Platform, scripted_llm: ScriptedLLM, server_dir: Path
) -> None:
    org, agent = unique_org("mcpio"), "noter-a"
    kafka_port = int(platform.settings.kafka_bootstrap.rsplit(":", 1)[1])
    scripted_llm.script(
        agent,
        [
            tool_call("mcp__notes__lookup", key="nsjail"),
            tool_call("mcp__notes__whereami", port=kafka_port),
            _publish_tool_results,
            ScriptedReply(content="Published."),
        ],
    )
    await platform.start_org(_spec(org, server_dir, agent))
    request = task(org, 1)
    await platform.send(org, "tasks", [request])

    [found] = await platform.collect(org, "results", 1, timeout=120)
    assert found.record.causation_id == request.id
    looked_up, where = _results(found.record.payload)
    assert looked_up == {
        "ok": True,
        "server": "notes",
        "tool": "lookup",
        "content": FACTS["nsjail"],
    }
    assert where["ok"] is True, where
    inside = json.loads(where["content"])
    # Seen from inside: the sandbox's user and host name, no network (not even the
    # Kafka broker on this host's loopback), its own directory read-only, and the
    # environment the spec gave it.
    assert inside["uid"] == 65534
    assert inside["hostname"] == "sandbox"
    assert inside["network"].startswith("unreachable"), inside
    assert inside["own_dir"].startswith("read-only"), inside
    assert inside["greeting"] == "hello from the spec"

    [first] = await scripted_llm.wait_for_requests(agent, 1)
    offered = {t["function"]["name"]: t["function"] for t in first["tools"]}
    assert {"mcp__notes__lookup", "mcp__notes__whereami", "mcp__notes__spin"} <= set(offered)
    assert offered["mcp__notes__lookup"]["parameters"]["required"] == ["key"]
    assert "Look up a fact" in offered["mcp__notes__lookup"]["description"]

    # Listed by the worker (which leaves stdio servers to the sandbox worker), then
    # listed and called on the sandbox worker's task queue.
    scheduled = await _scheduled(platform, org, agent)
    mcp_activities = [a for a in scheduled if a[0] in (DISCOVER_ACTIVITY, LIST_JAILED_ACTIVITY)]
    assert mcp_activities == [
        (DISCOVER_ACTIVITY, TASK_QUEUE),
        (LIST_JAILED_ACTIVITY, SANDBOX_TASK_QUEUE),
    ]
    calls = [a for a in scheduled if a[0] == CALL_ACTIVITY]
    assert calls == [(CALL_ACTIVITY, SANDBOX_TASK_QUEUE)] * 2

    replayed = await run_cli_async("workflow", "replay", agent_workflow_id(org, agent))
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "0 failed" in replayed.stdout


async def test_a_stdio_server_stopped_by_a_sandbox_limit_is_an_error_the_model_reads(
    platform: Platform, scripted_llm: ScriptedLLM, server_dir: Path
) -> None:
    org, agent = unique_org("mcpio"), "noter-b"
    scripted_llm.script(
        agent,
        [
            tool_call("mcp__notes__spin", seconds=30),
            tool_call("mcp__notes__lookup", key="stdio"),
            _publish_tool_results,
            ScriptedReply(content="done"),
        ],
    )
    await platform.start_org(_spec(org, server_dir, agent, sandbox={"cpu_time_s": 2}))
    await platform.send(org, "tasks", [task(org, 1)])

    [done] = await platform.collect(org, "results", 1, timeout=120)
    spun, looked_up = _results(done.record.payload)
    assert spun["ok"] is False
    assert "MCP server notes (stdio python3, in the sandbox)" in spun["error"], spun
    assert "CPU-time limit" in spun["error"], spun
    # The agent goes on: its next call, in a fresh jail, works.
    assert looked_up["ok"] is True and looked_up["content"] == FACTS["stdio"]
    calls = [a for a in await _scheduled(platform, org, agent) if a[0] == CALL_ACTIVITY]
    assert len(calls) == 2, "a limit hit is not retried: the same call would hit it again"


async def test_a_command_the_sandbox_cannot_find_dead_letters_the_record_in_one_attempt(
    platform: Platform, scripted_llm: ScriptedLLM, server_dir: Path
) -> None:
    org, agent = unique_org("mcpio"), "noter-c"
    await platform.start_org(
        _spec(org, server_dir, agent, command=["no-such-mcp-server", "--stdio"])
    )
    request = task(org, 1)
    await platform.send(org, "tasks", [request])

    [message] = await asyncio.to_thread(raw_messages, platform.settings, dlq_topic(org), 1, 90)
    headers = {k: (v or b"").decode() for k, v in message.headers() or []}
    assert headers["dlq.reason"] == "mcp-unavailable"
    assert (
        "MCP server notes: command 'no-such-mcp-server' not found in the sandbox"
        in (headers["dlq.error"])
    ), headers
    assert headers["dlq.attempts"] == "1", "not retried: the command will not appear"
    assert json.loads(message.value())["id"] == request.id
    assert scripted_llm.requests_for(agent) == [], "no model call without its tools"
