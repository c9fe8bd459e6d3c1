"""Two workers on one host get ids of their own; a worker restarted after a kill gets its old one.

Their ids name their Kafka transactional producers: shared, the two would fence each other;
changed by a restart, the crashed worker's open transactions would hold read-committed
consumers back until they time out (kafkaorg/worker_slots.py).
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from kafkaorg.config import Settings
from tests.support import ProcessHandle

pytestmark = pytest.mark.integration

_ID_LINE = re.compile(r"worker id (\S+)")


def logged_ids(worker: ProcessHandle, count: int, timeout: float = 60) -> list[str]:
    """The ids the worker logged at its starts, once there are ``count`` of them."""
    deadline = time.monotonic() + timeout
    while True:
        worker.ensure_alive()
        ids = _ID_LINE.findall(worker.log_path.read_text(errors="replace"))
        if len(ids) >= count:
            return ids
        assert time.monotonic() < deadline, f"no 'worker id' line #{count} in {worker.log_path}"
        time.sleep(0.2)


def test_two_workers_on_one_host_get_different_ids_and_keep_them_across_a_kill(
    stack: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAFKAORG_WORKER_ID", raising=False)  # the default is under test
    first = ProcessHandle("worker", tmp_path / "first")
    second = ProcessHandle("worker", tmp_path / "second")
    try:
        first.start()
        second.start()
        [first_id] = logged_ids(first, 1)
        [second_id] = logged_ids(second, 1)
        assert first_id != second_id
        host = re.escape(socket.gethostname())
        assert re.fullmatch(rf"{host}-\d+", first_id), first_id
        assert re.fullmatch(rf"{host}-\d+", second_id), second_id

        second.restart_after_kill()  # SIGKILL: the kernel drops its slot's lock
        assert logged_ids(second, 2) == [second_id, second_id]
        first.ensure_alive()
    finally:
        first.stop()
        second.stop()
