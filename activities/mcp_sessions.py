"""Opening an MCP client session: over streamable HTTP, or to a stdio server in a jail.

Both give an initialized ``ClientSession`` of the official SDK, so listing and calling
(``activities/mcp_client.py``) never care which transport a server uses. A stdio
server is the server's ``command`` in a fresh nsjail jail per session: the SDK's
``stdio_client`` starts nsjail, and the jail is a tool's (no network, read-only system
directories and ``mounts``, a private ``/tmp``, uid 65534, the sandbox's limits).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, ExitStack, asynccontextmanager
from datetime import timedelta

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamablehttp_client
from temporalio.exceptions import ApplicationError

from kafkaorg.mcp_tools import McpErrorType
from kafkaorg.sandbox import (
    SandboxInputError,
    SandboxPolicy,
    SandboxUnavailableError,
    jailed_program,
)
from kafkaorg.spec import McpServerSpec

Connect = Callable[[McpServerSpec], AbstractAsyncContextManager[ClientSession]]
"""Opens an initialized client session to a server."""

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expanded(server: McpServerSpec, values: Mapping[str, str], what: str) -> dict[str, str]:
    """``values`` with ``${NAME}`` read from this worker's environment, so a secret
    stays out of the spec and the workflow histories."""

    def expand(match: re.Match[str]) -> str:
        value = os.environ.get(match.group(1))
        if value is None:
            raise ApplicationError(
                f"MCP server {server.name}: {what} refers to ${{{match.group(1)}}}, "
                "which is not set in the worker's environment",
                type=McpErrorType.CONFIG,
                non_retryable=True,
            )
        return value

    return {key: _ENV_REF.sub(expand, value) for key, value in values.items()}


def where(server: McpServerSpec) -> str:
    """How a server is reached, for error messages."""
    if server.command is not None:
        return f"stdio {server.command[0]}, in the sandbox"
    return str(server.url)


def _config_error(server: McpServerSpec, why: str) -> ApplicationError:
    return ApplicationError(
        f"MCP server {server.name}: {why}", type=McpErrorType.CONFIG, non_retryable=True
    )


@asynccontextmanager
async def http_session(server: McpServerSpec) -> AsyncIterator[ClientSession]:
    """An initialized session over streamable HTTP."""
    if server.url is None:
        raise _config_error(server, "a stdio server: the sandbox worker runs it, not this one")
    headers = expanded(server, server.headers, "a header")
    timeout = timedelta(seconds=server.timeout_s)
    async with (
        streamablehttp_client(
            server.url, headers=headers, timeout=timeout, sse_read_timeout=timeout
        ) as (read, write, _),
        ClientSession(read, write, read_timeout_seconds=timeout) as session,
    ):
        await session.initialize()
        yield session


def jail_policy(server: McpServerSpec, worker_policy: SandboxPolicy) -> SandboxPolicy:
    """One session's jail: the sandbox worker's policy tightened by the server's
    ``sandbox`` limits, living as long as one listing or call may (``timeout_s``)."""
    asked = server.sandbox.model_dump(exclude_none=True) if server.sandbox else {}
    tightened = worker_policy.tightened(worker_policy.model_copy(update=asked))
    return tightened.model_copy(update={"wall_time_s": server.timeout_s})


def jailed_sessions(worker_policy: SandboxPolicy) -> Connect:
    """Sessions to stdio servers, each in a fresh jail under ``worker_policy`` or stricter."""

    @asynccontextmanager
    async def connect(server: McpServerSpec) -> AsyncIterator[ClientSession]:
        """Whatever fails once the jail has started is told by how the program ended,
        if it ended badly (exit status, a limit hit, its last line of stderr): the SDK
        alone would only see the pipe close."""
        if server.command is None:
            raise _config_error(server, "not a stdio server ('command')")
        with ExitStack() as cleanup:
            try:
                jail = cleanup.enter_context(
                    jailed_program(
                        server.command,
                        jail_policy(server, worker_policy),
                        mounts=server.mounts,
                        env=expanded(server, server.env, "env"),
                    )
                )
            except SandboxInputError as exc:
                raise _config_error(server, str(exc)) from None
            except SandboxUnavailableError as exc:
                raise ApplicationError(
                    f"MCP server {server.name}: {exc}", type=McpErrorType.UNAVAILABLE
                ) from None
            errlog = cleanup.enter_context(jail.stderr_path.open("w"))
            timeout = timedelta(seconds=server.timeout_s)
            nsjail = StdioServerParameters(command=jail.argv[0], args=jail.argv[1:], env={})
            try:
                async with (
                    stdio_client(nsjail, errlog=errlog) as (read, write),
                    ClientSession(read, write, read_timeout_seconds=timeout) as session,
                ):
                    await session.initialize()
                    yield session
            except (ApplicationError, asyncio.CancelledError):
                raise
            except BaseException:
                ending = jail.ending()  # the SDK has reaped nsjail by now
                if ending is None:
                    raise
                limit = ending.limit_hit is not None
                raise ApplicationError(
                    f"MCP server {server.name} ({where(server)}) {ending.text}",
                    type=McpErrorType.SANDBOX_LIMIT if limit else McpErrorType.UNAVAILABLE,
                    non_retryable=limit,
                ) from None

    return connect
