"""A long-running program in a fresh jail, its stdio left to the caller.

:func:`run_in_sandbox` owns a tool's whole run: it feeds stdin, reads stdout
and decides when the run is over. A stdio MCP server is different: the MCP
client talks to it for as long as a listing or a call lasts, so the client
starts nsjail itself (``JailedProgram.argv``) and owns its pipes. What this
module keeps is everything else about the jail: the same namespaces, binds,
rlimits, cgroups and seccomp as a tool's, a run dir and memory cgroup made
before and removed after, and an account of how the program ended.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kafkaorg.sandbox._capabilities import SandboxCapabilities, host_capabilities
from kafkaorg.sandbox._nsjail import JAIL_PATH, JailPlan, build_argv, readable_by_nobody
from kafkaorg.sandbox._policy import LimitHit, SandboxPolicy
from kafkaorg.sandbox._runner import (
    SandboxInputError,
    SandboxUnavailableError,
    _RunCgroup,
    _work_root,
    classify_limit,
    parse_nsjail_log,
)

STDERR_TAIL_BYTES = 2048
"""How much of a failed program's stderr its account quotes (the end: where Python
prints the exception)."""


@dataclass
class JailedProgram:
    """One jail's argv and, once the program has ended, what happened to it."""

    argv: list[str]
    stderr_path: Path
    """Where the caller sends the program's stderr (nsjail's own log is kept apart)."""
    log_path: Path
    policy: SandboxPolicy
    cgroup: _RunCgroup | None
    started_at: float = field(default_factory=time.monotonic)

    def ending(self) -> ProgramEnding | None:
        """How the program ended, or ``None`` if not badly (still running, or exit
        status 0 with no limit hit)."""
        if not self.log_path.exists():
            return None
        log = parse_nsjail_log(self.log_path.read_text(errors="replace"))
        stderr = _tail(self.stderr_path)
        last_line = (stderr.strip().splitlines() or [""])[-1][:300]
        if not log.launched:
            detail = "; ".join(log.errors[:3]) or "no reason logged"
            return ProgramEnding(None, f"the jail could not start the program: {detail}")
        limit = classify_limit(
            killed_for=None,
            log=log,
            exit_code=log.exit_code,
            signal_number=log.signal,
            # nsjail is the MCP client's child, its rusage not ours: the wall time since
            # the start bounds the CPU a (single-threaded) program can have used.
            cpu_s=time.monotonic() - self.started_at,
            policy=self.policy,
            oom_kills=self.cgroup.ooms() if self.cgroup is not None else 0,
            stderr=stderr,
        )
        if limit is not None:
            text = f"stopped by the sandbox's {_LIMIT_NAMES[limit]} limit"
            return ProgramEnding(limit, text + (f" ({last_line})" if last_line else ""))
        if log.signal is not None:
            text = f"killed by signal {log.signal}"
        elif log.exit_code not in (None, 0):
            text = f"exited with status {log.exit_code}"
        else:
            return None
        return ProgramEnding(None, text + (f": {last_line}" if last_line else ""))


@dataclass(frozen=True)
class ProgramEnding:
    """A jailed program's bad end: the limit that ended it (if one did), in words."""

    limit_hit: LimitHit | None
    text: str


_LIMIT_NAMES = {
    LimitHit.WALL_TIME: "wall-time",
    LimitHit.CPU_TIME: "CPU-time",
    LimitHit.MEMORY: "memory",
    LimitHit.FILE_SIZE: "file-size",
    LimitHit.PROCESSES: "process-count",
    LimitHit.OUTPUT: "output",
    LimitHit.SECCOMP: "system-call",
}


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as file:
            file.seek(max(0, path.stat().st_size - STDERR_TAIL_BYTES))
            return file.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _visible(path: str, plan: JailPlan, mounts: Sequence[str]) -> bool:
    """Whether ``path`` (a host path) is inside what the jail binds."""
    roots = [*plan.system_dirs, *mounts]
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def resolve_command(
    command: Sequence[str], plan: JailPlan, mounts: Sequence[str], env: Mapping[str, str]
) -> list[str]:
    """``command`` with its program as a path the jail can execute.

    nsjail ``execv``\\ s without a ``PATH`` search, so a bare name is looked up here,
    on the jail's ``PATH``, among the directories the jail sees (they are the host's).

    Raises:
        SandboxInputError: the program is not in the jail, or uid 65534 may not run it.
    """
    program = command[0]
    if "/" in program:
        candidates = [program] if program.startswith("/") else []
    else:
        search = env.get("PATH", JAIL_PATH).split(":")
        candidates = [os.path.join(d, program) for d in search if d.startswith("/")]
    for candidate in candidates:
        if not _visible(os.path.normpath(candidate), plan, mounts):
            continue
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            if not readable_by_nobody(Path(candidate)):
                raise SandboxInputError(
                    f"command {program!r}: {candidate} is not readable by uid 65534, "
                    "the sandbox's user"
                )
            return [candidate, *command[1:]]
    where = ", ".join([*plan.system_dirs, *mounts])
    if "/" in program and not program.startswith("/"):
        raise SandboxInputError(f"command {program!r}: give an absolute path or a bare name")
    raise SandboxInputError(
        f"command {program!r} not found in the sandbox (it sees {where}; "
        f"PATH {env.get('PATH', JAIL_PATH)})"
    )


def check_mounts(mounts: Sequence[str]) -> None:
    """Raises ``SandboxInputError`` for a mount this host cannot give the jail."""
    for mount in mounts:
        path = Path(mount)
        if not path.is_dir():
            raise SandboxInputError(f"mount {mount}: no such directory on the sandbox worker")
        if not readable_by_nobody(path):
            raise SandboxInputError(
                f"mount {mount}: not readable by uid 65534 (the sandbox's user): "
                "every directory on the way must be world-searchable"
            )


@contextmanager
def jailed_program(
    command: Sequence[str],
    policy: SandboxPolicy,
    *,
    mounts: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    capabilities: SandboxCapabilities | None = None,
) -> Iterator[JailedProgram]:
    """A jail for ``command``, ready to start: the caller runs ``argv`` (and must have
    reaped it) before the block ends; the run dir and cgroup go with the block.

    The jail is a tool's (no network, read-only system dirs, a private tmpfs ``/tmp``,
    uid 65534, rlimits, cgroups, seccomp), lives at most ``policy.wall_time_s`` plus
    a second (nsjail's ``--time_limit``) and sees ``mounts`` read-only as well.

    Raises:
        SandboxUnavailableError: nsjail cannot run here.
        SandboxInputError: the command or a mount is not usable in a jail.
    """
    caps = capabilities or host_capabilities()
    if not caps.can_run:
        raise SandboxUnavailableError("sandbox unavailable: " + "; ".join(caps.problems()))
    plan = caps.plan()
    env = dict(env or {})
    check_mounts(mounts)
    program = resolve_command(command, plan, mounts, env)
    run_dir = Path(tempfile.mkdtemp(prefix="kafkaorg-program-", dir=_work_root()))
    cgroup: _RunCgroup | None = None
    try:
        run_dir.chmod(0o700)
        log_path = run_dir / "nsjail.log"
        cgroup = _RunCgroup.make(plan, policy)
        argv = build_argv(
            policy,
            plan,
            log_path=log_path,
            memory_parent=_RunCgroup.parent_for_nsjail(cgroup, plan),
            program=program,
            mounts=mounts,
            env=env,
        )
        yield JailedProgram(
            argv=argv,
            stderr_path=run_dir / "stderr",
            log_path=log_path,
            policy=policy,
            cgroup=cgroup,
        )
    finally:
        if cgroup is not None:
            cgroup.close()
        shutil.rmtree(run_dir, ignore_errors=True)
