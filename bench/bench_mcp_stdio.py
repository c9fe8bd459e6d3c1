"""stdio MCP benchmark: what a jail costs a stdio server's session over running it bare.

Each sample is one session as ``call_mcp_tool`` opens it: start the server, MCP
``initialize``, one ``tools/call`` (``lookup``), close. Jailed: through the sandbox
worker's own connector (``activities.mcp_sessions.jailed_sessions``: run dir, memory
cgroup, nsjail, the SDK's ``stdio_client``). Bare: the SDK's ``stdio_client`` running
the same interpreter and server with the same environment, no jail. The server is the
suite's ``FastMCP`` stdio server (tests/mcp_stdio_server.py) with the SDK installed
for Debian's Python. Jailed and bare sessions alternate (order flipped each round), so
both see the same load. Needs no stack. Run from the repository root::

    python -m bench.bench_mcp_stdio --runs 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from rich.console import Console
from rich.table import Table

from activities.mcp_sessions import jailed_sessions
from kafkaorg.sandbox import SandboxPolicy, host_capabilities
from kafkaorg.spec import McpServerSpec
from tests.mcp_stdio_server import FACTS, install_for_jail


def _server(root: Path, interpreter: str) -> McpServerSpec:
    return McpServerSpec(
        name="notes",
        command=[interpreter, str(root / "server.py")],
        mounts=[str(root)],
        env={"PYTHONPATH": str(root / "lib")},
        timeout_s=60,
    )


async def _one_call(session_context: AbstractAsyncContextManager[ClientSession]) -> float:
    start = time.perf_counter()
    async with session_context as session:
        result = await session.call_tool("lookup", {"key": "nsjail"})
    elapsed = time.perf_counter() - start
    text = getattr(result.content[0], "text", None) if result.content else None
    if result.isError or text != FACTS["nsjail"]:
        raise SystemExit(f"the server answered wrongly: {result}")
    return elapsed


def _bare(server: McpServerSpec) -> AbstractAsyncContextManager[ClientSession]:
    """The same server and environment, started by the SDK with no jail."""

    @asynccontextmanager
    async def session() -> AsyncIterator[ClientSession]:
        assert server.command is not None
        params = StdioServerParameters(
            command=server.command[0],
            args=server.command[1:],
            env={**server.env, "PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"},
            cwd="/tmp",
        )
        with open(os.devnull, "w") as errlog:  # noqa: ASYNC230 (opening /dev/null never waits)
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(read, write) as client,
            ):
                await client.initialize()
                yield client

    return session()


async def _measure(runs: int, warmup: int) -> dict[str, list[float]]:
    caps = host_capabilities()
    if not caps.can_run or caps.interpreter is None:
        print("error: sandbox unavailable: " + "; ".join(caps.problems()), file=sys.stderr)
        raise SystemExit(1)
    server = _server(install_for_jail(), str(caps.interpreter))
    jailed = jailed_sessions(SandboxPolicy())
    modes: dict[str, Callable[[], Awaitable[float]]] = {
        "nsjail": lambda: _one_call(jailed(server)),
        "bare": lambda: _one_call(_bare(server)),
    }
    for _ in range(warmup):
        for run in modes.values():
            await run()
    samples: dict[str, list[float]] = {name: [] for name in modes}
    for i in range(runs):
        order = list(modes) if i % 2 == 0 else list(reversed(modes))
        for name in order:
            samples[name].append(await modes[name]())
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    samples = asyncio.run(_measure(args.runs, args.warmup))
    medians = {name: statistics.median(s) * 1000 for name, s in samples.items()}
    report = {
        "machine": f"{os.cpu_count()} CPU · Python {platform.python_version()} · "
        f"Linux {platform.release()} · load {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        "runs": args.runs,
        "median_ms": medians,
        "max_ms": {name: max(s) * 1000 for name, s in samples.items()},
        "ratio_median": medians["nsjail"] / medians["bare"],
        "overhead_median_ms": medians["nsjail"] - medians["bare"],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    table = Table(title=f"one stdio MCP session (start, initialize, one call), {args.runs} each")
    for col in ("mode", "median ms", "max ms"):
        table.add_column(col, justify="left" if col == "mode" else "right")
    for name in samples:
        table.add_row(name, f"{medians[name]:.0f}", f"{report['max_ms'][name]:.0f}")
    console = Console(width=max(100, Console().width))
    console.print(table)
    console.print(
        f"jailed / bare, median: {report['ratio_median']:.2f} "
        f"(+{report['overhead_median_ms']:.0f} ms per session)",
        highlight=False,
    )
    console.print(report["machine"], highlight=False)


if __name__ == "__main__":
    main()
