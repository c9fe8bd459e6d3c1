"""What a jailed run may use, and what a run reports back.

Both are pydantic models because they cross process boundaries: the policy is
part of a Temporal activity input, the result is its output and the JSON that
``kafkaorg sandbox run --json`` prints.
"""

from __future__ import annotations

import math
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, computed_field


class LimitHit(StrEnum):
    """Which limit ended (or spoiled) a run; ``None`` on a result means none did."""

    WALL_TIME = "wall_time"
    CPU_TIME = "cpu_time"
    MEMORY = "memory"
    FILE_SIZE = "file_size"
    PROCESSES = "processes"
    OUTPUT = "output"
    SECCOMP = "seccomp"


class SandboxPolicy(BaseModel):
    """Limits of one jailed run.

    Defaults suit a small JSON tool: a fraction of a second of real work, a
    few MB of output at most. A worker holds one policy; a request may only
    tighten it (:meth:`tightened`), never loosen it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    wall_time_s: float = Field(default=5.0, gt=0, le=3600)
    """Real time from start to kill, enforced by the runner (nsjail's own limit is a backstop)."""
    cpu_time_s: int = Field(default=5, ge=1, le=3600)
    """RLIMIT_CPU of each process; the kernel SIGKILLs a process that uses it up."""
    memory_mb: int = Field(default=512, ge=64, le=65536)
    """RLIMIT_AS of each process; plus ``tmpfs_mb``, the memory cgroup cap where there is one."""
    file_size_mb: int = Field(default=16, ge=1, le=65536)
    """RLIMIT_FSIZE: the largest file a process may write."""
    open_files: int = Field(default=64, ge=16, le=65536)
    """RLIMIT_NOFILE."""
    processes: int = Field(default=32, ge=1, le=4096)
    """RLIMIT_NPROC, and the jail's cgroup pids cap where available."""
    tmpfs_mb: int = Field(default=16, ge=1, le=65536)
    """Size of the private, writable work dir (``/tmp``, also the cwd)."""
    stdout_max_bytes: int = Field(default=65_536, ge=0, le=64 * 1024 * 1024)
    stderr_max_bytes: int = Field(default=65_536, ge=0, le=64 * 1024 * 1024)
    stdin_max_bytes: int = Field(default=1_048_576, ge=0, le=64 * 1024 * 1024)
    """Larger input is refused before a jail starts (bulk data goes by reference)."""
    code_max_bytes: int = Field(default=1_048_576, ge=1, le=64 * 1024 * 1024)

    @property
    def nsjail_time_limit_s(self) -> int:
        """nsjail's ``--time_limit`` (whole seconds): a backstop one second past the runner's."""
        return math.ceil(self.wall_time_s) + 1

    @property
    def cgroup_memory_bytes(self) -> int:
        """The whole jail's memory: processes plus what they put on the tmpfs (charged too)."""
        return (self.memory_mb + self.tmpfs_mb) * 1024 * 1024

    def tightened(self, requested: SandboxPolicy | None) -> SandboxPolicy:
        """The stricter of this policy and ``requested``, field by field."""
        if requested is None:
            return self
        mine = self.model_dump()
        theirs = requested.model_dump()
        return SandboxPolicy(**{k: min(v, theirs[k]) for k, v in mine.items()})


class SandboxResult(BaseModel):
    """What happened in one jailed run. A limit hit is a result, not an error."""

    exit_code: int | None
    """The program's exit status; ``None`` when a signal ended it."""
    signal: int | None
    """The signal that ended the program, if one did (9 for every kill by a limit)."""
    duration_s: float
    """Wall time from starting nsjail to its exit (jail set-up included)."""
    cpu_s: float = 0.0
    """User + system CPU of the jail (nsjail and everything it reaped)."""
    stdout: str
    stderr: str
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    limit_hit: LimitHit | None = None
    sandbox: str
    """One line: the jail actually used (namespaces, binds, rlimits, cgroups, seccomp)."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        """Exit status 0 and no limit hit: the only run whose output a caller should trust."""
        return self.exit_code == 0 and self.limit_hit is None
