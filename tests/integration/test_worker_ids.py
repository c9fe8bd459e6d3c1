"""Two workers on one host get ids of their own; a worker restarted after a kill gets its old one.

Their ids name their Kafka transactional producers: shared, the two would fence each other;
changed by a restart, the crashed worker's open transactions would hold read-committed
consumers back until they time out (kafkaorg/worker_slots.py).
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from pathlib import Path

import pytest

from kafkaorg.config import Settings
from tests.support import Platform, ProcessHandle, echo_spec, task, unique_org

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


def _wait_for_line(worker: ProcessHandle, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in worker.log_path.read_text(errors="replace"):
        worker.ensure_alive()
        assert time.monotonic() < deadline, f"no {text!r} in {worker.log_path}"
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


async def test_two_workers_on_one_host_both_process_steps_and_neither_is_fenced(
    platform: Platform, tmp_path: Path
) -> None:
    """With shared ids the second worker's start would fence the first one's producers
    (its next transaction fails: "was fenced" in its log). Each step here has two outputs,
    so every step is a transaction."""
    from temporalio.api.enums.v1 import EventType

    from kafkaorg import client as service

    org = unique_org()
    spec = echo_spec(org, partitions=3)
    spec["topics"].append({"name": "copy", "partitions": 3})
    spec["agents"] = [
        {
            "name": f"echo-{i}",
            "kind": "echo",
            "subscribes": ["inbox"],
            "publishes": ["outbox", "copy"],
        }
        # Steps run eagerly on the worker that holds the agent's workflow, and each agent
        # lands on one of the two at random: with 8 agents all on one is a 1-in-128 event.
        for i in range(8)
    ]
    await platform.start_org(spec)
    platform.worker.stop()
    workers = [ProcessHandle("worker", tmp_path / name) for name in ("one", "two")]
    try:
        for worker in workers:
            worker.start()
        ids = [logged_ids(w, 1)[0] for w in workers]
        assert ids[0] != ids[1]
        for worker in workers:  # both poll before the first record is sent
            _wait_for_line(worker, "worker polling task queue")
        sent = [task(org, n, correlation_id=f"c{n}") for n in range(40)]
        for i in range(0, 40, 4):  # several batches, so steps land on both workers
            await platform.send(org, "inbox", sent[i : i + 4])
            await asyncio.sleep(0.3)
        out = await platform.collect(org, "outbox", 320, timeout=120, settle=2.0)
        assert len({c.record.id for c in out}) == 320, "every agent answered every record"
        identities: set[str] = set()
        for i in range(8):
            history = await service.agent_handle(platform.client, org, f"echo-{i}").fetch_history()
            identities |= {
                e.activity_task_started_event_attributes.identity
                for e in history.events
                if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
            }
        pids = {str(w.pid) for w in workers}
        assert {i.split("@")[0] for i in identities} >= pids, ("both workers ran steps", identities)
        for worker in workers:
            assert "was fenced" not in worker.log_path.read_text(errors="replace")
    finally:
        for worker in workers:
            worker.stop()
        platform.worker.start()
