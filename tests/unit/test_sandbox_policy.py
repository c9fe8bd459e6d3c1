"""The sandbox's pure parts: policy, nsjail argv, nsjail log parsing, limit classification."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from pydantic import ValidationError

from kafkaorg.sandbox import LimitHit, SandboxPolicy, SandboxResult, ToolOutputError
from kafkaorg.sandbox._nsjail import (
    NOBODY,
    SECCOMP_POLICY,
    CgroupLimits,
    JailPlan,
    build_argv,
    describe,
    readable_by_nobody,
)
from kafkaorg.sandbox._runner import (
    JailLog,
    _Capped,
    _Stderr,
    classify_limit,
    parse_json_output,
    parse_nsjail_log,
)

PLAN = JailPlan(nsjail=Path("/opt/nsjail"), interpreter=Path("/usr/bin/python3"))
CG_PLAN = JailPlan(
    nsjail=Path("/opt/nsjail"),
    interpreter=Path("/usr/bin/python3"),
    cgroups=CgroupLimits(
        memory_mount="/sys/fs/cgroup/memory",
        memory_parent="NSJAIL",
        pids_mount="/sys/fs/cgroup/pids",
        pids_parent="NSJAIL",
    ),
)


def argv_for(
    policy: SandboxPolicy, plan: JailPlan = PLAN, memory_parent: str | None = None
) -> list[str]:
    return build_argv(
        policy,
        plan,
        code_path=Path("/tmp/kafkaorg-sandbox-x/tool.py"),
        log_path=Path("/tmp/kafkaorg-sandbox-x/nsjail.log"),
        memory_parent=memory_parent,
    )


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def options(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == name]


def test_default_policy_is_the_documented_one() -> None:
    p = SandboxPolicy()
    assert (p.wall_time_s, p.cpu_time_s, p.memory_mb, p.file_size_mb) == (5, 5, 512, 16)
    assert (p.open_files, p.processes, p.stdout_max_bytes, p.stderr_max_bytes) == (
        64,
        32,
        65536,
        65536,
    )


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(ValidationError):
        SandboxPolicy(wall_time_s=0)
    with pytest.raises(ValidationError):
        SandboxPolicy.model_validate({"processes": 0})
    with pytest.raises(ValidationError):
        SandboxPolicy.model_validate({"network": True})  # unknown fields are errors, not ignored


def test_a_request_can_only_tighten_the_policy() -> None:
    worker = SandboxPolicy(wall_time_s=5, memory_mb=512)
    asked = SandboxPolicy(wall_time_s=60, memory_mb=128, processes=4)
    got = worker.tightened(asked)
    assert got.wall_time_s == 5 and got.memory_mb == 128 and got.processes == 4
    assert worker.tightened(None) is worker


def test_argv_is_a_fresh_unprivileged_jail_with_every_limit() -> None:
    policy = SandboxPolicy(
        wall_time_s=2.5, cpu_time_s=3, memory_mb=256, file_size_mb=8, open_files=32, processes=7
    )
    argv = argv_for(policy)
    assert argv[0] == "/opt/nsjail"
    assert option(argv, "--mode") == "o"
    assert option(argv, "--user") == f"{NOBODY}:{NOBODY}:1"
    assert option(argv, "--group") == f"{NOBODY}:{NOBODY}:1"
    assert option(argv, "--time_limit") == "4"  # ceil(2.5) + 1: a backstop behind the runner's
    assert option(argv, "--rlimit_cpu") == "3"
    assert option(argv, "--rlimit_as") == "256"
    assert option(argv, "--rlimit_fsize") == "8"
    assert option(argv, "--rlimit_nofile") == "32"
    assert option(argv, "--rlimit_nproc") == "7"
    assert "--disable_proc" in argv and "--iface_no_lo" in argv
    assert "--disable_clone_newnet" not in argv and "-N" not in argv  # network namespace stays
    assert option(argv, "--log") == "/tmp/kafkaorg-sandbox-x/nsjail.log"
    assert option(argv, "--mount") == f"none:/tmp:tmpfs:size={16 * 1024 * 1024}"
    assert option(argv, "--cwd") == "/tmp"
    assert option(argv, "--seccomp_string") == SECCOMP_POLICY
    assert argv[argv.index("--") + 1 :] == [
        "/usr/bin/python3",
        "-I",
        "-B",
        "-X",
        "utf8",
        "/sandbox/tool.py",
    ]


def test_argv_binds_only_system_dirs_and_the_code_read_only() -> None:
    argv = argv_for(SandboxPolicy())
    ro = options(argv, "--bindmount_ro")
    assert "/tmp/kafkaorg-sandbox-x/tool.py:/sandbox/tool.py" in ro
    assert set(options(argv, "--bindmount")) <= {"/dev/null", "/dev/zero", "/dev/urandom"}
    mounted = ro + [s.split(":")[1] for s in options(argv, "--symlink")]
    assert "/usr" in mounted
    assert not any(p.startswith(("/etc", "/root", "/home", "/work", "/var")) for p in mounted)


def test_seccomp_policy_refuses_escape_hatches() -> None:
    for name in ("ptrace", "mount", "umount", "unshare", "setns", "bpf", "keyctl"):
        assert f" {name}," in SECCOMP_POLICY or f"{{ {name}," in SECCOMP_POLICY
    assert "umount2" not in SECCOMP_POLICY  # kafel does not know it
    assert SECCOMP_POLICY.endswith("DEFAULT ALLOW")


def test_cgroup_flags_only_where_the_machine_offers_them() -> None:
    plain = argv_for(SandboxPolicy(), PLAN, memory_parent="NSJAIL/run")
    assert not any(a.startswith("--cgroup") for a in plain)
    policy = SandboxPolicy(memory_mb=256, tmpfs_mb=16, processes=9)
    with_cg = argv_for(policy, CG_PLAN, memory_parent="NSJAIL/kafkaorg-1")
    assert option(with_cg, "--cgroup_mem_parent") == "NSJAIL/kafkaorg-1"
    assert int(option(with_cg, "--cgroup_mem_max")) > policy.cgroup_memory_bytes
    assert option(with_cg, "--cgroup_pids_max") == "9"
    assert option(with_cg, "--cgroup_pids_parent") == "NSJAIL"
    no_mem = argv_for(policy, CG_PLAN, memory_parent=None)
    assert "--cgroup_mem_max" not in no_mem and "--cgroup_pids_max" in no_mem
    assert "memory=272MB" in describe(policy, CG_PLAN, memory_cgroup=True)
    assert "no cgroup limits" in describe(policy, PLAN, memory_cgroup=False)


def test_readable_by_nobody(tmp_path: Path) -> None:
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    (hidden / "f").write_text("x")
    assert not readable_by_nobody(hidden / "f")
    assert not readable_by_nobody(tmp_path / "missing")
    assert readable_by_nobody(Path("/usr/bin/env"))


LOG_OK = """\
[I][2026-11-24T07:37:24+0000] Mode: STANDALONE_ONCE
[I][2026-11-24T07:37:24+0000] Executing '/usr/bin/python3' for '[STANDALONE MODE]'
[I][2026-11-24T07:37:24+0000] pid=21175 ([STANDALONE MODE]) exited with status: 3, (PIDs left: 0)
"""
LOG_TIME = """\
[I][2026-11-24T07:37:26+0000] Executing '/usr/bin/python3' for '[STANDALONE MODE]'
[I][2026-11-24T07:37:29+0000] pid=21208 run time >= time limit (3 >= 3) ([STANDALONE MODE]). Killing it
[I][2026-11-24T07:37:29+0000] pid=21208 ([STANDALONE MODE]) terminated with signal: SIGKILL (9), (PIDs left: 0)
"""  # noqa: E501
LOG_FAILED = """\
[I][2026-11-24T07:41:58+0000] Executing '/root/python3' for '[STANDALONE MODE]'
[E][2026-11-24T07:41:58+0000][1] newProc():232 execve('/root/python3') failed: No such file or directory
[F][2026-11-24T07:41:58+0000][1] runChild():506 Launching child process failed
[E][2026-11-24T07:41:58+0000][23917] standaloneMode():274 Couldn't launch the child process
[I][2026-11-24T07:41:58+0000] pid=23918 ([STANDALONE MODE]) terminated with signal: SIGKILL (9), (PIDs left: 0)
"""  # noqa: E501


def test_nsjail_log_parsing() -> None:
    ok = parse_nsjail_log(LOG_OK)
    assert ok.launched and ok.exit_code == 3 and ok.signal is None and not ok.time_limit
    timed = parse_nsjail_log(LOG_TIME)
    assert timed.launched and timed.signal == 9 and timed.time_limit
    failed = parse_nsjail_log(LOG_FAILED)
    assert not failed.launched
    assert failed.errors[0] == "execve('/root/python3') failed: No such file or directory"
    assert not parse_nsjail_log("").launched


def classify(**kw: object) -> LimitHit | None:
    args: dict[str, object] = {
        "killed_for": None,
        "log": JailLog(True, None, None, False, ()),
        "exit_code": 1,
        "signal_number": None,
        "cpu_s": 0.1,
        "policy": SandboxPolicy(cpu_time_s=2),
        "oom_kills": 0,
        "stderr": "",
    }
    args.update(kw)
    return classify_limit(**args)  # type: ignore[arg-type]


def test_limit_classification() -> None:
    assert classify(exit_code=0) is None
    assert classify(stderr="ValueError: nope") is None
    assert classify(killed_for=LimitHit.OUTPUT) is LimitHit.OUTPUT
    assert classify(log=JailLog(True, None, 9, True, ())) is LimitHit.WALL_TIME
    assert classify(signal_number=signal.SIGKILL, cpu_s=1.95) is LimitHit.CPU_TIME
    assert classify(signal_number=signal.SIGKILL, cpu_s=0.2) is None
    assert classify(exit_code=0, oom_kills=1) is LimitHit.MEMORY
    assert classify(stderr="Traceback ...\nMemoryError\n") is LimitHit.MEMORY
    assert classify(stderr="OSError: [Errno 27] File too large") is LimitHit.FILE_SIZE
    assert classify(stderr="OSError: [Errno 28] No space left on device") is LimitHit.FILE_SIZE
    assert (
        classify(stderr="BlockingIOError: [Errno 11] Resource temporarily unavailable")
        is LimitHit.PROCESSES
    )
    assert classify(signal_number=signal.SIGSYS) is LimitHit.SECCOMP
    assert classify(exit_code=0, stderr="MemoryError") is None  # a tool that coped is fine


def test_capped_keeps_the_head_and_counts_the_rest() -> None:
    cap = _Capped(10)
    cap.add(b"0123456")
    cap.add(b"789abc")
    assert bytes(cap.data) == b"0123456789" and cap.total == 13 and cap.truncated


def test_stderr_drops_nsjails_linker_noise_only_at_the_start() -> None:
    err = _Stderr(1000)
    noise = (
        b"/x/nsjail: /lib/x86_64-linux-gnu/libnl-3.so.200: no version information available "
        b"(required by /x/nsjail)\n"
    )
    err.add(noise[:30])
    err.add(noise[30:] + noise + b"Traceback\n" + noise)
    err.flush()
    assert bytes(err.data) == b"Traceback\n" + noise


def result(**kw: object) -> SandboxResult:
    fields: dict[str, object] = {
        "exit_code": 0,
        "signal": None,
        "duration_s": 0.1,
        "stdout": '{"a": [1, 2]}\n',
        "stderr": "",
        "sandbox": "test",
    }
    fields.update(kw)
    return SandboxResult.model_validate(fields)


def test_parse_json_output() -> None:
    assert parse_json_output(result()) == {"a": [1, 2]}
    with pytest.raises(ToolOutputError, match="no valid JSON"):
        parse_json_output(result(stdout="hello\n"))
    with pytest.raises(ToolOutputError, match="truncated"):
        parse_json_output(result(stdout='{"a": ', stdout_truncated=True))
    with pytest.raises(ToolOutputError, match="limit wall_time"):
        parse_json_output(result(exit_code=None, signal=9, limit_hit="wall_time"))
    with pytest.raises(ToolOutputError, match=r"exit status 2\): ValueError: boom"):
        parse_json_output(result(exit_code=2, stderr="Traceback\nValueError: boom\n"))


def test_result_json_carries_ok() -> None:
    dumped = result(exit_code=1).model_dump(mode="json")
    assert dumped["ok"] is False
    assert SandboxResult.model_validate(dumped).exit_code == 1
    assert result().ok and not result(limit_hit="output").ok


def test_a_program_gets_the_tools_jail_plus_its_mounts_and_env() -> None:
    argv = build_argv(
        SandboxPolicy(),
        PLAN,
        log_path=Path("/tmp/run/nsjail.log"),
        program=["/usr/bin/python3", "/opt/notes/server.py"],
        mounts=["/opt/notes", "/tmp/libs"],
        env={"PYTHONPATH": "/tmp/libs"},
    )
    assert argv[argv.index("--") + 1 :] == ["/usr/bin/python3", "/opt/notes/server.py"]
    assert "/sandbox/tool.py" not in " ".join(argv), "no tool code is bound"
    binds = options(argv, "--bindmount_ro")
    assert binds[-2:] == ["/opt/notes", "/tmp/libs"]
    # The mounts come after the /tmp tmpfs, so one under /tmp is not hidden by it.
    assert argv.index("/tmp/libs") > argv.index("--mount")
    assert options(argv, "--env")[-1] == "PYTHONPATH=/tmp/libs"
    # Everything else about the jail is a tool's.
    tool = argv_for(SandboxPolicy())
    assert "--iface_no_lo" in argv and "--disable_proc" in argv
    for flag in ("--seccomp_string", "--rlimit_as", "--rlimit_cpu", "--user", "--time_limit"):
        assert option(argv, flag) == option(tool, flag)


def test_build_argv_takes_code_or_a_program_not_both() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        build_argv(SandboxPolicy(), PLAN, log_path=Path("/tmp/l"))


def test_a_programs_command_is_found_where_the_jail_can_see_it(tmp_path: Path) -> None:
    from kafkaorg.sandbox import SandboxInputError
    from kafkaorg.sandbox._program import resolve_command

    plan = JailPlan(nsjail=Path("/opt/nsjail"), interpreter=Path("/usr/bin/python3"))
    assert resolve_command(["python3", "-V"], plan, [], {}) == ["/usr/bin/python3", "-V"]
    with pytest.raises(SandboxInputError, match="'no-such-server' not found in the sandbox"):
        resolve_command(["no-such-server"], plan, [], {})
    with pytest.raises(SandboxInputError, match="absolute path or a bare name"):
        resolve_command(["bin/server"], plan, [], {})
    # A program outside /usr, /lib, /bin and the mounts is not in the jail.
    program = tmp_path / "server"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    with pytest.raises(SandboxInputError, match="not found in the sandbox"):
        resolve_command([str(program)], plan, [], {})
