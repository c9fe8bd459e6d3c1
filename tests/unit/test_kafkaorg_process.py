"""KafkaorgProcess with real child processes (a command the CLI refuses, so no stack is needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kafkaorg.devstack import KafkaorgProcess, ProcessExitedError


def _exited(process: KafkaorgProcess) -> int:
    assert process.process is not None
    return process.process.wait(timeout=60)


def test_a_process_that_exited_is_reported_with_its_log(tmp_path: Path) -> None:
    process = KafkaorgProcess("no-such command", tmp_path)
    process.start()
    assert _exited(process) != 0
    assert process.returncode != 0
    assert process.log_path == tmp_path / "no-such-command.log"
    with pytest.raises(ProcessExitedError) as caught:
        process.ensure_alive()
    message = str(caught.value)
    assert message.startswith("kafkaorg no-such command exited (")
    assert str(process.log_path) in message
    assert "starting: " in message  # the log's own header line is part of the quoted tail
    process.stop()  # already gone: nothing to do, no error


def test_start_fails_if_it_exits_within_the_start_check(tmp_path: Path) -> None:
    class Checked(KafkaorgProcess):
        start_check_s = 60.0  # returns as soon as it exits, long before this

    process = Checked("no-such-command", tmp_path)
    with pytest.raises(ProcessExitedError, match="no-such-command exited"):
        process.start()


def test_a_restart_appends_to_the_same_log(tmp_path: Path) -> None:
    process = KafkaorgProcess("no-such-command", tmp_path)
    process.start()
    first_pid = process.pid
    _exited(process)
    process.restart_after_kill()
    _exited(process)
    assert process.restarts == 1
    assert process.pid != first_pid
    assert process.log_path.read_text().count("starting: ") == 2


@pytest.mark.parametrize("detach", [True, False])
def test_detached_means_a_session_of_its_own(tmp_path: Path, detach: bool) -> None:
    process = KafkaorgProcess("no-such-command", tmp_path, detach=detach)
    process.start()
    try:
        own_session = os.getsid(process.pid) == process.pid
    finally:
        _exited(process)
    assert own_session is detach
