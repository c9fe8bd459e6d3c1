"""Heartbeats from a side thread, for sync activities that block in one call.

A step's heartbeat timeout is what tells Temporal that the worker running it died: the
shorter it is, the sooner a killed worker's step is retried elsewhere. A produce or a
transaction commit can block longer than that on a loaded broker, so the activity
heartbeats from a thread for as long as the block runs.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from temporalio import activity


@contextmanager
def heartbeating(every_s: float = 0.5) -> Iterator[None]:
    """Heartbeat every ``every_s`` while the block runs (the SDK throttles what it sends)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            activity.heartbeat()

    # The activity's context (which activity to heartbeat for) lives in a contextvar.
    beater = threading.Thread(
        target=contextvars.copy_context().run, args=(beat,), name="heartbeat", daemon=True
    )
    beater.start()
    try:
        yield
    finally:
        stop.set()
        beater.join()
