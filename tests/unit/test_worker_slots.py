"""Worker slots with real lock files and real flock, in this process and in a child."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kafkaorg import worker_slots
from kafkaorg.config import Settings
from kafkaorg.worker_slots import claim_worker_slot, process_worker_id, slot_dir

_HOLD = """
import sys, time
from pathlib import Path
from kafkaorg.worker_slots import claim_worker_slot
slot = claim_worker_slot(Path(sys.argv[1]), host="h")
print(slot.worker_id, flush=True)
time.sleep(60)
"""


def test_two_claims_get_different_slots_and_a_released_one_comes_back(tmp_path: Path) -> None:
    first = claim_worker_slot(tmp_path, host="h")
    second = claim_worker_slot(tmp_path, host="h")
    assert (first.worker_id, second.worker_id) == ("h-0", "h-1")

    first.release()
    again = claim_worker_slot(tmp_path, host="h")
    assert again.worker_id == "h-0"  # the lowest free slot, as a restarted worker finds it
    assert claim_worker_slot(tmp_path, host="h").worker_id == "h-2"


def test_hosts_have_slots_of_their_own(tmp_path: Path) -> None:
    assert claim_worker_slot(tmp_path, host="a").worker_id == "a-0"
    assert claim_worker_slot(tmp_path, host="b").worker_id == "b-0"


def test_the_lock_file_names_its_holder_and_keeps_it_when_others_look(tmp_path: Path) -> None:
    slot = claim_worker_slot(tmp_path, host="h")
    claim_worker_slot(tmp_path, host="h")  # opened h-0.lock on its way to h-1
    assert slot.path == tmp_path / "h-0.lock"
    assert slot.path.read_text() == f"{os.getpid()}\n"


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding slot h-0 of ``tmp_path``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "h-0"
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_a_killed_process_gives_its_slot_to_the_next_claim(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    assert claim_worker_slot(tmp_path, host="h").worker_id == "h-1"
    holder.kill()  # SIGKILL: no cleanup ran, the kernel dropped the lock
    holder.wait(timeout=10)
    assert claim_worker_slot(tmp_path, host="h").worker_id == "h-0"


def test_an_explicit_worker_id_wins(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, worker_id="blue")
    assert process_worker_id(settings) == "blue"
    assert not slot_dir(tmp_path).exists()  # no slot claimed


def test_the_process_keeps_the_slot_it_claimed_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_slots, "_held", {})
    settings = Settings(state_dir=tmp_path, worker_id=None)
    first = process_worker_id(settings)
    try:
        assert first.endswith("-0")
        assert process_worker_id(settings) == first
        # Someone else claiming now gets the next slot: ours is still held.
        assert claim_worker_slot(slot_dir(tmp_path)).worker_id.endswith("-1")
    finally:
        for slot in worker_slots._held.values():
            slot.release()


def test_bridges_take_slots_of_their_own_as_static_member_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bridge.service import consumer_config

    monkeypatch.setattr(worker_slots, "_held", {})
    settings = Settings(state_dir=tmp_path, bridge_static_membership=True)
    try:
        host = worker_slots.socket.gethostname()
        process_worker_id(settings)  # a worker in the same process and state dir
        config = consumer_config(settings)
        assert config["group.instance.id"] == f"kafkaorg-bridge-{host}-0", "its own slot, not 1"
        assert consumer_config(settings)["group.instance.id"] == config["group.instance.id"]
        assert (slot_dir(tmp_path, "bridge") / f"{host}-0.lock").exists()
    finally:
        for slot in worker_slots._held.values():
            slot.release()
    named = Settings(state_dir=tmp_path, bridge_static_membership=True, bridge_instance_id="b-7")
    assert consumer_config(named)["group.instance.id"] == "b-7"
    dynamic = consumer_config(Settings(state_dir=tmp_path, bridge_session_timeout_s=6))
    assert "group.instance.id" not in dynamic, "off by default: a dynamic member"
    assert (dynamic["session.timeout.ms"], dynamic["heartbeat.interval.ms"]) == (6000, 1200)
