"""How hard one org may lean on the model endpoint, and how long a provider asks us to wait.

A model endpoint is shared by every org a worker runs. Without a bound, an org with many
busy llm agents fills the endpoint's queue (and the worker's activity slots) and a quiet
org's one call waits behind all of them. Each worker process therefore lets an org have
at most ``KAFKAORG_LLM_ORG_CONCURRENCY`` model calls in flight; the next one waits for a
free place (``KAFKAORG_LLM_ORG_WAIT_S`` at most, then the activity is retried later).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from kafkaorg.errors import KafkaorgError
from kafkaorg.metrics import LLM_CALLS_WAITING

MAX_RETRY_AFTER = timedelta(minutes=5)
"""A longer ``Retry-After`` is taken as this: a record should not sleep for an hour."""


class OrgAtCallLimitError(KafkaorgError):
    """The org had its limit of model calls in flight for the whole wait."""


class _OrgSlots:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}

    def semaphore(self, org: str, limit: int) -> threading.BoundedSemaphore:
        with self._lock:
            slots = self._slots.get(org)
            if slots is None or slots._initial_value != limit:  # type: ignore[attr-defined]
                slots = self._slots[org] = threading.BoundedSemaphore(limit)
            return slots


_SLOTS = _OrgSlots()


@contextmanager
def org_call_slot(org: str, *, limit: int, wait_s: float) -> Iterator[float]:
    """Hold one of the org's model-call places for the block; yields the seconds waited."""
    slots = _SLOTS.semaphore(org, limit)
    started = time.perf_counter()
    if not slots.acquire(blocking=False):
        LLM_CALLS_WAITING.labels(org).inc()
        try:
            acquired = slots.acquire(timeout=wait_s)
        finally:
            LLM_CALLS_WAITING.labels(org).dec()
        if not acquired:
            raise OrgAtCallLimitError(
                f"org {org} had {limit} model calls in flight for {wait_s:g} s "
                "(KAFKAORG_LLM_ORG_CONCURRENCY); the call is retried later"
            )
    try:
        yield time.perf_counter() - started
    finally:
        slots.release()


def retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> timedelta | None:
    """The wait a provider asked for (``retry-after-ms``, or ``Retry-After`` in seconds or
    as an HTTP date), capped at ``MAX_RETRY_AFTER``; ``None`` when it asked for none."""
    lowered = {k.lower(): v for k, v in headers.items()}
    delay: timedelta | None = None
    if (ms := lowered.get("retry-after-ms")) is not None:
        try:
            delay = timedelta(milliseconds=float(ms))
        except ValueError:
            delay = None
    if delay is None and (raw := lowered.get("retry-after")) is not None:
        try:
            delay = timedelta(seconds=float(raw))
        except ValueError:
            try:
                when = parsedate_to_datetime(raw)
            except (TypeError, ValueError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            delay = when - (now or datetime.now(UTC))
    if delay is None or delay <= timedelta(0):
        return None
    return min(delay, MAX_RETRY_AFTER)
