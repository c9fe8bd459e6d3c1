"""What an ``llm`` agent is told: its system prompt and the built-in tools it may call.

Pure functions of the agent's spec, so the workflow (which decides which tools a
call may use) and the model activity (which sends them) always agree.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from pydantic import BaseModel

from kafkaorg.envelope import Record
from kafkaorg.llm.conversation import RECALL_TOOL
from kafkaorg.mcp_tools import McpCatalog
from kafkaorg.spec import AgentSpec

BUILTIN_TOOLS: dict[str, dict[str, Any]] = {
    "publish": {
        "description": "Publish a record to one of your topics. Its causation id is the record "
        "you are answering, its correlation id is that record's.",
        "parameters": {
            "type": "object",
            "properties": {
                "topic": {"type": "string", "description": "one of the topics you publish to"},
                "type": {"type": "string", "description": "record type, e.g. task.done"},
                "payload": {"type": "object", "description": "the record's JSON payload"},
            },
            "required": ["topic", "type", "payload"],
        },
    },
    "run_code": {
        "description": "Run Python 3 code in the nsjail sandbox (no network, short limits). "
        "Returns exit status, stdout, stderr and any limit hit.",
        "parameters": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "stdin": {"type": "string", "description": "standard input (optional)"},
            },
            "required": ["code"],
        },
    },
    "create_tool": {
        "description": "Register a Python tool for the whole org. `code` defines "
        "`def run(args: dict) -> dict`; `tests` are plain asserts calling run(...). The tests "
        "run in the sandbox and only a version that passes is registered.",
        "parameters": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "lowercase, e.g. word_count"},
                "description": {"type": "string"},
                "code": {"type": "string"},
                "tests": {"type": "string"},
                "args_schema": {"type": "object", "description": "JSON schema of args"},
            },
            "required": ["name", "description", "code", "tests"],
        },
    },
    "call_tool": {
        "description": "Call a registered tool of the org (its current version) in the "
        "sandbox with JSON args; returns the tool's JSON result.",
        "parameters": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "args": {"type": "object"},
            },
            "required": ["name", "args"],
        },
    },
    "find_tools": {
        "description": "List the org's registered tools (name, description, current version), "
        "optionally only those whose name or description contains `query`.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}},
        },
    },
    "find_agents": {
        "description": "List the org's agents (name, kind, status, topics), optionally only "
        "those whose name or instructions contain `query`.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}},
        },
    },
    "find_schemas": {
        "description": "The JSON Schemas of the org's record types (latest versions): those "
        "named in `types`, or those `topic` declares, or all. A record you publish must follow "
        "its type's schema, or it is refused.",
        "parameters": {
            "type": "object",
            "properties": {
                "types": {"type": "array", "items": {"type": "string"}},
                "topic": {"type": "string"},
            },
        },
    },
    "recall_conversation": {
        "description": "Read earlier turns of your conversation that were archived to keep it "
        "short: those containing `query`, or turn number `turn`, newest first.",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "text the turn contains"},
                "turn": {"type": "integer", "description": "one turn by number (1 = oldest)"},
                "limit": {"type": "integer", "description": "at most this many (default 3)"},
            },
        },
    },
    "start_flow": {
        "description": "Start a run of one of the org's flows (a durable multi-agent "
        "workflow) with `input` as its input. Starting the same flow again for the record you "
        "are answering gives the same run, not a second one.",
        "parameters": {
            "type": "object",
            "properties": {
                "flow": {"type": "string", "description": "the flow's name"},
                "input": {"type": "object", "description": "the run's input (JSON object)"},
            },
            "required": ["flow"],
        },
    },
    "create_agent": {
        "description": "Ask the org for a new agent. kind is echo, rule, tool (runs `tool` on "
        "each record) or llm (follows `instructions`). It gets at most your own rights.",
        "parameters": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "kind": {"type": "string", "enum": ["echo", "rule", "tool", "llm"]},
                "instructions": {"type": "string"},
                "subscribes": {"type": "array", "items": {"type": "string"}},
                "publishes": {"type": "array", "items": {"type": "string"}},
                "tool": {"type": "string"},
                "emit": {"type": "string"},
                "rules": {"type": "array", "items": {"type": "object"}},
                "token_budget": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "tokens it and the agents it creates may spend (your "
                    "own budget, if you have one, covers them too)",
                },
            },
            "required": ["name", "kind"],
        },
    },
}


def allowed_tools(agent: AgentSpec) -> list[str]:
    """The built-in tools this agent's rights allow, in a stable order."""
    names = [
        "publish",
        "run_code",
        "call_tool",
        "find_tools",
        "find_agents",
        "find_schemas",
        RECALL_TOOL,
    ]
    if agent.can_create_tools:
        names.append("create_tool")
    if agent.can_create_agents:
        names.append("create_agent")
    if agent.can_start_flows:
        names.append("start_flow")
    return names


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "object": (dict,),
    "array": (list,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def argument_problems(tool: str, args: dict[str, Any]) -> list[str]:
    """What is wrong with a call's arguments against the tool's declared schema (none: []).

    The schema the model was shown is the one it is held to: required fields, the JSON
    type of each declared field and its ``enum``. Deeper checks stay with each tool.
    """
    schema = BUILTIN_TOOLS[tool]["parameters"]
    properties: dict[str, dict[str, Any]] = schema.get("properties", {})
    problems = [f"{name}: required" for name in schema.get("required", []) if name not in args]
    for name, value in args.items():
        declared = properties.get(name)
        if declared is None:
            continue  # extra fields are ignored, as the tools ignore them
        kind = declared.get("type")
        allowed = _JSON_TYPES.get(kind or "", (object,))
        if (isinstance(value, bool) and kind != "boolean") or not isinstance(value, allowed):
            problems.append(f"{name}: expected {kind}, got {_json_type(value)}")
        elif "enum" in declared and value not in declared["enum"]:
            problems.append(f"{name}: must be one of {', '.join(map(str, declared['enum']))}")
    return problems


def _json_type(value: Any) -> str:
    for name, types in _JSON_TYPES.items():
        if isinstance(value, types) and not (isinstance(value, bool) and name != "boolean"):
            return name
    return "null" if value is None else type(value).__name__


def tool_schemas(agent: AgentSpec, mcp: McpCatalog | None = None) -> list[dict[str, Any]]:
    """OpenAI function-tool definitions for ``allowed_tools(agent)``, then its MCP tools;
    ``publish``'s topic is an enum of the agent's own topics, so an endpoint that
    constrains tool calls by their schema (llama.cpp's grammars) cannot name another."""
    functions: list[dict[str, Any]] = [
        {"name": name, **copy.deepcopy(BUILTIN_TOOLS[name])} for name in allowed_tools(agent)
    ]
    for function in functions:
        if function["name"] == "publish" and agent.publishes:
            function["parameters"]["properties"]["topic"]["enum"] = list(agent.publishes)
    builtin = [{"type": "function", "function": f} for f in functions]
    return builtin + (mcp.schemas() if mcp else [])


def first_call_tool_choice(agent: AgentSpec, messages: list[dict[str, Any]]) -> str | None:
    """The ``tool_choice`` of this call: the agent's ``first_tool_choice`` for the first
    call on a record (the newest message hands it the record), else left out.

    ``auto`` is sent on the first call, not left out: OpenAI reads a missing
    ``tool_choice`` as ``auto``, but llama-cpp-python's ``chatml-function-calling`` (the
    local model) reads it as ``none`` and shows the model no tools, so an ``auto`` agent
    there could never call one. The later calls leave it out: the model's choice on
    OpenAI; on llama-cpp-python a prose answer, which ends the record's turn (an ``auto``
    there costs the small model several constrained passes per call)."""
    if not messages or messages[-1].get("role") != "user":
        return None
    return agent.first_tool_choice


_TEXT_REPLY_LINES = {
    "publish": "a plain-text reply to a record you published nothing for is published as "
    "your answer.",
    "drop": "your text replies are not published.",
    "dlq": "a plain-text reply to a record you published nothing for sends that record to "
    "the dead-letter queue.",
}
"""What the model is told becomes of its prose (the agent's ``on_text_reply``)."""


PROMPT_SCHEMA_CHARS = 1500
"""Each schema in the prompt is cut to this; ``find_schemas`` gives it whole."""
PROMPT_SCHEMAS = 8


class PromptSchema(BaseModel):
    """A record type's latest schema, as the prompt shows it."""

    record_type: str
    version: int
    json_schema: dict[str, Any]


def system_prompt(
    org: str,
    agent: AgentSpec,
    mcp: McpCatalog | None = None,
    schemas: list[PromptSchema] | None = None,
) -> str:
    """The first line names the agent: logs, and the test server, tell agents apart by it.

    ``schemas``: those of the types the agent reads and writes, so its records fit them.
    """
    topics = ", ".join(agent.publishes) or "none"
    lines = [
        f"You are agent {agent.name} of org {org}.",
        "You work on records from a Kafka event log, one at a time. Act through your tools; "
        + _TEXT_REPLY_LINES[agent.on_text_reply],
        f"You may publish to these topics: {topics}.",
        "When you need a capability you lack, write a tool with tests (create_tool) if you "
        "may, then call it (call_tool). When you are done with a record, reply with a short "
        "summary and no tool calls.",
    ]
    if mcp and mcp.tools:
        servers = ", ".join(sorted({t.server for t in mcp.tools}))
        lines.append(
            f"You also have the tools of MCP server(s) {servers}, named mcp__<server>__<tool>; "
            "their results come back as tool messages."
        )
    if schemas:
        lines += ["", "Record schemas (JSON Schema) of the types you read and write:"]
        for schema in schemas[:PROMPT_SCHEMAS]:
            text = json.dumps(schema.json_schema, sort_keys=True)
            if len(text) > PROMPT_SCHEMA_CHARS:
                text = text[:PROMPT_SCHEMA_CHARS] + " … (cut; find_schemas gives it whole)"
            lines.append(f"- {schema.record_type} v{schema.version}: {text}")
        if len(schemas) > PROMPT_SCHEMAS:
            lines.append(f"(and {len(schemas) - PROMPT_SCHEMAS} more: call find_schemas)")
    if agent.instructions:
        lines += ["", "Your instructions:", agent.instructions]
    return "\n".join(lines)


def record_message(topic_hint: str | None, record: Record) -> dict[str, Any]:
    """The user turn that hands the agent one record."""
    body: dict[str, Any] = {
        "id": record.id,
        "type": record.type,
        "source": record.source,
        "correlation_id": record.correlation_id,
        "payload": record.payload,
    }
    if record.payload_ref is not None:  # not shown: the model is told so, not handed {}
        body["payload"] = None
        body["payload_stored_by_reference"] = {"bytes": record.payload_ref.size}
    where = f" from {topic_hint}" if topic_hint else ""
    return {"role": "user", "content": f"New record{where}:\n{json.dumps(body, sort_keys=True)}"}
