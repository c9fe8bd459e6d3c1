"""The nsjail sandbox against hostile programs: real nsjail, real kernel limits, no mocks.

Every hostile run must be contained, reported with the limit it hit, end
within its wall time plus one second, and leave the host able to run the next
jail. The last tests drive the same runner through the CLI and through a real
Temporal worker on a test task queue.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import textwrap
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.worker import Worker

from kafkaorg.config import Settings
from kafkaorg.sandbox import (
    LimitHit,
    SandboxPolicy,
    SandboxResult,
    ToolOutputError,
    host_capabilities,
    parse_json_output,
    run_in_sandbox,
)
from kafkaorg.temporal import connect_temporal

with workflow.unsafe.imports_passed_through():
    from activities.sandbox import (
        RUN_CODE_HEARTBEAT_TIMEOUT,
        RUN_CODE_RETRY,
        SandboxActivities,
        SandboxRequest,
        run_code_timeout,
    )

from tests.support import run_cli as kafkaorg

pytestmark = pytest.mark.integration

# Small limits keep the suite quick; each is still far below what would hurt the host.
POLICY = SandboxPolicy(
    wall_time_s=3,
    cpu_time_s=2,
    memory_mb=256,
    file_size_mb=4,
    tmpfs_mb=8,
    processes=16,
    stdout_max_bytes=16_384,
    stderr_max_bytes=16_384,
)


def jail(code: str, stdin: bytes = b"", policy: SandboxPolicy = POLICY) -> SandboxResult:
    """Run ``code`` and check the contract every run keeps: the policy's limits in force
    (as the jail reports them), the host unharmed. How fast is bench/bench_sandbox.py's."""
    result = run_in_sandbox(textwrap.dedent(code), stdin, policy)
    assert f"rlimits wall={policy.wall_time_s:g}s cpu={policy.cpu_time_s}s" in result.sandbox
    after = run_in_sandbox("print('still fine')", b"", POLICY)
    assert after.ok and after.stdout == "still fine\n", after
    return result


def jailed_json(code: str) -> dict[str, str]:
    """Run a probe that prints one JSON object of findings."""
    result = jail(code)
    assert result.ok, result
    value = parse_json_output(result)
    assert isinstance(value, dict)
    return {str(k): str(v) for k, v in value.items()}


@pytest.fixture(scope="module", autouse=True)
def _nsjail_works() -> None:
    caps = host_capabilities()
    assert caps.can_run, caps.problems()


@pytest.fixture
def listener() -> Iterator[tuple[int, list[socket.socket]]]:
    """A TCP listener on 127.0.0.1, recording every connection it accepts."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.1)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    server.close()
    for conn in accepted:
        conn.close()


# --- well-behaved tools -------------------------------------------------------------------


def test_json_tool_reads_stdin_and_its_json_output_parses() -> None:
    result = jail(
        """
        import json, sys
        data = json.load(sys.stdin)
        print(json.dumps({"sum": sum(data["numbers"]), "who": data["who"]}))
        """,
        stdin=json.dumps({"numbers": [1, 2, 3], "who": "ü"}).encode(),
    )
    assert result.ok and result.limit_hit is None
    assert parse_json_output(result) == {"sum": 6, "who": "ü"}
    assert "nsjail" in result.sandbox and "uid 65534" in result.sandbox


def test_parse_json_output_refuses_text_and_failures() -> None:
    with pytest.raises(ToolOutputError, match="no valid JSON"):
        parse_json_output(jail("print('hello')"))
    with pytest.raises(ToolOutputError, match="exit status 3"):
        parse_json_output(jail("import sys; print('{}'); sys.exit(3)"))


def test_failing_program_is_a_result_with_its_exit_status_and_stderr() -> None:
    result = jail("raise SystemExit('bad things')")
    assert result.exit_code == 1 and result.signal is None and result.limit_hit is None
    assert not result.ok
    assert "bad things" in result.stderr
    assert "no version information" not in result.stderr  # nsjail's linker noise is dropped


def test_runs_as_nobody_in_a_private_writable_work_dir() -> None:
    found = jailed_json(
        """
        import json, os
        open("scratch.txt", "w").write("x" * 1000)
        print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd(),
                          "size": os.path.getsize("scratch.txt"), "root": sorted(os.listdir("/"))}))
        """
    )
    assert found["uid"] == "65534" and found["gid"] == "65534"
    assert found["cwd"] == "/tmp" and found["size"] == "1000"
    assert found["root"] == str(["bin", "dev", "lib", "lib64", "sandbox", "tmp", "usr"])


# --- resource limits ------------------------------------------------------------------------


def test_fork_bomb_is_stopped_by_the_process_limit() -> None:
    result = jail(
        """
        import os
        while True:
            os.fork()
        """
    )
    assert result.limit_hit is LimitHit.PROCESSES, result
    assert "Resource temporarily unavailable" in result.stderr


def test_memory_bomb_hits_the_memory_limit() -> None:
    result = jail(
        """
        hoard = []
        while True:
            hoard.append(b"x" * 10_000_000)
        """
    )
    assert result.limit_hit is LimitHit.MEMORY, result
    assert "MemoryError" in result.stderr


def test_memory_spread_over_processes_is_stopped_by_the_cgroup() -> None:
    """Each process stays under RLIMIT_AS; only the jail's memory cgroup sees the sum."""
    if not host_capabilities().memory.usable:
        pytest.skip(f"no memory cgroup here: {host_capabilities().memory.detail}")
    result = jail(
        """
        import os, time
        for _ in range(4):
            if os.fork() == 0:
                hoard = b"x" * 150_000_000
                time.sleep(0.5)
                os._exit(0)
        for _ in range(4):
            os.wait()
        """
    )
    assert result.limit_hit is LimitHit.MEMORY, result
    assert "memory=" in result.sandbox


def test_infinite_sleep_is_killed_at_the_wall_time() -> None:
    result = jail("import time\nwhile True:\n    time.sleep(0.1)\n")
    assert result.limit_hit is LimitHit.WALL_TIME, result
    assert result.signal == 9 and result.exit_code is None


def test_cpu_spin_is_killed_at_the_cpu_limit() -> None:
    policy = POLICY.model_copy(update={"cpu_time_s": 1})
    result = jail("while True:\n    pass\n", policy=policy)
    assert result.limit_hit is LimitHit.CPU_TIME, result
    assert result.signal == 9
    assert result.cpu_s >= 0.9, "it really spun until its CPU limit"


def test_big_file_hits_the_file_size_limit() -> None:
    result = jail(
        """
        with open("big", "wb") as f:
            while True:
                f.write(b"x" * 1_000_000)
                f.flush()
        """
    )
    assert result.limit_hit is LimitHit.FILE_SIZE, result
    assert "File too large" in result.stderr


def test_many_files_fill_the_work_dir_tmpfs_and_stop() -> None:
    result = jail(
        """
        for i in range(1000):
            with open(f"part{i}", "wb") as f:
                f.write(b"x" * 1_000_000)
        """
    )
    assert result.limit_hit is LimitHit.FILE_SIZE, result
    assert "No space left on device" in result.stderr


def test_output_flood_is_capped_and_the_jail_stopped() -> None:
    result = jail(
        """
        import sys
        while True:
            sys.stdout.write("x" * 65536)
        """
    )
    assert result.limit_hit is LimitHit.OUTPUT, result
    assert result.stdout_truncated and not result.stderr_truncated
    assert len(result.stdout) == POLICY.stdout_max_bytes
    assert result.signal == 9, "stopped at the cap, not left to run into the wall time"


def test_stderr_flood_is_capped_too() -> None:
    result = jail("import sys\nwhile True:\n    sys.stderr.write('e' * 4096)\n")
    assert result.limit_hit is LimitHit.OUTPUT and result.stderr_truncated, result
    assert len(result.stderr) == POLICY.stderr_max_bytes


# --- isolation ---------------------------------------------------------------------------


def test_no_network_not_even_loopback(listener: tuple[int, list[socket.socket]]) -> None:
    port, accepted = listener
    found = jailed_json(
        f"""
        import json, socket
        out = {{}}
        for name, addr in [("loopback", ("127.0.0.1", {port})), ("external", ("1.1.1.1", 53)),
                           ("dns", ("example.com", 80))]:
            try:
                socket.create_connection(addr, timeout=1).close()
                out[name] = "connected"
            except OSError as exc:
                out[name] = type(exc).__name__ + ": " + str(exc)
        print(json.dumps(out))
        """
    )
    for name in ("loopback", "external", "dns"):
        assert found[name] != "connected", found
        assert "Error" in found[name] or "error" in found[name], found
    assert accepted == [], "the listener outside the jail was reached"
    with socket.create_connection(("127.0.0.1", port), timeout=1):  # it is really listening
        pass


def test_host_files_outside_the_binds_are_not_visible() -> None:
    found = jailed_json(
        """
        import json, os
        out = {}
        for path in ["/etc/shadow", "/etc/passwd", "/root", "/work", "/home", "/proc/1/environ",
                     "/sys/fs/cgroup", "/var/lib/postgresql"]:
            try:
                os.stat(path)
                out[path] = "visible"
            except OSError as exc:
                out[path] = type(exc).__name__
        print(json.dumps(out))
        """
    )
    assert set(found.values()) == {"FileNotFoundError"}, found


def test_writes_outside_the_work_dir_fail() -> None:
    marker = f"kafkaorg-escape-{uuid.uuid4().hex}"
    found = jailed_json(
        f"""
        import json
        out = {{}}
        for path in ["/{marker}", "/usr/{marker}", "/usr/lib/{marker}", "/sandbox/tool.py",
                     "/sandbox/{marker}", "/dev/{marker}"]:
            try:
                with open(path, "w") as f:
                    f.write("x")
                out[path] = "written"
            except OSError as exc:
                out[path] = type(exc).__name__ + ": " + exc.strerror
        print(json.dumps(out))
        """
    )
    assert all(v != "written" for v in found.values()), found
    for host_path in (Path("/") / marker, Path("/usr") / marker, Path("/usr/lib") / marker):
        assert not host_path.exists()


def test_unshare_and_mount_are_refused() -> None:
    found = jailed_json(
        """
        import ctypes, json, os
        libc = ctypes.CDLL(None, use_errno=True)
        out = {}
        out["unshare_user"] = libc.unshare(0x10000000), ctypes.get_errno()
        out["unshare_ns"] = libc.unshare(0x00020000), ctypes.get_errno()
        out["mount"] = libc.mount(b"none", b"/tmp", b"tmpfs", 0, None), ctypes.get_errno()
        out["clone_newuser"] = libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0), ctypes.get_errno()
        print(json.dumps({k: f"{r}/{os.strerror(e)}" for k, (r, e) in out.items()}))
        """
    )
    assert set(found.values()) == {"-1/Operation not permitted"}, found


def test_ptrace_is_refused() -> None:
    found = jailed_json(
        """
        import ctypes, json, os, time
        libc = ctypes.CDLL(None, use_errno=True)
        child = os.fork()
        if child == 0:
            time.sleep(5)
            os._exit(0)
        attach = libc.ptrace(16, child, None, None), ctypes.get_errno()   # PTRACE_ATTACH
        traceme = libc.ptrace(0, 0, None, None), ctypes.get_errno()        # PTRACE_TRACEME
        os.kill(child, 9)
        print(json.dumps({"attach": f"{attach[0]}/{os.strerror(attach[1])}",
                          "traceme": f"{traceme[0]}/{os.strerror(traceme[1])}"}))
        """
    )
    assert set(found.values()) == {"-1/Operation not permitted"}, found


def test_processes_outside_the_jail_cannot_be_signalled() -> None:
    """Even a process of the same uid (nobody) outside the jail is out of reach: pid namespace."""
    neighbour = subprocess.Popen(["sleep", "30"], user=65534, group=65534)
    try:
        found = jailed_json(
            f"""
            import json, os
            out = {{}}
            for name, pid in [("test_process", {os.getpid()}), ("neighbour", {neighbour.pid})]:
                try:
                    os.kill(pid, 9)
                    out[name] = "signalled"
                except OSError as exc:
                    out[name] = type(exc).__name__
            try:
                os.kill(-1, 9)      # every process this uid may signal: only the jail's
                out["all"] = "sent"
            except OSError as exc:
                out["all"] = type(exc).__name__
            print(json.dumps(out))
            """
        )
        assert found["test_process"] != "signalled" and found["neighbour"] != "signalled", found
        assert neighbour.poll() is None, "a process outside the jail was killed"
    finally:
        neighbour.kill()
        neighbour.wait()


# --- the same jail through the CLI and through Temporal ------------------------------------


def test_cli_run_prints_the_structured_result(tmp_path: Path) -> None:
    tool = tmp_path / "double.py"
    tool.write_text("import json, sys\nprint(json.dumps({'y': json.load(sys.stdin)['x'] * 2}))\n")
    done = kafkaorg("sandbox", "run", str(tool), "--stdin", '{"x":1}', "--json")
    assert done.returncode == 0, done.stderr
    result = SandboxResult.model_validate_json(done.stdout)
    assert result.ok and json.loads(result.stdout) == {"y": 2}
    assert json.loads(done.stdout)["ok"] is True

    failing = tmp_path / "spin.py"
    failing.write_text("while True:\n    pass\n")
    done = kafkaorg("sandbox", "run", str(failing), "--wall-time", "1", "--json")
    assert done.returncode == 0, "a run that happened exits 0, whatever the program did"
    assert json.loads(done.stdout)["limit_hit"] == "wall_time"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["sandbox", "run", "/nonexistent/tool.py"], "no such file"),
        (["sandbox", "run", "{tool}", "--stdin", "{not json"], "--stdin: not JSON"),
        (["sandbox", "run", "{tool}", "--wall-time", "0"], "--wall-time"),
    ],
)
def test_cli_bad_input_is_exit_2_with_one_line(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    tool = tmp_path / "tool.py"
    tool.write_text("print(1)\n")
    done = kafkaorg(*(a.replace("{tool}", str(tool)) for a in args))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and needle in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_cli_check_reports_capabilities_and_a_trial_run() -> None:
    done = kafkaorg("sandbox", "check", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["error"] is None and report["trial"]["ok"] is True
    assert report["capabilities"]["memory"]["usable"] == host_capabilities().memory.usable


@workflow.defn(sandboxed=False)
class RunToolWorkflow:
    """A caller of ``run_code`` as a real workflow would call it."""

    @workflow.run
    async def run(self, request: SandboxRequest) -> SandboxResult:
        return await workflow.execute_activity_method(
            SandboxActivities.run_code,
            request,
            task_queue=workflow.info().task_queue,
            start_to_close_timeout=run_code_timeout(SandboxPolicy()),
            heartbeat_timeout=RUN_CODE_HEARTBEAT_TIMEOUT,
            retry_policy=RUN_CODE_RETRY,
        )


async def test_run_code_through_a_real_temporal_worker(stack: Settings) -> None:
    from workers.sandbox_worker import build_sandbox_worker

    client = await connect_temporal(stack)
    queue = f"sandbox-test-{uuid.uuid4().hex[:10]}"
    with ThreadPoolExecutor(max_workers=4) as executor:
        activity_worker = build_sandbox_worker(
            client, stack, executor, policy=POLICY, task_queue=queue, max_concurrent=4
        )
        workflow_worker = Worker(client, task_queue=queue, workflows=[RunToolWorkflow])
        async with activity_worker, workflow_worker:
            tool = "import json, sys\nprint(json.dumps({'n': len(json.load(sys.stdin))}))\n"
            ok = await client.execute_workflow(
                RunToolWorkflow.run,
                SandboxRequest(code=tool, stdin="[1, 2, 3]"),
                id=f"sandbox-test-{uuid.uuid4().hex}",
                task_queue=queue,
                execution_timeout=timedelta(seconds=60),
            )
            assert isinstance(ok, SandboxResult)
            assert ok.ok and parse_json_output(ok) == {"n": 3}

            # The request may tighten the worker's policy, never loosen it.
            spin = await client.execute_workflow(
                RunToolWorkflow.run,
                SandboxRequest(
                    code="import time\nwhile True:\n    time.sleep(0.1)\n",
                    policy=SandboxPolicy(wall_time_s=60, cpu_time_s=60),
                ),
                id=f"sandbox-test-{uuid.uuid4().hex}",
                task_queue=queue,
                execution_timeout=timedelta(seconds=60),
            )
            assert spin.limit_hit is LimitHit.WALL_TIME
            assert f"wall={POLICY.wall_time_s:g}s cpu={POLICY.cpu_time_s}s" in spin.sandbox
