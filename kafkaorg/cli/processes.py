"""``kafkaorg worker`` and ``kafkaorg bridge``: the platform's two long-running processes."""

from __future__ import annotations

import logging

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


def bridge() -> None:
    """Run the Kafka bridge: org topics → signals to subscribed agents."""
    from bridge.service import run_bridge

    _logging()
    run(run_bridge(settings()))
