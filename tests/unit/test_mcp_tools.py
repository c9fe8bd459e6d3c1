"""MCP tools of llm agents, the pure parts: spec checks, names the model sees, allow-lists,
result bounds, the plan's diff and a spawned agent's rights."""

from __future__ import annotations

import re
from typing import Any

import pytest

from kafkaorg import org_rules
from kafkaorg.contracts import AgentStatus, CreateAgentRequest, OrgState, RefusalType
from kafkaorg.llm.prompts import system_prompt, tool_schemas
from kafkaorg.mcp_tools import (
    MAX_FUNCTION_NAME,
    McpCatalog,
    McpTool,
    allowed_servers,
    allows,
    bounded_text,
    exceeding_entries,
    function_name,
)
from kafkaorg.org_rules import OrgView
from kafkaorg.reconcile import diff_specs
from kafkaorg.spec import AgentSpec, OrgSpec, SpecError, validate_spec

OPENAI_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _spec(**extra: Any) -> dict[str, Any]:
    agent = {
        "name": "helper",
        "kind": "llm",
        "instructions": "Look things up.",
        "subscribes": ["tasks"],
        "publishes": ["results"],
        "mcp": ["docs"],
    }
    agent.update(extra.pop("agent", {}))
    return {
        "org": "acme",
        "topics": [{"name": "tasks"}, {"name": "results"}],
        "mcp_servers": [{"name": "docs", "url": "http://127.0.0.1:8931/mcp"}],
        "agents": [agent],
        **extra,
    }


def _problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as caught:
        validate_spec(data)
    return caught.value.problems


def test_a_spec_with_mcp_servers_and_an_agent_allowed_one_loads() -> None:
    spec = validate_spec(_spec(agent={"mcp": ["docs", "docs.search"]}))
    server = spec.mcp_server("docs")
    assert server is not None and server.url == "http://127.0.0.1:8931/mcp"
    assert server.timeout_s == 30 and server.max_attempts == 3
    assert spec.agents[0].mcp == ["docs", "docs.search"]


def test_an_unknown_server_is_refused_naming_the_agent_and_the_server() -> None:
    problems = _problems(_spec(agent={"mcp": ["docs", "wiki.search"]}))
    assert problems == [
        "agents.0.mcp.1: agent 'helper' names unknown MCP server 'wiki' "
        "(declared in mcp_servers: docs)"
    ]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"agent": {"kind": "echo", "instructions": ""}}, "only llm agents use MCP tools"),
        ({"agent": {"mcp": ["docs."]}}, "names no tool after the '.'"),
        (
            {"mcp_servers": [{"name": "docs", "url": "http://a/mcp"}] * 2},
            "duplicate MCP server 'docs'",
        ),
        ({"mcp_servers": [{"name": "docs"}]}, "exactly one of 'url'"),
        ({"mcp_servers": [{"name": "docs", "url": "ftp://x/mcp"}]}, "http:// or https://"),
        ({"mcp_servers": [{"name": "Docs_1", "url": "http://a/mcp"}]}, "must match"),
        ({"mcp_servers": [{"name": "docs", "command": []}]}, "non-empty list"),
        (
            {"mcp_servers": [{"name": "docs", "command": ["srv"], "mounts": ["opt/srv"]}]},
            "mount 'opt/srv' must be an absolute, normalized path",
        ),
        (
            {"mcp_servers": [{"name": "docs", "command": ["srv"], "mounts": ["/opt/../etc"]}]},
            "absolute, normalized",
        ),
        (
            {"mcp_servers": [{"name": "docs", "command": ["srv"], "mounts": ["/proc/1"]}]},
            "mount '/proc/1': cannot be mounted",
        ),
        (
            {"mcp_servers": [{"name": "docs", "command": ["srv"], "env": {"A-B": "x"}}]},
            "env name 'A-B'",
        ),
        (
            {"mcp_servers": [{"name": "docs", "url": "http://a/mcp", "mounts": ["/opt"]}]},
            "apply to stdio servers",
        ),
        (
            {"mcp_servers": [{"name": "docs", "command": ["srv"], "headers": {"a": "b"}}]},
            "apply to streamable-HTTP servers",
        ),
        (
            {"mcp_servers": [{"name": "docs", "command": ["srv"], "sandbox": {"memory_mb": 1}}]},
            "mcp_servers.0.sandbox.memory_mb",
        ),
    ],
)
def test_bad_mcp_declarations_are_refused_with_their_place(
    change: dict[str, Any], needle: str
) -> None:
    problems = _problems(_spec(**change))
    assert any(needle in p for p in problems), problems


def test_a_stdio_server_is_declared_with_its_command_mounts_env_and_limits() -> None:
    server = {
        "name": "notes",
        "command": ["python3", "/opt/notes/server.py"],
        "mounts": ["/opt/notes", "/tmp/libs"],
        "env": {"PYTHONPATH": "/tmp/libs", "TOKEN": "${NOTES_TOKEN}"},
        "sandbox": {"memory_mb": 256, "cpu_time_s": 2},
    }
    spec = validate_spec(_spec(mcp_servers=[server], agent={"mcp": ["notes"]}))
    [notes] = spec.mcp_servers
    assert notes.transport == "stdio" and notes.url is None
    assert notes.sandbox is not None and notes.sandbox.memory_mb == 256


def test_a_stdio_servers_jail_is_the_workers_policy_tightened_never_loosened() -> None:
    from activities.mcp_sessions import jail_policy
    from kafkaorg.sandbox import SandboxPolicy
    from kafkaorg.spec import McpServerSpec

    worker = SandboxPolicy(memory_mb=512, cpu_time_s=5, processes=32)
    server = McpServerSpec.model_validate(
        {
            "name": "notes",
            "command": ["srv"],
            "timeout_s": 12,
            "sandbox": {"memory_mb": 4096, "cpu_time_s": 2},
        }
    )
    jail = jail_policy(server, worker)
    assert jail.memory_mb == 512, "asking for more than the worker allows gets the worker's"
    assert jail.cpu_time_s == 2, "asking for less gets less"
    assert jail.processes == 32
    assert jail.wall_time_s == 12, "a jail lives as long as one call may"


def test_function_names_are_valid_openai_names_and_unique() -> None:
    assert function_name("docs", "search") == "mcp__docs__search"
    odd = function_name("docs", "files.read/v2")
    assert OPENAI_NAME.match(odd) and odd.startswith("mcp__docs__files_read_v2_")
    # Two tools that sanitize alike still get different names.
    assert function_name("docs", "a.b") != function_name("docs", "a_b")
    long = function_name("docs", "x" * 200)
    assert OPENAI_NAME.match(long) and len(long) == MAX_FUNCTION_NAME
    assert long != function_name("docs", "x" * 199)
    assert function_name("docs", "x" * 200) == long, "deterministic"


def test_allow_lists_whole_servers_or_single_tools() -> None:
    entries = ["docs.search", "calc", "docs.fetch"]
    assert allowed_servers(entries) == {"docs": {"search", "fetch"}, "calc": None}
    assert allows(entries, "calc", "anything")
    assert allows(entries, "docs", "search") and not allows(entries, "docs", "delete")
    assert not allows(entries, "wiki", "search")
    assert allowed_servers(["docs", "docs.search"]) == {"docs": None}


def test_a_child_may_not_get_mcp_tools_its_parent_lacks() -> None:
    assert exceeding_entries(["docs.search"], ["docs"]) == []
    assert exceeding_entries(["docs.search"], ["docs.search"]) == []
    assert exceeding_entries(["docs", "calc"], ["docs.search"]) == ["docs", "calc"]
    spec = OrgSpec.model_validate(_spec(agent={"can_create_agents": True, "mcp": ["docs.search"]}))
    view = OrgView(spec, OrgState(statuses={"helper": AgentStatus.RUNNING}))
    kid = AgentSpec.model_validate(
        {"name": "kid", "kind": "llm", "instructions": "x", "mcp": ["docs"]}
    )
    problems = org_rules.create_agent_problems(
        view, CreateAgentRequest(agent=kid, requested_by="agent:helper"), 0.0
    )
    assert [p.type for p in problems] == [RefusalType.NOT_PERMITTED]
    assert "mcp: 'docs' is not granted to the parent" in str(problems[0])
    unknown = kid.model_copy(update={"mcp": ["wiki"]})
    problems = org_rules.create_agent_problems(
        view, CreateAgentRequest(agent=unknown, requested_by="user:ann"), 0.0
    )
    assert any("unknown MCP server 'wiki'" in str(p) for p in problems)


def test_results_are_bounded_in_utf8_bytes_with_a_marker() -> None:
    assert bounded_text("short", 100) == ("short", False)
    text, cut = bounded_text("é" * 100, 51)
    assert cut and text.startswith("é" * 25)
    assert "[truncated: 50 of 200 bytes shown]" in text


def test_the_plan_shows_mcp_servers_added_changed_and_dropped() -> None:
    before = validate_spec(_spec())
    after_data = _spec()
    after_data["mcp_servers"] = [
        {"name": "docs", "url": "http://127.0.0.1:9000/mcp"},
        {"name": "calc", "url": "http://127.0.0.1:9001/mcp"},
    ]
    diff = diff_specs(before, validate_spec(after_data))
    assert "~ mcp server docs" in diff.summary_lines()
    assert "+ mcp server calc" in diff.summary_lines()
    assert not diff.is_empty
    dropped = _spec(agent={"mcp": []})
    dropped["mcp_servers"] = []
    assert "- mcp server docs" in diff_specs(before, validate_spec(dropped)).summary_lines()
    assert diff_specs(before, validate_spec(_spec())).is_empty


def test_the_model_is_offered_the_catalog_after_the_builtins() -> None:
    agent = AgentSpec.model_validate(_spec()["agents"][0])
    catalog = McpCatalog(
        tools=[
            McpTool(
                name="mcp__docs__lookup",
                server="docs",
                tool="lookup",
                description="Look a key up.",
                input_schema={"type": "object", "properties": {"key": {"type": "string"}}},
            )
        ]
    )
    names = [t["function"]["name"] for t in tool_schemas(agent, catalog)]
    assert names[0] == "publish" and names[-1] == "mcp__docs__lookup"
    offered = tool_schemas(agent, catalog)[-1]["function"]
    assert offered["parameters"]["properties"] == {"key": {"type": "string"}}
    assert "Look a key up." in offered["description"]
    assert "mcp__<server>__<tool>" in system_prompt("acme", agent, catalog)
    assert "mcp__" not in str(tool_schemas(agent))


def test_header_values_are_read_from_the_worker_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from temporalio.exceptions import ApplicationError

    from activities.mcp_sessions import expanded
    from kafkaorg.spec import McpServerSpec

    server = McpServerSpec(
        name="docs", url="http://a/mcp", headers={"Authorization": "Bearer ${DOCS_TOKEN}"}
    )
    monkeypatch.setenv("DOCS_TOKEN", "s3cret")
    assert expanded(server, server.headers, "a header") == {"Authorization": "Bearer s3cret"}
    monkeypatch.delenv("DOCS_TOKEN")
    with pytest.raises(ApplicationError) as caught:
        expanded(server, server.headers, "a header")
    assert caught.value.non_retryable and "${DOCS_TOKEN}" in str(caught.value)


def test_result_blocks_become_text_for_the_model() -> None:
    from mcp import types

    from activities.mcp_client import content_text

    result = types.CallToolResult(
        content=[
            types.TextContent(type="text", text="hello"),
            types.ImageContent(type="image", data="aGk=", mimeType="image/png"),
            types.EmbeddedResource(
                type="resource",
                resource=types.TextResourceContents(uri="file:///a.txt", text="inside"),
            ),
        ]
    )
    assert content_text(result) == "hello\n[image image/png, 4 base64 chars]\ninside"
    structured = types.CallToolResult(content=[], structuredContent={"n": 1})
    assert content_text(structured) == '{"n": 1}'
