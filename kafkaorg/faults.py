"""Fault injection: named points where a process can be made to die on purpose.

The delivery guarantees are about what happens when a process dies at the worst
moment; SIGKILL from outside lands wherever it lands. A point named in
``KAFKAORG_FAULTS`` (comma-separated) makes the process exit at once, without
cleanup, exactly there, so a test can prove the guarantee for that moment. Unset
(always, outside tests), a point costs one set lookup.
"""

from __future__ import annotations

import logging
import os
from enum import StrEnum
from functools import cache

log = logging.getLogger(__name__)

FAULTS_ENV = "KAFKAORG_FAULTS"
FAULT_EXIT_CODE = 86


class FaultPoint(StrEnum):
    BRIDGE_AFTER_SIGNAL = "bridge.after-signal"
    """Temporal accepted every signal of a batch; its offsets are not committed yet."""
    TRANSACTION_BEFORE_COMMIT = "transaction.before-commit"
    """A step's outputs are on the broker in an open transaction, not committed yet."""
    AGENT_STEP_RAISE = "agent-step.raise"
    """An echo/rule step fails (retryably) before it produces anything."""


class InjectedFault(RuntimeError):
    """A failure a test asked for (``KAFKAORG_FAULTS``), retryable like any crash."""


@cache
def _armed() -> frozenset[str]:
    return frozenset(p.strip() for p in os.environ.get(FAULTS_ENV, "").split(",") if p.strip())


def armed(point: FaultPoint) -> bool:
    return point.value in _armed()


def fail(point: FaultPoint) -> None:
    """Raise ``InjectedFault`` here if ``point`` is armed."""
    if point.value in _armed():
        raise InjectedFault(f"fault injected at {point.value}")


def inject(point: FaultPoint) -> None:
    """Exit the process here (no cleanup, like SIGKILL) if ``point`` is armed."""
    if point.value in _armed():
        log.warning("fault injected at %s: exiting with %d", point.value, FAULT_EXIT_CODE)
        logging.shutdown()
        os._exit(FAULT_EXIT_CODE)
