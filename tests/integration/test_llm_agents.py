"""``llm`` agents end to end: LangGraph over a scripted OpenAI-compatible server, all else real.

The scripted server stands in for the model only. The tool an agent writes is
tested in nsjail by the sandbox worker, registered in PostgreSQL by the
OrgWorkflow, called through the sandbox again, and the helper agent it asks for
is a real AgentWorkflow fed by the real bridge.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import select

from activities.conversation import ArchiveInput, ConversationActivities
from kafkaorg.db.models import ConversationTurn, Org, Tool, ToolVersion
from kafkaorg.llm.usage import tokens_by_agent
from kafkaorg.names import agent_workflow_id
from tests.llm_server import ScriptedLLM, ScriptedReply, ScriptedToolCall
from tests.support import (
    Platform,
    assert_one_clear_line,
    db_sessions,
    raw_messages,
    run_cli,
    task,
    unique_org,
)
from workflows.agent import AgentWorkflow

pytestmark = pytest.mark.integration

WORD_COUNT = """\
def run(args):
    return {"words": len(args["text"].split())}
"""
WORD_COUNT_TESTS = """\
assert run({"text": "a b c"}) == {"words": 3}

def test_empty():
    assert run({"text": ""}) == {"words": 0}
"""
BROKEN_TESTS = """\
def test_counts_hyphens_as_separators():
    assert run({"text": "well-known fact"}) == {"words": 3}
"""


def _spec(org: str, planner: str, **limits: Any) -> dict[str, Any]:
    return {
        "org": org,
        "topics": [
            {"name": "tasks", "partitions": 1},
            {"name": "subtasks", "partitions": 1},
            {"name": "results", "partitions": 1},
        ],
        "limits": limits,
        "agents": [
            {
                "name": planner,
                "kind": "llm",
                "instructions": "Count the words of each task's text; delegate subtasks.",
                "subscribes": ["tasks"],
                "publishes": ["results", "subtasks"],
                "can_create_tools": True,
                "can_create_agents": True,
            }
        ],
    }


def _call(tool: str, /, **arguments: Any) -> ScriptedReply:
    return ScriptedReply(tool_calls=[ScriptedToolCall(name=tool, arguments=arguments)])


def _last_tool_result(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON the platform answered the model's last tool call with."""
    tool_messages = [m for m in messages if m.get("role") == "tool"]
    return dict(json.loads(tool_messages[-1]["content"])) if tool_messages else {}


async def _requests(
    llm: ScriptedLLM, agent: str, count: int, timeout: float
) -> list[dict[str, Any]]:
    """The first ``count`` model requests of ``agent``, once they have arrived."""
    deadline = asyncio.get_running_loop().time() + timeout
    while len(llm.requests_for(agent)) < count:
        assert asyncio.get_running_loop().time() < deadline, llm.requests_for(agent)
        await asyncio.sleep(0.2)
    return llm.requests_for(agent)[:count]


async def _agent_status(platform: Platform, org: str, agent: str) -> Any:
    handle = platform.client.get_workflow_handle_for(
        AgentWorkflow.run, agent_workflow_id(org, agent)
    )
    return await handle.query(AgentWorkflow.status)


async def test_llm_agent_writes_a_tool_calls_it_and_spawns_a_helper(
    platform: Platform, scripted_llm: ScriptedLLM
) -> None:
    org, planner, helper = unique_org("llm"), "planner-a", "counter-a"

    def publish_the_count(messages: list[dict[str, Any]]) -> ScriptedReply:
        # The payload is what the sandboxed tool computed: the model only relays it.
        counted = _last_tool_result(messages)["result"]
        return _call("publish", topic="results", type="task.done", payload=counted)

    scripted_llm.script(
        planner,
        [
            _call(
                "create_tool",
                name="word_count",
                description="counts words",
                code=WORD_COUNT,
                tests=WORD_COUNT_TESTS,
                args_schema={"type": "object", "properties": {"text": {"type": "string"}}},
            ),
            _call("call_tool", name="word_count", args={"text": "one two three four"}),
        ],
    )
    scripted_llm.add_rule(
        planner,
        lambda messages: _last_tool_result(messages).get("tool") == "word_count",
        publish_the_count,
    )
    scripted_llm.script(
        planner,
        [
            _call(
                "create_agent",
                name=helper,
                kind="tool",
                tool="word_count",
                subscribes=["subtasks"],
                publishes=["results"],
                emit="subtask.done",
            ),
            _call("publish", topic="subtasks", type="subtask", payload={"text": "x y"}),
            ScriptedReply(content="Counted 4 words and delegated one subtask."),
        ],
    )
    await platform.start_org(_spec(org, planner))
    request = task(org, 1)
    await platform.send(org, "tasks", [request])

    results = await platform.collect(org, "results", 2, timeout=120)
    by_type = {c.record.type: c.record for c in results}
    done = by_type["task.done"]
    assert done.payload == {"words": 4}
    assert done.causation_id == request.id
    assert done.correlation_id == request.correlation_id
    assert done.source == f"agent:{planner}"

    # The helper the planner created ran the planner's tool on the planner's subtask.
    subtasks = await platform.collect(org, "subtasks", 1)
    subtask = subtasks[0].record
    assert subtask.causation_id == request.id
    helped = by_type["subtask.done"]
    assert helped.payload == {"words": 2}
    assert helped.causation_id == subtask.id
    assert helped.source == f"agent:{helper}"

    with db_sessions(platform.settings)() as session:
        version = session.execute(
            select(ToolVersion, Tool)
            .join(Tool, Tool.id == ToolVersion.tool_id)
            .where(Tool.name == "word_count", Tool.org_id.in_(_org_ids(org)))
        ).all()
        usage = tokens_by_agent(session, org)
    assert [(v.version, v.status, v.author) for v, _ in version] == [
        (1, "active", f"agent:{org}:{planner}")
    ]
    assert version[0][1].current_version == 1
    assert version[0][0].test_result is not None
    assert version[0][0].test_result["tests"] == 2
    # Six model calls of 11 + 7 tokens each (the scripted server's usage figures).
    assert usage[planner].total_tokens == 6 * 18

    audit = await platform.collect(org, "sys.audit", 1, timeout=30, settle=2.0)
    audit_types = [c.record for c in audit]
    registered = next(r for r in audit_types if r.type == "tool.registered")
    assert registered.payload["tool"] == "word_count"
    created = next(
        r for r in audit_types if r.type == "agent.created" and r.payload["agent"] == helper
    )
    assert created.payload["created_by"] == f"agent:{org}:{planner}"
    assert created.payload["parent_agent"] == planner

    shown = json.loads(run_cli("org", "usage", org, "--json").stdout)
    assert shown["agents"][planner]["total_tokens"] == 6 * 18
    assert shown["total_tokens"] == 6 * 18 and shown["budget"] is None

    status = await _agent_status(platform, org, planner)
    assert status.processed == 1
    assert status.tokens == 6 * 18
    assert status.conversation_messages >= 12


async def test_a_tool_whose_tests_fail_is_not_registered_and_the_agent_is_told_why(
    platform: Platform, scripted_llm: ScriptedLLM
) -> None:
    org, planner = unique_org("llm"), "planner-b"
    scripted_llm.script(
        planner,
        [
            _call(
                "create_tool",
                name="word_count",
                description="counts words",
                code=WORD_COUNT,
                tests=BROKEN_TESTS,
            ),
            _call("call_tool", name="word_count", args={"text": "a b"}),
            ScriptedReply(content="The tool failed its tests; giving up."),
        ],
    )
    await platform.start_org(_spec(org, planner))
    await platform.send(org, "tasks", [task(org, 1)])

    requests = await _requests(scripted_llm, planner, 3, timeout=90)
    told = _last_tool_result(requests[1]["messages"])
    assert told["ok"] is False
    assert "not registered" in told["error"]
    assert "failed its tests" in told["error"]
    assert "test_counts_hyphens_as_separators" in told["error"]
    # Calling it anyway: there is no usable version.
    refused = _last_tool_result(requests[2]["messages"])
    assert refused["ok"] is False
    assert "word_count" in refused["error"]

    with db_sessions(platform.settings)() as session:
        rows = session.execute(
            select(Tool.current_version, ToolVersion.status)
            .join(ToolVersion, ToolVersion.tool_id == Tool.id)
            .where(Tool.name == "word_count", Tool.org_id.in_(_org_ids(org)))
        ).all()
    assert rows == [(None, "failed")]


async def test_the_token_budget_stops_an_agent_that_exceeds_it(
    platform: Platform, scripted_llm: ScriptedLLM
) -> None:
    org, planner = unique_org("llm"), "planner-c"
    # 18 tokens a call: the third call finds 36 used of a 30-token budget.
    scripted_llm.script(
        planner,
        [_call("find_tools"), _call("find_agents"), ScriptedReply(content="never reached")],
    )
    await platform.start_org(_spec(org, planner, llm_token_budget=30))
    request = task(org, 1)
    await platform.send(org, "tasks", [request])

    dead = raw_messages(platform.settings, f"{org}.sys.dlq", 1, timeout=90)
    assert len(dead) == 1
    headers = {k: (v or b"").decode() for k, v in dead[0].headers() or []}
    assert headers["dlq.agent"] == planner
    assert "budget" in headers["dlq.error"]
    assert json.loads(dead[0].value())["id"] == request.id
    for _ in range(50):  # the DLQ comes first, then the status
        status = await _agent_status(platform, org, planner)
        if status.failed_reason:
            break
        await asyncio.sleep(0.2)
    assert status.failed_reason and "llm_token_budget" in status.failed_reason
    assert len(scripted_llm.requests_for(planner)) == 2


async def test_an_agents_budget_stops_the_agents_it_spawned_and_itself(
    platform: Platform, scripted_llm: ScriptedLLM
) -> None:
    """``token_budget`` follows lineage: the helper spends from its creator's budget."""
    org, boss, kid = unique_org("llm"), "boss-d", "kid-d"
    # 18 tokens a call. boss: 3 calls (54 of 60); kid's first call finds 54 and goes
    # (72); its second finds 72 spent, so kid stops, and boss stops at its next record.
    scripted_llm.script(
        boss,
        [
            _call(
                "create_agent",
                name=kid,
                kind="llm",
                instructions="Answer each subtask.",
                subscribes=["subtasks"],
                publishes=["results"],
                token_budget=1000,  # its own, larger budget lifts none of boss's
            ),
            _call("publish", topic="subtasks", type="subtask", payload={"text": "x y"}),
            ScriptedReply(content="Delegated."),
            ScriptedReply(content="never reached"),
        ],
    )
    scripted_llm.script(
        kid,
        [
            _call("publish", topic="results", type="subtask.done", payload={"ok": True}),
            ScriptedReply(content="never reached"),
        ],
    )
    spec = _spec(org, boss)
    spec["agents"][0]["token_budget"] = 60
    await platform.start_org(spec)
    await platform.send(org, "tasks", [task(org, 1)])

    done = await platform.collect(org, "results", 1, timeout=120)
    assert [c.record.source for c in done] == [f"agent:{kid}"]
    dead = raw_messages(platform.settings, f"{org}.sys.dlq", 1, timeout=90)
    headers = {k: (v or b"").decode() for k, v in dead[0].headers() or []}
    assert headers["dlq.agent"] == kid and headers["dlq.reason"] == "agent-step-failed"
    why = f"{boss} and the agents it spawned ({kid}) used 72 of {boss}'s 60-token LLM budget"
    assert why in headers["dlq.error"], headers["dlq.error"]
    assert f"agents[{boss}].token_budget" in headers["dlq.error"]

    # boss's next record finds the lineage spent before any model call.
    second = task(org, 2)
    await platform.send(org, "tasks", [second])
    dead = raw_messages(platform.settings, f"{org}.sys.dlq", 2, timeout=90)
    assert json.loads(dead[1].value())["id"] == second.id
    assert dict(dead[1].headers() or [])["dlq.agent"] == boss.encode()
    assert len(scripted_llm.requests_for(boss)) == 3
    assert len(scripted_llm.requests_for(kid)) == 1
    for agent in (boss, kid):
        for _ in range(50):  # the DLQ comes first, then the status
            status = await _agent_status(platform, org, agent)
            if status.failed_reason:
                break
            await asyncio.sleep(0.2)
        assert status.failed_reason and why in status.failed_reason

    # Each stop is announced on the audit topic, with its reason.
    audit = await platform.collect(
        org,
        "sys.audit",
        1,
        timeout=30,
        until=lambda got: len([c for c in got if c.record.type == "agent.failed"]) >= 2,
    )
    failed = {c.record.payload["agent"]: c.record for c in audit if c.record.type == "agent.failed"}
    assert set(failed) == {boss, kid}
    assert all(why in str(r.payload["reason"]) for r in failed.values())
    shown = run_cli("agent", "list", org, "--json")
    assert shown.returncode == 0, shown.stderr
    rows = {r["name"]: r for r in json.loads(shown.stdout)}
    assert rows[boss]["status"] == rows[kid]["status"] == "failed"


def _org_ids(org: str) -> Any:
    return select(Org.id).where(Org.name == org)


def test_llm_agents_refuse_to_start_without_an_endpoint(stack: Any, tmp_path: Any) -> None:
    """Offline default: a clear refusal before anything is created, naming the agents."""
    org = unique_org("llm")
    spec_file = tmp_path / "org.json"
    spec_file.write_text(json.dumps(_spec(org, "thinker")))
    offline = {"KAFKAORG_LLM_BASE_URL": ""}
    for args in (("org", "start", str(spec_file)), ("org", "apply", str(spec_file))):
        result = run_cli(*args, env=offline)
        assert_one_clear_line(result, 2, "thinker", "KAFKAORG_LLM_BASE_URL")
    agent_file = tmp_path / "agent.json"
    agent_file.write_text(json.dumps(_spec(org, "thinker")["agents"][0]))
    result = run_cli("agent", "create", org, str(agent_file), env=offline)
    assert_one_clear_line(result, 2, "thinker", "KAFKAORG_LLM_BASE_URL")
    assert run_cli("org", "list", "--json").stdout.count(org) == 0


async def test_the_conversation_survives_continue_as_new_and_the_history_replays(
    platform: Platform, scripted_llm: ScriptedLLM
) -> None:
    org, thinker = unique_org("llm"), "thinker-d"
    scripted_llm.script(
        thinker, [ScriptedReply(content="noted one"), ScriptedReply(content="noted two")]
    )
    await platform.start_org(_spec(org, thinker))
    # Restarted with the test hook: continue-as-new after every record.
    await platform.restart_agent(org, thinker, continue_as_new_after_steps=1)
    first, second = task(org, 1), task(org, 2)
    await platform.send(org, "tasks", [first])
    await _requests(scripted_llm, thinker, 1, timeout=60)
    await platform.send(org, "tasks", [second])
    requests = await _requests(scripted_llm, thinker, 2, timeout=60)

    seen = [m.get("content") or "" for m in requests[1]["messages"]]
    assert any(first.id in text for text in seen), "the first record is still in the chat"
    assert "noted one" in seen
    assert second.id in seen[-1]
    status = await platform.agent_status(org, thinker, until=lambda s: s.processed == 2)
    assert status.runs >= 3, "continued as new after each record"
    assert status.conversation_messages == 4

    result = run_cli("workflow", "replay", agent_workflow_id(org, thinker))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failed" in result.stdout


async def test_turns_the_conversation_outgrows_are_archived_and_recalled(
    platform: Platform, scripted_llm: ScriptedLLM
) -> None:
    org, thinker = unique_org("llm"), "thinker-e"
    first, second, third = task(org, 1), task(org, 2), task(org, 3)
    scripted_llm.script(
        thinker,
        [
            ScriptedReply(content="noted one"),
            ScriptedReply(content="noted two"),
            _call("recall_conversation", query=first.id),
            ScriptedReply(content="recalled"),
        ],
    )
    await platform.start_org(_spec(org, thinker))
    wf_id = agent_workflow_id(org, thinker)
    # Restarted with test hooks: only the latest turn stays in the workflow's state, and
    # it continues-as-new after every record (the archive must span runs of one chain).
    started = await platform.restart_agent(
        org, thinker, continue_as_new_after_steps=1, conversation_max_chars=1
    )
    for n, record in enumerate((first, second, third), start=1):
        await platform.send(org, "tasks", [record])
        await _requests(scripted_llm, thinker, n, timeout=60)
    requests = await _requests(scripted_llm, thinker, 4, timeout=60)

    on_third = [m.get("content") or "" for m in requests[2]["messages"]]
    assert not any(first.id in text for text in on_third), "the first turn left the state"
    assert any("1 earlier record(s)" in t and "recall_conversation" in t for t in on_third)
    assert any(second.id in text for text in on_third), "the latest turn is still there"
    recalled = _last_tool_result(requests[3]["messages"])
    assert recalled["ok"] is True, recalled
    assert [t["turn"] for t in recalled["turns"]] == [1]
    assert first.id in recalled["turns"][0]["text"]
    assert "assistant: noted one" in recalled["turns"][0]["text"]

    status = await platform.agent_status(org, thinker, until=lambda s: s.processed == 3)
    assert status.processed == 3 and status.runs >= 4
    # Only the third record's turn is in the state; the first two are in PostgreSQL, once,
    # under the chain's first run id.
    assert status.conversation_messages == 4
    sessions = db_sessions(platform.settings)
    with sessions() as session:
        rows = session.execute(
            select(ConversationTurn.turn, ConversationTurn.chain_id, ConversationTurn.messages)
            .join(Org)
            .where(Org.name == org, ConversationTurn.agent == thinker)
            .order_by(ConversationTurn.turn)
        ).all()
    assert [(turn, chain) for turn, chain, _ in rows] == [
        (1, started.first_execution_run_id),
        (2, started.first_execution_run_id),
    ]
    assert first.id in rows[0].messages[0]["content"]
    assert second.id in rows[1].messages[0]["content"]
    # A retried archive writes nothing twice.
    again = ConversationActivities(sessions).archive_turns(
        ArchiveInput(
            org=org,
            agent=thinker,
            workflow_id=wf_id,
            chain_id=rows[0].chain_id,
            first_turn=1,
            turns=[rows[0].messages, rows[1].messages],
        )
    )
    assert again == 0
    sessions.kw["bind"].dispose()
    shown = run_cli("agent", "conversation", org, thinker, "--json")
    assert shown.returncode == 0, shown.stderr
    assert [t["turn"] for t in json.loads(shown.stdout)] == [1, 2]
    found = run_cli("agent", "conversation", org, thinker, "--query", second.id, "--json")
    assert [t["turn"] for t in json.loads(found.stdout)] == [2]

    result = run_cli("workflow", "replay", wf_id)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failed" in result.stdout
