"""Metrics endpoints: served, announced in file_sd format, found again, gone at exit."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from kafkaorg.config import Settings
from kafkaorg.metrics import (
    DLQ_RECORDS,
    metric_value,
    metrics_dir,
    metrics_endpoints,
    parse_metrics,
    read_metrics,
    serve_metrics,
    temporal_runtime,
)


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(state_dir=tmp_path, **kw)  # type: ignore[arg-type]


def test_serve_metrics_registers_a_file_sd_target_and_removes_it_on_close(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    server = serve_metrics(settings, "unit-test")
    assert server is not None
    try:
        assert server.path.parent == metrics_dir(settings)
        assert server.path.name.startswith("unit-test-") and server.path.suffix == ".json"
        (entry,) = json.loads(server.path.read_text())
        (target,) = entry["targets"]
        host, port = target.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0  # port 0 asked: a real one announced
        pid = int(entry["labels"]["pid"])
        assert entry["labels"]["process"] == "unit-test"

        (found,) = metrics_endpoints(settings)
        assert (found.process, found.pid) == ("unit-test", pid)
        assert found.url == server.url == f"http://{target}/metrics"

        reason = f"unit-{time.monotonic_ns()}"
        DLQ_RECORDS.labels("unit-org", reason).inc(3)
        samples = read_metrics(found.url)
        assert (
            metric_value(samples, "kafkaorg_dlq_records_total", org="unit-org", reason=reason) == 3
        )
    finally:
        server.close()
    assert not server.path.exists()
    assert metrics_endpoints(settings) == []


def test_metrics_off_serves_nothing(tmp_path: Path) -> None:
    settings = _settings(tmp_path, metrics_enabled=False)
    assert serve_metrics(settings, "unit-test") is None
    assert temporal_runtime(settings, "unit-test") == (None, None)
    assert metrics_endpoints(settings) == []


def test_files_of_dead_processes_are_skipped_and_removed(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = metrics_dir(settings)
    folder.mkdir(parents=True)
    stale = folder / f"worker-{dead.pid}.json"
    stale.write_text(
        json.dumps(
            [{"targets": ["127.0.0.1:1"], "labels": {"process": "worker", "pid": str(dead.pid)}}]
        )
    )
    assert metrics_endpoints(settings) == []
    assert not stale.exists()


def test_a_clean_exit_removes_the_registration_a_kill_leaves_it(tmp_path: Path) -> None:
    """``atexit`` removes the file of a process that exits normally; a SIGKILLed one's file
    stays until a reader sees its pid is gone."""
    program = textwrap.dedent(
        f"""
        import sys, time
        from kafkaorg.config import Settings
        from kafkaorg.metrics import serve_metrics
        serve_metrics(Settings(state_dir={str(tmp_path)!r}), "child")
        print("up", flush=True)
        if sys.argv[1] == "wait":
            time.sleep(60)
        """
    )
    settings = _settings(tmp_path)
    clean = subprocess.run([sys.executable, "-c", program, "exit"], capture_output=True, text=True)
    assert clean.stdout.strip() == "up", clean.stderr
    assert list(metrics_dir(settings).glob("*.json")) == []

    with subprocess.Popen(
        [sys.executable, "-c", program, "wait"], stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None and child.stdout.readline().strip() == "up"
        (endpoint,) = metrics_endpoints(settings)
        assert endpoint.pid == child.pid
        assert read_metrics(endpoint.url)  # a live endpoint with the process's samples
        child.kill()
        child.wait()
    assert list(metrics_dir(settings).glob("*.json"))  # a kill runs no atexit
    assert metrics_endpoints(settings) == []
    assert list(metrics_dir(settings).glob("*.json")) == []


def test_temporal_sdk_runtime_is_announced_as_its_own_endpoint(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    runtime, sdk = temporal_runtime(settings, "unit-test")
    assert runtime is not None and sdk is not None
    try:
        (endpoint,) = metrics_endpoints(settings)
        assert endpoint.process == "unit-test-temporal-sdk"
        assert endpoint.url == sdk.url
        read_metrics(endpoint.url)  # the SDK's exporter answers (empty until a client runs)
    finally:
        sdk.close()
    assert metrics_endpoints(settings) == []


def test_parse_metrics_sums_matching_samples() -> None:
    text = textwrap.dedent(
        """
        # TYPE kafkaorg_bridge_signals_total counter
        kafkaorg_bridge_signals_total{org="a",topic="in",agent="x"} 2.0
        kafkaorg_bridge_signals_total{org="a",topic="in",agent="y"} 3.0
        kafkaorg_bridge_signals_total{org="b",topic="in",agent="x"} 7.0
        """
    )
    samples = parse_metrics(text)
    assert metric_value(samples, "kafkaorg_bridge_signals_total", org="a") == 5
    assert metric_value(samples, "kafkaorg_bridge_signals_total", org="a", agent="y") == 3
    assert metric_value(samples, "kafkaorg_bridge_signals_total", org="c") == 0
