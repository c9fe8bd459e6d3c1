"""A replayer configured like the worker, for ``kafkaorg workflow replay``, the golden
histories and the replay bench: the same workflows, data converter and plugins, so a
history that replays here replays on a worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.worker import Replayer

from workers.worker import WORKFLOWS
from workflows.llm_graph import langgraph_plugin


def make_replayer(workflows: Sequence[type] | None = None) -> Replayer:
    """The worker's workflows, or ``workflows`` (tests swap one for a changed copy)."""
    return Replayer(
        workflows=list(workflows if workflows is not None else WORKFLOWS),
        data_converter=pydantic_data_converter,
        runtime=_quiet_runtime(),
        plugins=[langgraph_plugin()],
    )


@cache
def _quiet_runtime() -> Runtime:
    """Core logs each failed replay task on stdout; the report already says it, so only errors."""
    quiet = TelemetryFilter(core_level="ERROR", other_level="ERROR")
    return Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=quiet), metrics=None))
