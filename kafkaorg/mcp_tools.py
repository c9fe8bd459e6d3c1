"""MCP tools of ``llm`` agents: what crosses the activity boundary, and the pure rules.

Pure (no I/O), so the AgentWorkflow, the model activity and the MCP activities agree
on which tools an agent has and what each is called. An agent's ``mcp`` entries allow
a whole server (``docs``) or one of its tools (``docs.search``); the model sees each
tool as ``mcp__<server>__<tool>``, made a valid OpenAI function name (letters, digits,
``_``, ``-``, at most 64 characters) and unique within the agent's tools.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, Field

from kafkaorg.spec import McpServerSpec

TOOL_PREFIX: Final = "mcp__"
MAX_FUNCTION_NAME: Final = 64
"""OpenAI's limit on a function name (``^[a-zA-Z0-9_-]{1,64}$``)."""
MAX_RESULT_BYTES: Final = 16 * 1024
"""What one MCP call hands back to the model (UTF-8); the rest is cut, with a marker."""
MAX_DESCRIPTION_CHARS: Final = 1024
DISCOVER_ACTIVITY: Final = "discover_mcp_tools"
LIST_JAILED_ACTIVITY: Final = "list_jailed_mcp_tools"
CALL_ACTIVITY: Final = "call_mcp_tool"
"""Activity names: workflows call them by name and never import the SDK. A stdio
server's listing and calls run on the sandbox worker (``SANDBOX_TASK_QUEUE``), which
starts it in nsjail; the rest on the worker."""
_INVALID_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def function_name(server: str, tool: str) -> str:
    """The model-facing name of ``tool`` on ``server``: ``mcp__<server>__<tool>``.

    Characters OpenAI refuses become ``_``; a name that was changed that way or is too
    long gets a short digest of the original, so two tools never share a name.
    """
    plain = f"{TOOL_PREFIX}{server}__{tool}"
    name = _INVALID_CHARS.sub("_", plain)
    if name == plain and len(name) <= MAX_FUNCTION_NAME:
        return name
    digest = hashlib.sha256(f"{server}\0{tool}".encode()).hexdigest()[:8]
    return f"{name[: MAX_FUNCTION_NAME - len(digest) - 1]}_{digest}"


def allowed_servers(entries: list[str]) -> dict[str, set[str] | None]:
    """An agent's ``mcp`` entries per server: the tools it may call (``None``: all)."""
    allowed: dict[str, set[str] | None] = {}
    for entry in entries:
        server, _, tool = entry.partition(".")
        if not tool:
            allowed[server] = None
        elif server not in allowed or allowed[server] is not None:
            names = allowed.get(server) or set()
            allowed[server] = names | {tool}
    return allowed


def allows(entries: list[str], server: str, tool: str) -> bool:
    """Whether an agent with these ``mcp`` entries may call ``tool`` on ``server``."""
    allowed = allowed_servers(entries)
    if server not in allowed:
        return False
    tools = allowed[server]
    return tools is None or tool in tools


def exceeding_entries(child: list[str], parent: list[str]) -> list[str]:
    """The child's ``mcp`` entries that allow more than the parent's (a spawned agent
    never gets more rights than its parent)."""
    granted = allowed_servers(parent)
    beyond = []
    for entry in child:
        server, _, tool = entry.partition(".")
        tools = granted.get(server, set())
        if server not in granted or (tools is not None and (not tool or tool not in tools)):
            beyond.append(entry)
    return beyond


def bounded_text(text: str, limit: int = MAX_RESULT_BYTES) -> tuple[str, bool]:
    """``text`` cut to ``limit`` UTF-8 bytes, with a marker saying how much was kept."""
    data = text.encode()
    if len(data) <= limit:
        return text, False
    kept = data[:limit].decode(errors="ignore")
    return f"{kept}\n…[truncated: {len(kept.encode())} of {len(data)} bytes shown]", True


class ListedTool(BaseModel):
    """A tool as a server's ``tools/list`` described it (the SDK's type, minus the SDK)."""

    name: str
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=dict)


def catalog_tools(
    server: str, listed: list[ListedTool], only: set[str] | None, taken: set[str]
) -> tuple[list[McpTool], list[str]]:
    """The tools of ``server`` an agent gets (``only``: its allowed ones, ``None``: all),
    named ``function_name`` and never over a name in ``taken`` (which grows); and the
    tools skipped because their name was taken."""
    tools: list[McpTool] = []
    clashes: list[str] = []
    for tool in listed:
        if only is not None and tool.name not in only:
            continue
        name = function_name(server, tool.name)
        if name in taken:
            clashes.append(tool.name)
            continue
        taken.add(name)
        tools.append(
            McpTool(
                name=name,
                server=server,
                tool=tool.name,
                description=tool.description,
                input_schema=tool.input_schema,
            )
        )
    return tools, clashes


class McpTool(BaseModel):
    """One tool an agent may call, as its server listed it."""

    name: str
    """What the model calls it (``function_name``)."""
    server: str
    tool: str
    """The server's own name for it."""
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=dict)

    def function_schema(self) -> dict[str, Any]:
        """The OpenAI function-tool definition offered to the model."""
        parameters = self.input_schema or {"type": "object", "properties": {}}
        text = f"[MCP server {self.server}, tool {self.tool}] {self.description}".strip()
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": text[:MAX_DESCRIPTION_CHARS],
                "parameters": parameters,
            },
        }


class McpCatalog(BaseModel):
    """The MCP tools one agent may call, listed at discovery (cached by the workflow)."""

    servers: list[McpServerSpec] = Field(default_factory=list)
    tools: list[McpTool] = Field(default_factory=list)
    allowed: list[str] = Field(default_factory=list)
    """The agent's ``mcp`` entries this catalog was listed for."""
    listed_at: datetime | None = None
    unlisted: list[str] = Field(default_factory=list)
    """stdio servers among ``servers`` whose tools are still to be listed, in the sandbox
    (``LIST_JAILED_ACTIVITY``); the workflow adds them to ``tools``."""

    def tool(self, name: str) -> McpTool | None:
        return next((t for t in self.tools if t.name == name), None)

    def server(self, name: str) -> McpServerSpec | None:
        return next((s for s in self.servers if s.name == name), None)

    def schemas(self) -> list[dict[str, Any]]:
        return [t.function_schema() for t in self.tools]


class McpDiscoverInput(BaseModel):
    org: str
    agent: str
    allowed: list[str]
    """The agent's ``mcp`` entries: only these servers are contacted, only these tools kept."""
    reserved_names: list[str] = Field(default_factory=list)
    """Names the agent's built-in tools already use (an MCP tool never shadows one)."""


class McpListInput(BaseModel):
    """The stdio servers to list in the sandbox: their specs come from the discovery."""

    agent: str
    servers: list[McpServerSpec]
    allowed: list[str]
    reserved_names: list[str] = Field(default_factory=list)
    """The agent's built-in tools and the MCP tools already listed."""


class McpCallInput(BaseModel):
    server: McpServerSpec
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    input_schema: dict[str, Any] = Field(default_factory=dict)
    """Checked before the call: arguments that do not fit never reach the server."""
    agent: str = ""
    """For logs and spans only."""
    trace: dict[str, str] | None = None
    """The record's trace carrier: the call's ``mcp.call`` span joins that trace."""


class McpCallResult(BaseModel):
    """A tool's answer, bounded: the text the model gets and whether the tool failed."""

    text: str
    is_error: bool = False
    truncated: bool = False
    size_bytes: int = 0
    """The whole result's size before it was cut."""


class McpErrorType:
    """``ApplicationError.type`` of the MCP activities' failures."""

    INVALID_ARGUMENTS: Final = "McpInvalidArguments"
    UNKNOWN_SERVER: Final = "McpUnknownServer"
    CONFIG: Final = "McpConfig"
    PROTOCOL: Final = "McpProtocolError"
    UNAVAILABLE: Final = "McpUnavailable"
    SANDBOX_LIMIT: Final = "McpSandboxLimit"
    """A stdio server's jail hit a limit: the same request would hit it again."""

    NON_RETRYABLE: Final = (INVALID_ARGUMENTS, UNKNOWN_SERVER, CONFIG, PROTOCOL, SANDBOX_LIMIT)
