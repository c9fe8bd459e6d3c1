"""``kafkaorg worker``, ``kafkaorg bridge`` and ``kafkaorg console``: the platform's
long-running processes."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from kafkaorg.cli._common import run, settings


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("temporalio").setLevel(logging.WARNING)


def worker() -> None:
    """Run a worker: OrgWorkflow, AgentWorkflow and their activities."""
    from workers.worker import run_worker

    _logging()
    run(run_worker(settings()))


def console(
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8240).")] = None,
) -> None:
    """Run the web console: records live, agents, graph, tools, DLQ, audit."""
    from kafkaorg.console.server import run_console

    _logging()
    cfg = settings()
    run_console(cfg, host or cfg.console_host, port or cfg.console_port)


def bridge() -> None:
    """Run the Kafka bridge: org topics → signals to subscribed agents."""
    from bridge.service import run_bridge

    _logging()
    run(run_bridge(settings()))
