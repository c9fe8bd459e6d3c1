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
from pathlib import Path

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


def install_for_jail() -> Path:
    """A directory with this server (``server.py``) and ``lib/``, the SDK for the jail's
    Python (Debian's, not this venv's), every part readable by uid 65534.

    Built once per machine and SDK version under /tmp (world-searchable, as a mount
    must be) from PyPI wheels; called on the host, never in the jail.
    """
    import shutil
    import subprocess
    import sys
    from importlib.metadata import version

    from kafkaorg.sandbox._nsjail import find_interpreter

    interpreter = find_interpreter()
    if interpreter is None:
        raise RuntimeError("no Python the sandbox can run (Debian's python3)")
    python = subprocess.run(
        [str(interpreter), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    sdk = version("mcp")
    root = Path("/tmp") / f"kafkaorg-test-mcp-stdio-py{python}-mcp{sdk}"
    if not (root / ".complete").exists():
        building = Path(f"{root}.{os.getpid()}")
        shutil.rmtree(building, ignore_errors=True)
        glibc = os.confstr("CS_GNU_LIBC_VERSION") or "glibc 2.17"
        newest = int(glibc.split()[-1].split(".")[1])
        platforms = [f"manylinux_2_{m}_x86_64" for m in range(17, newest + 1)]
        subprocess.run(
            [
                sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                "--target", str(building / "lib"), "--python-version", python,
                "--implementation", "cp", "--only-binary=:all:",
                *[arg for p in [*platforms, "manylinux2014_x86_64"] for arg in ("--platform", p)],
                f"mcp=={sdk}",
            ],
            check=True,
            timeout=600,
        )  # fmt: skip
        subprocess.run(["chmod", "-R", "a+rX", str(building)], check=True)
        (building / ".complete").touch()
        shutil.rmtree(root, ignore_errors=True)
        building.rename(root)
    shutil.copy(__file__, root / "server.py")  # this very file, always the current one
    (root / "server.py").chmod(0o644)
    return root


if __name__ == "__main__":
    app.run("stdio")
