"""Prometheus metrics of the platform's long-running processes, and where to find them.

Every process (``kafkaorg worker``, ``kafkaorg sandbox worker``, ``kafkaorg bridge``)
serves its own registry over HTTP (:func:`serve_metrics`); Temporal's SDK metrics come
from the SDK's runtime telemetry on a port of their own (:func:`temporal_runtime`).
Ports default to free ones, so any number of workers share a host; each endpoint is
announced by a file ``<state_dir>/run/metrics/<process>-<pid>.json`` in Prometheus
``file_sd`` format, which a Prometheus server's ``file_sd_configs`` reads as is and
:func:`metrics_endpoints` (``kafkaorg dev status``, the console) reads too.

The metric objects live here so every name is spelled once. They are recorded where
the events happen: the bridge (records in, signals, DLQ of poison, lag, inbox sizes) and
the activities (records out, steps, DLQ of failed work, sandbox runs, model calls), never
in workflow code (a replayed workflow would count its history again). Activities run
in the worker processes, so their counters live there: a counter is per process and
starts at zero when the process does (Prometheus's ``rate`` copes with that).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import socket
import time
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from threading import Thread
from typing import TYPE_CHECKING, Any

import prometheus_client
from prometheus_client import Counter, Gauge, Histogram, start_http_server
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from pydantic import BaseModel

from kafkaorg.config import Settings

if TYPE_CHECKING:
    from temporalio.runtime import Runtime

log = logging.getLogger(__name__)

# ``*_created`` series double the exposition and say nothing a restart does not.
prometheus_client.disable_created_metrics()

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_SLOW_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)

# -- bridge (kafkaorg bridge) -------------------------------------------------------------------

BRIDGE_RECORDS = Counter(
    "kafkaorg_bridge_records_total",
    "Records the bridge consumed and accepted for delivery (poison excluded).",
    ["org", "topic"],
)
BRIDGE_SIGNALS = Counter(
    "kafkaorg_bridge_signals_total",
    "Records delivered to an agent: one per record per subscribed agent (the topic→agent edge).",
    ["org", "topic", "agent"],
)
BRIDGE_SIGNAL_ERRORS = Counter(
    "kafkaorg_bridge_signal_errors_total",
    "Signal calls Temporal did not accept (the batch is retried until it does).",
    ["org", "agent"],
)
BRIDGE_BATCH_SIZE = Histogram(
    "kafkaorg_bridge_batch_size",
    "Kafka messages per poll batch the bridge handled.",
    buckets=_BATCH_BUCKETS,
)
BRIDGE_SIGNAL_SECONDS = Histogram(
    "kafkaorg_bridge_signal_seconds",
    "Latency of one signal call (one agent's chunk of a batch), accepted or not.",
    buckets=_LATENCY_BUCKETS,
)
BRIDGE_LAG = Gauge(
    "kafkaorg_bridge_lag",
    "Records in a partition past the bridge's committed offset (high watermark from the "
    "consumer's last fetch).",
    ["org", "topic", "partition"],
)
AGENT_INBOX_RECORDS = Gauge(
    "kafkaorg_agent_inbox_records",
    "Records waiting in an agent's inbox, from the bridge's last status query of it.",
    ["org", "agent"],
)
AGENT_INBOX_BYTES = Gauge(
    "kafkaorg_agent_inbox_bytes",
    "Bytes of the records waiting in an agent's inbox, from the bridge's last status query.",
    ["org", "agent"],
)

# -- agents (activities in kafkaorg worker) -----------------------------------------------------

RECORDS_PRODUCED = Counter(
    "kafkaorg_records_produced_total",
    "Records an agent's steps wrote to a topic, counted once written (the agent→topic edge).",
    ["org", "topic", "agent"],
)
DLQ_RECORDS = Counter(
    "kafkaorg_dlq_records_total",
    "Records written to a DLQ, by reason (org 'kafkaorg' for the platform's DLQ).",
    ["org", "reason"],
)
AGENT_STEP_SECONDS = Histogram(
    "kafkaorg_agent_step_seconds",
    "Duration of one step activity (an inbox batch turned into records, produced).",
    ["org", "agent", "kind"],
    buckets=_LATENCY_BUCKETS,
)
AGENT_STEPS = Counter(
    "kafkaorg_agent_steps_total",
    "Step activities by outcome: ok, failed (for good), error (retried).",
    ["org", "agent", "kind", "outcome"],
)

# -- sandbox (kafkaorg sandbox worker) ----------------------------------------------------------

SANDBOX_RUNS = Counter(
    "kafkaorg_sandbox_runs_total",
    "Jailed runs by outcome (ok, exit-nonzero, limit, input-error, unavailable) and the "
    "limit that was hit ('none' if none).",
    ["outcome", "limit"],
)
SANDBOX_RUN_SECONDS = Histogram(
    "kafkaorg_sandbox_run_seconds",
    "Wall time of one jailed run, jail set-up included.",
    ["outcome"],
    buckets=_SLOW_BUCKETS,
)

# -- model calls (llm agents, kafkaorg worker) --------------------------------------------------

LLM_CALLS = Counter(
    "kafkaorg_llm_calls_total",
    "Model calls of llm agents by outcome (ok, or the error's type).",
    ["org", "agent", "outcome"],
)
LLM_TOKENS = Counter(
    "kafkaorg_llm_tokens_total",
    "Tokens the model endpoint reported, kind prompt or completion.",
    ["org", "agent", "kind"],
)
LLM_CALL_SECONDS = Histogram(
    "kafkaorg_llm_call_seconds",
    "Latency of one model call (the endpoint client's own retries included).",
    ["org", "agent"],
    buckets=_SLOW_BUCKETS,
)
LLM_CALLS_WAITING = Gauge(
    "kafkaorg_llm_calls_waiting",
    "Model calls waiting for a place under the org's limit (KAFKAORG_LLM_ORG_CONCURRENCY).",
    ["org"],
)

MCP_CALLS = Counter(
    "kafkaorg_mcp_calls_total",
    "MCP tool calls of llm agents per server, by outcome (ok, tool-error, invalid-arguments, "
    "unreachable, protocol-error, error).",
    ["server", "outcome"],
)


# -- console ----------------------------------------------------------------------------------

CONSOLE_LIVE_VIEWS = Gauge(
    "kafkaorg_console_live_views",
    "Live record views open in browsers.",
    ["org"],
)
CONSOLE_STREAMED_RECORDS = Counter(
    "kafkaorg_console_streamed_records_total",
    "Records sent to browsers' live views (after filters; skipped ones not counted).",
    ["org"],
)
CONSOLE_SKIPPED_RECORDS = Counter(
    "kafkaorg_console_skipped_records_total",
    "Matching records a live view left out to stay within its batch bound.",
    ["org"],
)


@contextlib.contextmanager
def timed_step(org: str, agent: str, kind: str) -> Iterator[None]:
    """Observe a step activity's duration and count it by outcome.

    A non-retryable ``ApplicationError`` is ``failed`` (the workflow dead-letters the
    batch); any other exception is ``error`` (Temporal retries the activity).
    """
    from temporalio.exceptions import ApplicationError

    started = time.perf_counter()
    outcome = "ok"
    try:
        yield
    except ApplicationError as exc:
        outcome = "failed" if exc.non_retryable else "error"
        raise
    except BaseException:
        outcome = "error"
        raise
    finally:
        AGENT_STEP_SECONDS.labels(org, agent, kind).observe(time.perf_counter() - started)
        AGENT_STEPS.labels(org, agent, kind, outcome).inc()


def count_produced(org: str, counts: Iterable[tuple[tuple[str, str], int]]) -> None:
    """Add ``((topic, agent), n)`` pairs to ``kafkaorg_records_produced_total`` of ``org``."""
    for (topic, agent), n in counts:
        RECORDS_PRODUCED.labels(org, topic, agent).inc(n)


# -- endpoints ----------------------------------------------------------------------------------


class MetricsEndpoint(BaseModel):
    """One process's metrics endpoint, as its registration file announces it."""

    process: str
    pid: int
    url: str


def metrics_dir(settings: Settings) -> Path:
    return settings.state_dir / "run" / "metrics"


def _target_host(host: str) -> str:
    """The address a scraper on this host uses for a server bound to ``host``."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def _register(settings: Settings, process: str, host: str, port: int) -> Path:
    """Write ``<process>-<pid>.json`` (file_sd format), atomically; returns its path."""
    folder = metrics_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    path = folder / f"{process}-{pid}.json"
    target = [
        {
            "targets": [f"{_target_host(host)}:{port}"],
            "labels": {"process": process, "pid": str(pid)},
        }
    ]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(target))
    tmp.replace(path)
    return path


class MetricsServer:
    """A running endpoint and its registration file; ``close`` (or a clean exit) removes both."""

    def __init__(self, path: Path, url: str, stop: Any = None) -> None:
        self.path = path
        self.url = url
        self._stop = stop
        self._closed = False
        atexit.register(self.close)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.path.unlink(missing_ok=True)
        if self._stop is not None:
            self._stop()
        atexit.unregister(self.close)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_metrics(settings: Settings, process: str) -> MetricsServer | None:
    """Serve this process's registry on ``metrics_host:metrics_port`` (0: a free port) and
    announce it; None when metrics are off (``KAFKAORG_METRICS_ENABLED=false``)."""
    if not settings.metrics_enabled:
        return None
    server, thread = _start_http_server(settings.metrics_host, settings.metrics_port)
    port = int(server.server_port)
    path = _register(settings, process, settings.metrics_host, port)
    url = f"http://{_target_host(settings.metrics_host)}:{port}/metrics"
    log.info("metrics of %s at %s", process, url)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return MetricsServer(path, url, stop)


def _start_http_server(host: str, port: int) -> tuple[Any, Thread]:
    started = start_http_server(port, addr=host)
    assert started is not None, "prometheus_client too old: start_http_server returns no server"
    return started


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def temporal_runtime(
    settings: Settings, process: str
) -> tuple[Runtime | None, MetricsServer | None]:
    """A Temporal runtime whose SDK metrics are served on ``temporal_metrics_port`` (0: a
    free port), announced as ``<process>-temporal-sdk``; ``(None, None)`` when metrics are off.

    The SDK's Prometheus exporter cannot say which port it got, so a free one is picked
    first (a tiny race with another process binding it between the two is possible).
    """
    if not settings.metrics_enabled:
        return None, None
    from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

    host = settings.metrics_host
    port = settings.temporal_metrics_port or _free_port(host)
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    runtime = Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(bind_address=bind, durations_as_seconds=True)
        )
    )
    name = f"{process}-temporal-sdk"
    path = _register(settings, name, host, port)
    return runtime, MetricsServer(path, f"http://{_target_host(host)}:{port}/metrics")


@contextlib.contextmanager
def process_metrics(settings: Settings, process: str) -> Iterator[Runtime | None]:
    """Both endpoints of a long-running process for as long as it runs; yields the Temporal
    runtime its client must be built with (None when metrics are off)."""
    with contextlib.ExitStack() as stack:
        server = serve_metrics(settings, process)
        if server is not None:
            stack.enter_context(server)
        runtime, sdk = temporal_runtime(settings, process)
        if sdk is not None:
            stack.enter_context(sdk)
        yield runtime


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def metrics_endpoints(settings: Settings) -> list[MetricsEndpoint]:
    """Every live process's endpoints; files of dead processes (killed ones) are removed."""
    folder = metrics_dir(settings)
    out: list[MetricsEndpoint] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            (entry,) = json.loads(path.read_text())
            labels = entry["labels"]
            pid = int(labels["pid"])
            (target,) = entry["targets"]
            process = str(labels["process"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not _alive(pid):
            path.unlink(missing_ok=True)
            continue
        out.append(MetricsEndpoint(process=process, pid=pid, url=f"http://{target}/metrics"))
    return sorted(out, key=lambda e: (e.process, e.pid))


# -- reading ------------------------------------------------------------------------------------


def parse_metrics(text: str) -> list[Sample]:
    """Every sample of a text exposition (counters' samples keep their ``_total`` name)."""
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def read_metrics(url: str, timeout: float = 5.0) -> list[Sample]:
    """Fetch and parse one process's metrics, without a Prometheus server in between."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return parse_metrics(response.read().decode())


def metric_value(samples: Iterable[Sample], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 if there are none)."""
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )
