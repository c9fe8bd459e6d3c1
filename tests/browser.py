"""A real browser for console tests and screenshots: Playwright driving Debian's chromium.

Playwright's own browser download cannot work on these machines; ``/usr/bin/chromium``
is installed by scripts/install.sh. The flags keep chromium from calling home (the closed
network refuses it, many connections at a time) and let it run as root.
"""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from tests.support import ProcessHandle

CHROMIUM = os.environ.get("KAFKAORG_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def start_console(
    log_dir: Path, port: int, env: Mapping[str, str] | None = None, name: str = "console"
) -> ProcessHandle:
    """A ``kafkaorg console`` process on ``port``, once it answers /healthz."""
    handle = ProcessHandle(f"console --port {port}", log_dir, env={**os.environ, **(env or {})})
    handle.log_path = log_dir / f"{name}-{port}.log"
    handle.start()
    deadline = time.monotonic() + 30
    while True:
        handle.ensure_alive()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return handle
        except OSError:
            if time.monotonic() > deadline:
                handle.stop()
                raise
            time.sleep(0.3)
