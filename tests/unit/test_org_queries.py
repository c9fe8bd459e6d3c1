"""The pure parts of ``kafkaorg.org_queries``: filters, summaries and the JSON shapes.

The CLI prints these models with ``--json`` and the integration tests parse that output,
so the keys and their order are part of the contract, checked here without a database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kafkaorg.llm.usage import TokenUsage
from kafkaorg.org_queries import (
    AgentRow,
    ConversationTurnRow,
    OrgUsage,
    ToolVersionRow,
    TopicRow,
    matching_turns,
    summarize_tools,
)

WHEN = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _agent(**kw: Any) -> AgentRow:
    fields: dict[str, Any] = {
        "name": "triage",
        "kind": "rule",
        "status": "running",
        "version": 1,
        "created_by": "spec",
        "subscribes": ["tasks"],
        "publishes": ["scored"],
    }
    return AgentRow(**{**fields, **kw})


def _version(tool: str, version: int, **kw: Any) -> ToolVersionRow:
    fields: dict[str, Any] = {
        "tool": tool,
        "version": version,
        "status": "active",
        "current": False,
        "description": f"{tool} v{version}",
        "author": "user:test",
        "created_at": WHEN,
        "code": "def run(args): return args",
        "tests": "",
    }
    return ToolVersionRow(**{**fields, **kw})


def test_agent_filters_by_kind_topic_and_name_substring() -> None:
    agent = _agent()
    assert agent.matches()
    assert agent.matches(kind="rule", topic="scored", name="ria")
    assert not agent.matches(kind="llm")
    assert not agent.matches(topic="results")
    assert not agent.matches(name="scorer")


def test_agent_row_dumps_the_keys_agent_list_prints() -> None:
    assert list(_agent().model_dump()) == [
        "name",
        "kind",
        "status",
        "version",
        "created_by",
        "parent_agent",
        "subscribes",
        "publishes",
        "can_create_agents",
        "status_reason",
    ]


def test_topic_row_dumps_its_class_as_class() -> None:
    row = TopicRow(
        name="tasks", kafka_topic="demo.tasks", topic_class="work", partitions=3, configs={}
    )
    assert row.model_dump(by_alias=True) == {
        "name": "tasks",
        "kafka_topic": "demo.tasks",
        "class": "work",
        "partitions": 3,
        "configs": {},
    }


def test_turns_match_their_text_ignoring_case() -> None:
    turns = [
        ConversationTurnRow(turn=1, archived_at=WHEN, text="user: Rotate the certificates"),
        ConversationTurnRow(turn=2, archived_at=WHEN, text="user: tidy the backlog"),
    ]
    assert [t.turn for t in matching_turns(turns, "")] == [1, 2]
    assert [t.turn for t in matching_turns(turns, "ROTATE")] == [1]
    assert matching_turns(turns, "nothing like it") == []


def test_usage_dumps_tokens_by_agent_total_and_budget() -> None:
    usage = OrgUsage(
        org="demo",
        agents={"planner": TokenUsage(prompt_tokens=3, completion_tokens=1, total_tokens=4)},
        total_tokens=4,
    )
    assert usage.model_dump() == {
        "org": "demo",
        "agents": {"planner": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}},
        "total_tokens": 4,
        "budget": None,
    }


def test_a_tool_summary_has_the_current_version_and_the_latest_status() -> None:
    failed = {"passed": False, "tests": 2, "reason": "tests.py line 6: AssertionError"}
    versions = [
        _version("calc", 3, status="failed", test_result=failed),
        _version("calc", 2, current=True, test_result={"passed": True, "tests": 2}),
        _version("calc", 1),
        _version("echo", 1, status="testing"),
    ]
    assert [s.model_dump() for s in summarize_tools(versions)] == [
        {
            "tool": "calc",
            "current_version": 2,
            "latest_version": 3,
            "latest_status": "failed",
            "description": "calc v3",
            "reason": "tests.py line 6: AssertionError",
        },
        {
            "tool": "echo",
            "current_version": None,
            "latest_version": 1,
            "latest_status": "testing",
            "description": "echo v1",
            "reason": None,
        },
    ]
    assert versions[0].tests_run == 2 and versions[2].tests_run == 0
    assert versions[1].reason == ""
