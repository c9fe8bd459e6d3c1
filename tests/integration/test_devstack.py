"""The local stack (``kafkaorg dev``): errors people see, and up/down on a stack of its own.

These tests never touch the shared stack on the default ports: each builds Settings with a
temporary state dir and free ports.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from confluent_kafka.admin import AdminClient

from kafkaorg.config import Settings
from kafkaorg.devstack import DevStack, StackError
from kafkaorg.devstack._processes import PidFile, is_alive
from kafkaorg.devstack._workers import PlatformProcess


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _settings(state_dir: Path) -> Settings:
    ports = _free_ports(11)
    kafka, controller, temporal, ui, pg, console, prometheus, phoenix, grpc, llm, sasl = ports
    return Settings(
        kafka_bootstrap=f"127.0.0.1:{kafka}",
        kafka_controller_port=controller,
        kafka_dev_sasl_port=sasl,
        temporal_address=f"127.0.0.1:{temporal}",
        temporal_ui_port=ui,
        database_url=f"postgresql+psycopg://kafkaorg:kafkaorg@127.0.0.1:{pg}/kafkaorg",
        state_dir=state_dir,
        console_port=console,
        prometheus_port=prometheus,
        phoenix_port=phoenix,
        phoenix_grpc_port=grpc,
        llm_local_port=llm,
    )


def test_status_of_a_down_stack_says_down(tmp_path: Path) -> None:
    stack = DevStack(_settings(tmp_path))
    statuses = {s.name: s for s in stack.status()}
    assert set(statuses) == {
        "kafka",
        "temporal",
        "postgres",
        "prometheus",
        "console",
        "phoenix",
        "local-model",
        "worker",
        "bridge",
        "sandbox-worker",
    }
    assert not any(s.healthy for s in statuses.values())
    # Installed or not (scripts/install.sh --llm), it says what to run.
    assert statuses["local-model"].detail in (
        "down (kafkaorg dev up --llm)",
        "not installed (kafkaorg dev install --llm)",
    )
    assert all(s.pid is None for s in statuses.values())
    assert "Web UI http://127.0.0.1:" in statuses["temporal"].detail
    assert stack.is_up() is False
    assert stack.down() == []  # nothing of ours runs: no error


def test_port_taken_by_something_else_is_a_clear_stack_error(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    port = int(settings.kafka_bootstrap.rsplit(":", 1)[1])
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(StackError) as caught:
            DevStack(settings).up()
    message = str(caught.value)
    assert f"port {port} for Kafka is taken by pid {os.getpid()}" in message
    assert "KAFKAORG_KAFKA_BOOTSTRAP" in message
    assert "\n" not in message
    # Nothing was started for the other services either: ports are checked before launching.
    assert not list((tmp_path / "run").glob("*.pid"))


def test_pid_file_does_not_claim_a_recycled_pid(tmp_path: Path) -> None:
    pid_file = PidFile(tmp_path, "kafka", "kafka.Kafka")
    pid_file.write(os.getpid())  # alive, but its command line is pytest's, not Kafka's
    assert pid_file.read() is None
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as proc:
        try:
            assert PidFile(tmp_path, "sleeper", "time.sleep(30)").read() is None  # no file
            PidFile(tmp_path, "sleeper", "time.sleep(30)").write(proc.pid)
            assert PidFile(tmp_path, "sleeper", "time.sleep(30)").read() == proc.pid
        finally:
            proc.kill()


def test_a_process_that_dies_at_start_points_at_its_log(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    stack = DevStack(settings)
    broken = PlatformProcess(settings, "no-such-command")
    broken.timeout_s = 30.0  # the CLI's imports alone take ~3 s on a busy 2-core machine
    broken.launch()
    with pytest.raises(StackError, match=r"exited while starting.*see .*no-such-command\.log"):
        stack._wait_survive([broken])


@pytest.fixture
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    state_dir = tmp_path_factory.mktemp("devstack")
    stack = DevStack(_settings(state_dir))
    try:
        yield stack
    finally:
        stack.down()
        # A fallback PostgreSQL dir (postgres cannot reach pytest's tmp) is per state dir.
        if stack.postgres.data_dir == stack.postgres.fallback_data_dir:
            shutil.rmtree(stack.postgres.fallback_data_dir.parent, ignore_errors=True)


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_up_is_idempotent_and_down_stops_everything(own_stack: DevStack) -> None:
    first = {s.name: s for s in own_stack.up()}
    for name in ("kafka", "temporal", "postgres", "prometheus", "console", "phoenix"):
        assert first[name].healthy, first[name]
        assert first[name].pid is not None
    assert own_stack.is_up()

    # Real clients of each service.
    admin = AdminClient({"bootstrap.servers": own_stack.settings.kafka_bootstrap})
    assert admin.list_topics(timeout=10).brokers
    conninfo = own_stack.settings.database_url.replace("+psycopg", "")
    with psycopg.connect(conninfo) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("kafkaorg",)

    # The console answers and reads this stack's PostgreSQL.
    with urllib.request.urlopen(f"{own_stack.settings.console_url}/", timeout=10) as page:
        assert b"No org yet" in page.read()

    again = {s.name: s for s in own_stack.up()}
    for name in ("kafka", "temporal", "postgres", "prometheus", "console", "phoenix"):
        assert again[name].pid == first[name].pid  # reused, not restarted

    stopped = own_stack.down()
    assert set(stopped) == {"kafka", "temporal", "postgres", "prometheus", "console", "phoenix"}
    assert not any(s.healthy for s in own_stack.status())
    for name in ("kafka", "temporal", "postgres", "prometheus", "console", "phoenix"):
        pid = first[name].pid
        assert pid is not None
        assert not is_alive(pid)
