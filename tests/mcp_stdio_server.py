"""A stdio MCP server for the suite, built with the official SDK (``FastMCP``).

The suite runs it the way an org would: as a ``command`` in ``mcp_servers``, started
by the sandbox worker in nsjail with Debian's Python and an ``mcp`` installed for that
Python (``tests/integration/test_llm_mcp_stdio.py`` makes both). Its tools report
what the jail lets them see and do, so a test can tell the server really ran jailed.
"""

from __future__ import annotations

import os
import socket
import time

from mcp.server.fastmcp import FastMCP

FACTS = {"nsjail": "a process isolation tool", "stdio": "JSON-RPC over a pipe"}

app = FastMCP("kafkaorg-stdio-test", log_level="WARNING")


@app.tool()
def lookup(key: str) -> str:
    """Look up a fact by its key (e.g. nsjail, stdio)."""
    return FACTS.get(key, f"no fact about {key}")


@app.tool()
def whereami(port: int) -> dict[str, object]:
    """What the server's process is and may do: its uid, host name, and whether it can
    reach 127.0.0.1:<port> or write outside its tmpfs."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            network = "reachable"
    except OSError as exc:
        network = f"unreachable: {exc.strerror or exc}"
    try:
        with open(os.path.join(os.path.dirname(__file__), "written"), "w") as file:
            file.write("x")
        own_dir = "writable"
    except OSError as exc:
        own_dir = f"read-only: {exc.strerror}"
    with open("/tmp/scratch", "w") as file:  # the jail's own tmpfs
        file.write("x")
    return {
        "uid": os.getuid(),
        "hostname": socket.gethostname(),
        "network": network,
        "own_dir": own_dir,
        "greeting": os.environ.get("GREETING", ""),
    }


@app.tool()
def spin(seconds: float) -> str:
    """Burns CPU for this long (the sandbox's CPU-time limit may stop it first)."""
    deadline = time.process_time() + seconds
    while time.process_time() < deadline:
        pass
    return f"spun {seconds} s"


if __name__ == "__main__":
    app.run("stdio")
