"""MCP servers' tools for ``llm`` agents, through the official ``mcp`` SDK's client.

Two activities: ``discover_mcp_tools`` lists the tools an agent may use (the servers
are read from the org's spec in PostgreSQL), ``call_mcp_tool`` calls one. Both are
async (the SDK is anyio) and bounded in time, so a server that hangs costs a timeout,
never a stuck worker. A server that cannot be reached raises a retryable error; what
retrying cannot mend (bad arguments, an unknown server, a protocol error) is
non-retryable; a tool that answers with an error is a *result* the model reads.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import jsonschema
from mcp import ClientSession, McpError
from mcp import types as mcp_types
from mcp.client.streamable_http import streamablehttp_client
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from kafkaorg import tracing
from kafkaorg.db.models import Org
from kafkaorg.mcp_tools import (
    CALL_ACTIVITY,
    DISCOVER_ACTIVITY,
    MAX_RESULT_BYTES,
    McpCallInput,
    McpCallResult,
    McpCatalog,
    McpDiscoverInput,
    McpErrorType,
    McpTool,
    allowed_servers,
    bounded_text,
    function_name,
)
from kafkaorg.metrics import MCP_CALLS
from kafkaorg.spec import McpServerSpec

MAX_LIST_PAGES = 20
"""A server whose tools/list never ends is cut off here."""
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _headers(server: McpServerSpec) -> dict[str, str]:
    """The server's headers with ``${NAME}`` read from this worker's environment."""

    def expand(match: re.Match[str]) -> str:
        value = os.environ.get(match.group(1))
        if value is None:
            raise ApplicationError(
                f"MCP server {server.name}: header refers to ${{{match.group(1)}}}, "
                "which is not set in the worker's environment",
                type=McpErrorType.CONFIG,
                non_retryable=True,
            )
        return value

    return {key: _ENV_REF.sub(expand, value) for key, value in server.headers.items()}


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside anyio's exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _unreachable(server: McpServerSpec, exc: BaseException) -> ApplicationError:
    leaf = _leaf(exc)
    why = str(leaf) or type(leaf).__name__
    return ApplicationError(
        f"MCP server {server.name} ({server.url}) unreachable: {type(leaf).__name__}: {why}",
        type=McpErrorType.UNAVAILABLE,
    )


@asynccontextmanager
async def _session(server: McpServerSpec) -> AsyncIterator[ClientSession]:
    """An initialized client session; every failure to get one is ``McpUnavailable``."""
    if server.url is None:
        raise ApplicationError(
            f"MCP server {server.name}: stdio servers are not supported yet",
            type=McpErrorType.CONFIG,
            non_retryable=True,
        )
    headers = _headers(server)
    timeout = timedelta(seconds=server.timeout_s)
    async with (
        streamablehttp_client(
            server.url, headers=headers, timeout=timeout, sse_read_timeout=timeout
        ) as (read, write, _),
        ClientSession(read, write, read_timeout_seconds=timeout) as session,
    ):
        await session.initialize()
        yield session


async def _list_tools(server: McpServerSpec) -> list[mcp_types.Tool]:
    tools: list[mcp_types.Tool] = []
    try:
        async with asyncio.timeout(server.timeout_s), _session(server) as session:
            cursor: str | None = None
            for _ in range(MAX_LIST_PAGES):
                page = await session.list_tools(
                    params=mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
                )
                tools.extend(page.tools)
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


class McpActivities:
    """Reads server definitions from PostgreSQL; talks to servers with the SDK's client."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def _declared(self, org: str) -> list[McpServerSpec]:
        with self._sessions() as session:
            spec = session.scalar(select(Org.spec).where(Org.name == org))
        return [McpServerSpec.model_validate(s) for s in (spec or {}).get("mcp_servers") or []]

    @activity.defn(name=DISCOVER_ACTIVITY)
    async def discover_mcp_tools(self, input: McpDiscoverInput) -> McpCatalog:
        """The tools of the servers the agent may use, as the servers list them now."""
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
        listed = await asyncio.gather(*(_list_tools(s) for s in servers), return_exceptions=True)
        failures = [r for r in listed if isinstance(r, BaseException)]
        if failures:
            first = failures[0]
            if not isinstance(first, ApplicationError):
                raise first
            if len(failures) > 1:
                raise ApplicationError(
                    "; ".join(str(f) for f in failures), type=first.type or McpErrorType.UNAVAILABLE
                )
            raise first
        taken = set(input.reserved_names)
        tools: list[McpTool] = []
        for server, found in zip(servers, listed, strict=True):
            assert not isinstance(found, BaseException)
            only = allowed[server.name]
            for tool in found:
                if only is not None and tool.name not in only:
                    continue
                name = function_name(server.name, tool.name)
                if name in taken:
                    activity.logger.warning(
                        "MCP tool %s/%s: name %s taken", server.name, tool.name, name
                    )
                    continue
                taken.add(name)
                tools.append(
                    McpTool(
                        name=name,
                        server=server.name,
                        tool=tool.name,
                        description=tool.description or tool.title or "",
                        input_schema=dict(tool.inputSchema or {}),
                    )
                )
        return McpCatalog(servers=servers, tools=tools, allowed=list(input.allowed))

    @activity.defn(name=CALL_ACTIVITY)
    async def call_mcp_tool(self, input: McpCallInput) -> McpCallResult:
        """One ``tools/call``; the result's text bounded to ``MAX_RESULT_BYTES``.

        Traced (when on) as an OpenInference ``TOOL`` span under the record's trace.
        """
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
            result = await self._call(input)
            if span is not None:
                span.set_attributes(
                    {
                        "kafkaorg.mcp.is_error": result.is_error,
                        "kafkaorg.mcp.result_bytes": result.size_bytes,
                    }
                )
            return result

    async def _call(self, input: McpCallInput) -> McpCallResult:
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
            async with asyncio.timeout(server.timeout_s), _session(server) as session:
                result = await session.call_tool(input.tool, input.arguments)
        except ApplicationError:
            MCP_CALLS.labels(server.name, "error").inc()
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
