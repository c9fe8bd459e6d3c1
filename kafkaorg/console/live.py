"""The live record view's feed: the org's records, filtered, in bounded batches.

One consumer per open view runs in a thread (``record_lookup.follow_org``) and hands its
batches to the event loop. A batch sent to the browser holds at most ``MAX_PER_BATCH``
records, the newest; the rest are counted as ``skipped``, so at 1,000 records/s the
browser keeps up (it shows a bounded window anyway) and the server never queues more
than a few batches per view.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable

from pydantic import BaseModel

from kafkaorg import metrics
from kafkaorg.config import Settings
from kafkaorg.record_lookup import OrgRecord, RecordFilter, follow_org, to_org_record

MAX_PER_BATCH = 100
SEND_EVERY_S = 0.25
"""At most about this often a batch goes to the browser (more records in between are
merged, the newest kept)."""
QUEUED_BATCHES = 8
"""Batches waiting for a slow browser; past this the oldest are merged into ``skipped``."""
PREVIEW_CHARS = 240


class RecordView(BaseModel):
    """One record as the browser's table shows it."""

    topic: str
    partition: int
    offset: int
    href: str
    id: str | None = None
    type: str | None = None
    source: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    hops: int | None = None
    timestamp: str | None = None
    preview: str


class RecordBatch(BaseModel):
    records: list[RecordView]
    skipped: int = 0
    """Matching records left out of this batch (the newest are kept)."""
    seen: int = 0
    """Records read since the last batch, matching or not (the view's rate)."""


def record_view(item: OrgRecord, org: str | None = None) -> RecordView:
    record = item.record
    org_name = org or (record.org if record else "")
    preview = json.dumps(record.payload, ensure_ascii=False) if record is not None else item.raw
    moment = record.timestamp if record else item.kafka_timestamp
    return RecordView(
        topic=item.topic,
        partition=item.partition,
        offset=item.offset,
        href=f"/orgs/{org_name}/records/{item.topic}/{item.partition}/{item.offset}",
        id=record.id if record else None,
        type=record.type if record else None,
        source=record.source if record else None,
        correlation_id=record.correlation_id if record else None,
        causation_id=record.causation_id if record else None,
        hops=record.hops if record else None,
        timestamp=moment.isoformat() if moment else None,
        preview=preview[:PREVIEW_CHARS],
    )


async def stream_batches(
    settings: Settings,
    org: str,
    wanted: RecordFilter,
    backlog: int,
    disconnected: Callable[[], Awaitable[bool]],
) -> AsyncIterator[RecordBatch]:
    """Filtered batches until the browser goes away."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[RecordBatch | BaseException] = asyncio.Queue()
    stop = threading.Event()

    def offer(batch: RecordBatch | BaseException) -> None:
        if isinstance(batch, RecordBatch) and queue.qsize() >= QUEUED_BATCHES:
            oldest = queue.get_nowait()
            if isinstance(oldest, RecordBatch):
                batch.skipped += len(oldest.records) + oldest.skipped
                batch.seen += oldest.seen
        queue.put_nowait(batch)

    def read() -> None:
        feed = follow_org(settings, org, backlog=backlog)
        try:
            for messages in feed:
                if stop.is_set():
                    return
                matching = [m for m in messages if wanted.matches_message(org, m)]
                kept = matching[-MAX_PER_BATCH:]
                batch = RecordBatch(
                    records=[record_view(to_org_record(org, m), org) for m in kept],
                    skipped=len(matching) - len(kept),
                    seen=len(messages),
                )
                loop.call_soon_threadsafe(offer, batch)
        except BaseException as exc:  # handed to the stream, which ends with it
            loop.call_soon_threadsafe(offer, exc)
        finally:
            feed.close()

    thread = threading.Thread(target=read, name=f"console-feed-{org}", daemon=True)
    thread.start()
    metrics.CONSOLE_LIVE_VIEWS.labels(org).inc()
    try:
        pending = RecordBatch(records=[])
        while not await disconnected():
            with contextlib.suppress(TimeoutError):
                item = await asyncio.wait_for(queue.get(), timeout=SEND_EVERY_S)
                if isinstance(item, BaseException):
                    raise item
                merged = pending.records + item.records
                dropped = max(0, len(merged) - MAX_PER_BATCH)
                pending.records = merged[dropped:]
                pending.skipped += item.skipped + dropped
                pending.seen += item.seen
                if queue.qsize():
                    continue  # merge what is already waiting into one send
            if pending.records or pending.skipped or pending.seen:
                metrics.CONSOLE_STREAMED_RECORDS.labels(org).inc(len(pending.records))
                metrics.CONSOLE_SKIPPED_RECORDS.labels(org).inc(pending.skipped)
                yield pending
                pending = RecordBatch(records=[])
    finally:
        stop.set()
        metrics.CONSOLE_LIVE_VIEWS.labels(org).dec()
