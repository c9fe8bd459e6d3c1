"""MCP servers' tools for ``llm`` agents, through the official ``mcp`` SDK's client.

On the worker, ``McpActivities``: ``discover_mcp_tools`` lists the tools an agent may
use (the servers are read from the org's spec in PostgreSQL) and ``call_mcp_tool``
calls one, for streamable-HTTP servers. On the sandbox worker, ``JailedMcpActivities``
does the same for stdio servers, whose listing the discovery leaves to it (see
``activities/mcp_sessions.py`` for the jail). All are async (the SDK is anyio) and
bounded in time, so a server that hangs costs a timeout, never a stuck worker. A
server that cannot be reached raises a retryable error; what retrying cannot mend (bad
arguments, an unknown server, a protocol error, a sandbox limit) is non-retryable; a
tool that answers with an error is a *result* the model reads.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import jsonschema
from mcp import McpError
from mcp import types as mcp_types
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.mcp_sessions import Connect, http_session, jailed_sessions, where
from kafkaorg import tracing
from kafkaorg.db.models import Org
from kafkaorg.mcp_tools import (
    CALL_ACTIVITY,
    DISCOVER_ACTIVITY,
    LIST_JAILED_ACTIVITY,
    MAX_RESULT_BYTES,
    ListedTool,
    McpCallInput,
    McpCallResult,
    McpCatalog,
    McpDiscoverInput,
    McpErrorType,
    McpListInput,
    McpTool,
    allowed_servers,
    bounded_text,
    catalog_tools,
)
from kafkaorg.metrics import MCP_CALLS
from kafkaorg.sandbox import SandboxPolicy
from kafkaorg.spec import McpServerSpec

MAX_LIST_PAGES = 20
"""A server whose tools/list never ends is cut off here."""


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside anyio's exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _unreachable(server: McpServerSpec, exc: BaseException) -> ApplicationError:
    leaf = _leaf(exc)
    if isinstance(leaf, TimeoutError):
        why = f"no answer within {server.timeout_s:g} s"
    else:
        why = f"{type(leaf).__name__}: {str(leaf) or type(leaf).__name__}"
    return ApplicationError(
        f"MCP server {server.name} ({where(server)}) unreachable: {why}",
        type=McpErrorType.UNAVAILABLE,
    )


async def _list_tools(server: McpServerSpec, connect: Connect) -> list[ListedTool]:
    tools: list[ListedTool] = []
    try:
        async with asyncio.timeout(server.timeout_s), connect(server) as session:
            cursor: str | None = None
            for _ in range(MAX_LIST_PAGES):
                page = await session.list_tools(
                    params=mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
                )
                tools += [
                    ListedTool(
                        name=tool.name,
                        description=tool.description or tool.title or "",
                        input_schema=dict(tool.inputSchema or {}),
                    )
                    for tool in page.tools
                ]
                cursor = page.nextCursor
                if not cursor:
                    break
    except ApplicationError:
        raise
    except McpError as exc:
        raise ApplicationError(
            f"MCP server {server.name} refused to list its tools: {exc.error.message}",
            type=McpErrorType.PROTOCOL,
        ) from None
    except BaseException as exc:  # connect errors, timeouts, HTTP statuses, in groups
        if isinstance(exc, asyncio.CancelledError):
            raise
        raise _unreachable(server, exc) from None
    return tools


async def _catalogued(
    agent: str,
    servers: list[McpServerSpec],
    allowed: list[str],
    reserved_names: list[str],
    connect: Connect,
) -> list[McpTool]:
    """The allowed tools of ``servers``, all listed at once; failures raised together."""
    listed = await asyncio.gather(
        *(_list_tools(s, connect) for s in servers), return_exceptions=True
    )
    failures = [r for r in listed if isinstance(r, BaseException)]
    if failures:
        first = failures[0]
        if not isinstance(first, ApplicationError) or len(failures) == 1:
            raise first
        raise ApplicationError(
            "; ".join(str(f) for f in failures), type=first.type or McpErrorType.UNAVAILABLE
        )
    only = allowed_servers(allowed)
    taken = set(reserved_names)
    tools: list[McpTool] = []
    for server, found in zip(servers, listed, strict=True):
        assert not isinstance(found, BaseException)
        kept, clashes = catalog_tools(server.name, found, only.get(server.name), taken)
        tools += kept
        for name in clashes:
            activity.logger.warning(
                "agent %s: MCP tool %s/%s: name taken", agent, server.name, name
            )
    return tools


def content_text(result: mcp_types.CallToolResult) -> str:
    """A tool result as text for the model: text blocks as they are, other blocks named."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        elif isinstance(block, mcp_types.ImageContent | mcp_types.AudioContent):
            parts.append(f"[{block.type} {block.mimeType}, {len(block.data)} base64 chars]")
        elif isinstance(block, mcp_types.ResourceLink):
            parts.append(f"[resource {block.uri}]")
        elif isinstance(block, mcp_types.EmbeddedResource):
            inner = block.resource
            if isinstance(inner, mcp_types.TextResourceContents):
                parts.append(inner.text)
            else:
                parts.append(f"[resource {inner.uri}, {inner.mimeType or 'binary'}]")
    if not parts and result.structuredContent is not None:
        parts.append(json.dumps(result.structuredContent, sort_keys=True, default=str))
    return "\n".join(parts)


def _argument_problems(schema: dict[str, Any], arguments: dict[str, Any]) -> list[str]:
    if not schema:
        return []
    try:
        validator = jsonschema.validators.validator_for(schema)(schema)
        errors = sorted(validator.iter_errors(arguments), key=lambda e: list(e.path))
    except jsonschema.SchemaError:
        return []  # the server's schema is its own business; the server checks again
    return [f"{'.'.join(str(p) for p in e.path) or 'arguments'}: {e.message}" for e in errors]


async def _traced_call(input: McpCallInput, connect: Connect) -> McpCallResult:
    """One ``tools/call``, traced (when on) as an OpenInference ``TOOL`` span under the
    record's trace."""
    with tracing.span(
        "mcp.call",
        parent=input.trace,
        kind=tracing.SpanKind.CLIENT,
        attributes={
            "openinference.span.kind": "TOOL",
            "tool.name": input.tool,
            "kafkaorg.mcp.server": input.server.name,
            "kafkaorg.agent": input.agent,
        },
        links=[tracing.current_span_for_link()],
        nest=True,
    ) as span:
        result = await _call(input, connect)
        if span is not None:
            span.set_attributes(
                {
                    "kafkaorg.mcp.is_error": result.is_error,
                    "kafkaorg.mcp.result_bytes": result.size_bytes,
                }
            )
        return result


async def _call(input: McpCallInput, connect: Connect) -> McpCallResult:
    """The result's text bounded to ``MAX_RESULT_BYTES``."""
    server = input.server
    problems = _argument_problems(input.input_schema, input.arguments)
    if problems:
        MCP_CALLS.labels(server.name, "invalid-arguments").inc()
        raise ApplicationError(
            f"invalid arguments for {server.name}/{input.tool}: {'; '.join(problems)}",
            type=McpErrorType.INVALID_ARGUMENTS,
            non_retryable=True,
        )
    try:
        async with asyncio.timeout(server.timeout_s), connect(server) as session:
            result = await session.call_tool(input.tool, input.arguments)
    except ApplicationError as exc:
        MCP_CALLS.labels(
            server.name, "sandbox-limit" if exc.type == McpErrorType.SANDBOX_LIMIT else "error"
        ).inc()
        raise
    except McpError as exc:
        MCP_CALLS.labels(server.name, "protocol-error").inc()
        raise ApplicationError(
            f"MCP server {server.name} refused {input.tool}: {exc.error.message}",
            type=McpErrorType.PROTOCOL,
            non_retryable=True,
        ) from None
    except BaseException as exc:
        if isinstance(exc, asyncio.CancelledError):
            raise
        MCP_CALLS.labels(server.name, "unreachable").inc()
        raise _unreachable(server, exc) from None
    text = content_text(result)
    bounded, truncated = bounded_text(text, MAX_RESULT_BYTES)
    MCP_CALLS.labels(server.name, "tool-error" if result.isError else "ok").inc()
    return McpCallResult(
        text=bounded,
        is_error=bool(result.isError),
        truncated=truncated,
        size_bytes=len(text.encode()),
    )


class McpActivities:
    """On the worker: reads server definitions from PostgreSQL, talks HTTP to servers."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def _declared(self, org: str) -> list[McpServerSpec]:
        with self._sessions() as session:
            spec = session.scalar(select(Org.spec).where(Org.name == org))
        return [McpServerSpec.model_validate(s) for s in (spec or {}).get("mcp_servers") or []]

    @activity.defn(name=DISCOVER_ACTIVITY)
    async def discover_mcp_tools(self, input: McpDiscoverInput) -> McpCatalog:
        """The tools of the HTTP servers the agent may use, as they list them now; the
        stdio servers are left ``unlisted``, for the sandbox worker to list."""
        declared = {s.name: s for s in await asyncio.to_thread(self._declared, input.org)}
        allowed = allowed_servers(input.allowed)
        missing = sorted(set(allowed) - set(declared))
        if missing:
            raise ApplicationError(
                f"agent {input.agent}: MCP server(s) {', '.join(missing)} not declared in "
                f"org {input.org}'s mcp_servers",
                type=McpErrorType.UNKNOWN_SERVER,
                non_retryable=True,
            )
        servers = [declared[name] for name in allowed]
        http = [s for s in servers if s.command is None]
        tools = await _catalogued(
            input.agent, http, input.allowed, input.reserved_names, http_session
        )
        return McpCatalog(
            servers=servers,
            tools=tools,
            allowed=list(input.allowed),
            unlisted=[s.name for s in servers if s.command is not None],
        )

    @activity.defn(name=CALL_ACTIVITY)
    async def call_mcp_tool(self, input: McpCallInput) -> McpCallResult:
        """One ``tools/call`` to an HTTP server."""
        return await _traced_call(input, http_session)


class JailedMcpActivities:
    """On the sandbox worker: stdio servers, each session in a fresh jail."""

    def __init__(self, policy: SandboxPolicy) -> None:
        self._connect = jailed_sessions(policy)

    @activity.defn(name=LIST_JAILED_ACTIVITY)
    async def list_jailed_mcp_tools(self, input: McpListInput) -> McpCatalog:
        """The allowed tools of stdio servers, each listed in a jail of its own."""
        tools = await _catalogued(
            input.agent, input.servers, input.allowed, input.reserved_names, self._connect
        )
        return McpCatalog(servers=input.servers, tools=tools, allowed=list(input.allowed))

    @activity.defn(name=CALL_ACTIVITY)
    async def call_mcp_tool(self, input: McpCallInput) -> McpCallResult:
        """One ``tools/call`` to a stdio server, in a jail started for it."""
        return await _traced_call(input, self._connect)
