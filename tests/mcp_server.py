"""A real MCP server for the suite, built with the official SDK (``FastMCP``).

It serves streamable HTTP on a free 127.0.0.1 port from a thread of the test process
and records every tool call it runs, so a test can tell how often the platform
really called it (once, however often the workflow's history is replayed).
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn
from mcp.server.fastmcp import FastMCP

FACTS = {"kafka": "a distributed event log", "temporal": "durable execution"}
BIG_RESULT_CHARS = 40_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class McpTestServer:
    """Tools: ``lookup`` (a fact by key), ``explode`` (raises), ``big`` (40 kB of text)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self.port = free_port()
        app = FastMCP("kafkaorg-test", stateless_http=True, json_response=True, log_level="WARNING")

        @app.tool()
        def lookup(key: str) -> str:
            """Look up a fact by its key (e.g. kafka, temporal)."""
            self._record("lookup", {"key": key})
            return FACTS.get(key, f"no fact about {key}")

        @app.tool()
        def explode(reason: str) -> str:
            """Always fails, with the reason given."""
            self._record("explode", {"reason": reason})
            raise RuntimeError(f"exploded: {reason}")

        @app.tool()
        def big() -> str:
            """Returns far more text than a model should be handed."""
            self._record("big", {})
            return "x" * BIG_RESULT_CHARS

        config = uvicorn.Config(
            app.streamable_http_app(), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="mcp-test-server")
        self._thread.daemon = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def calls_of(self, tool: str) -> list[dict[str, Any]]:
        with self._lock:
            return [args for name, args in self.calls if name == tool]

    def _record(self, tool: str, args: dict[str, Any]) -> None:
        with self._lock:
            self.calls.append((tool, args))

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "MCP test server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> McpTestServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
