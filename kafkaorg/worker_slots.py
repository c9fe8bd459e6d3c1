"""Worker ids: unique per worker process on a host, and the same after a restart.

A worker names its Kafka transactional producers after its id, so two live workers must
never share one (each would fence the other's producers), while a worker restarted after a
crash must take the crashed one's id (its producers then fence the zombie's open
transactions at once, instead of read-committed consumers waiting for them to time out).

Unless ``KAFKAORG_WORKER_ID`` says otherwise, a worker takes the lowest free *slot* N of its
host and is ``<hostname>-N``. A slot is free when no process holds an exclusive ``flock``
on ``<state_dir>/run/worker-slots/<hostname>-N.lock``. The kernel drops that lock when its
holder dies, however it dies, so a worker started after a crash finds the crashed one's
slot free again, and lower slots are always taken first. Only workers that share a state
dir see each other's slots: workers on one host with different state dirs that use the
same Kafka cluster need an explicit ``KAFKAORG_WORKER_ID`` each.

Bridges take slots the same way, in ``run/bridge-slots``, when static group membership is
on (``KAFKAORG_BRIDGE_STATIC_MEMBERSHIP``): a bridge's slot is its ``group.instance.id``,
so a bridge restarted after a crash gets the crashed one's partitions back the moment it
joins, instead of after the session timeout (``KAFKAORG_BRIDGE_INSTANCE_ID`` overrides it).
"""

from __future__ import annotations

import fcntl
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from kafkaorg.config import Settings


def slot_dir(state_dir: Path, kind: str = "worker") -> Path:
    """Where the slot lock files of the workers (or bridges) sharing ``state_dir`` live."""
    return state_dir / "run" / f"{kind}-slots"


@dataclass
class WorkerSlot:
    """A slot held through an open lock file; the slot is free again once the file is closed.

    The file is not inherited across ``exec`` (Python's default), so programs a worker
    starts do not keep its slot after it dies.
    """

    worker_id: str
    path: Path
    handle: TextIO

    def release(self) -> None:
        """Give the slot up (a process that exits gives it up anyway)."""
        self.handle.close()


def claim_worker_slot(lock_dir: Path, host: str | None = None) -> WorkerSlot:
    """Hold the lowest slot of ``host`` (this host) that nobody holds, until released.

    A lock belongs to one open file, not to a process, so two claims in one process get two
    slots as well. The holder's pid is written into the file for people looking at it; the
    lock, not the file's content or existence, is what counts.
    """
    host = host or socket.gethostname()
    lock_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    while True:
        path = lock_dir / f"{host}-{n}.lock"
        handle = path.open("a+")  # append: opening must not erase a holder's pid
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            n += 1
            continue
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return WorkerSlot(worker_id=f"{host}-{n}", path=path, handle=handle)


_held: dict[Path, WorkerSlot] = {}
"""This process's slot per lock dir: claimed once, held until the process exits."""


def process_worker_id(settings: Settings) -> str:
    """This process's worker id: ``settings.worker_id`` if set, else a slot's id.

    The slot is claimed on the first call and kept for the life of the process, so every
    later call (and every worker built in this process) answers the same.
    """
    if settings.worker_id:
        return settings.worker_id
    return _slot_held_for_life(slot_dir(settings.state_dir)).worker_id


def _slot_held_for_life(lock_dir: Path) -> WorkerSlot:
    if lock_dir not in _held:
        _held[lock_dir] = claim_worker_slot(lock_dir)
    return _held[lock_dir]


def process_bridge_id(settings: Settings) -> str:
    """This process's bridge id (its ``group.instance.id``): ``settings.bridge_instance_id``
    if set, else ``kafkaorg-bridge-<hostname>-<N>`` from a bridge slot held for life."""
    if settings.bridge_instance_id:
        return settings.bridge_instance_id
    slot = _slot_held_for_life(slot_dir(settings.state_dir, "bridge"))
    return f"kafkaorg-bridge-{slot.worker_id}"
