"""The small status file each running bridge writes (paused partitions and why, held
agents, counts), which ``kafkaorg dev status`` and the benchmarks read.

One file per bridge pid under ``<state_dir>/run/bridge-status/``; a dead bridge's file
is removed by the next reader.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kafkaorg.config import Settings


def bridge_status_dir(settings: Settings) -> Path:
    return settings.state_dir / "run" / "bridge-status"


def write_bridge_status(settings: Settings, status: dict[str, Any]) -> Path:
    """Atomically replace this process's status file (one per bridge pid)."""
    folder = bridge_status_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(status, sort_keys=True))
    tmp.replace(path)
    return path


def read_bridge_statuses(settings: Settings) -> list[dict[str, Any]]:
    """Status of every bridge still alive; files of dead bridges are removed."""
    folder = bridge_status_dir(settings)
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            pid = int(path.stem)
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            path.unlink(missing_ok=True)
            continue
        except PermissionError:
            pass
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return out
