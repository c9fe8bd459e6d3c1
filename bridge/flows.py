"""Replies to flow runs: an agent's record whose correlation id names a run goes back to it.

A flow's request carries the run's workflow id (``flow:<org>:<flow>:<run>``) as its
correlation id, and every agent's output keeps its input's correlation id, so the
bridge recognises the answers among all the records it consumes (it consumes every
org topic, whoever subscribes) and signals them to the run. The run matches each to
its request by causation id. Only agents' records of the run's own org are routed:
another org cannot write into a run, and the run's own requests and emits
(``system:flow``) do not come back to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from bridge.mapping import Accepted
from kafkaorg import client as service
from kafkaorg.envelope import Record
from kafkaorg.names import is_flow_workflow_id

log = logging.getLogger(__name__)

RETRY_MAX_S = 5.0


def flow_replies(accepted: Iterable[Accepted]) -> dict[str, list[Record]]:
    """Workflow id of a run → the agents' records of that run in the batch, in order."""
    out: dict[str, list[Record]] = defaultdict(list)
    for item in accepted:
        record = item.record
        cid = record.correlation_id
        if not record.source.startswith("agent:") or not is_flow_workflow_id(cid):
            continue
        if cid.split(":")[1] != item.origin.org or record.org != item.origin.org:
            continue
        out[cid].append(record)
    return dict(out)


async def signal_runs(
    client: Client,
    accepted: Iterable[Accepted],
    stop: asyncio.Event,
    wait: Callable[[float, asyncio.Event], Awaitable[None]],
) -> None:
    """Signal each run its replies before the batch is committed (at-least-once; the run
    drops a reply it already has). A run that no longer runs is skipped: nothing awaits
    the reply. ``wait`` keeps the consumer in its group while Temporal is away."""
    pending = flow_replies(accepted)
    delay = 0.2
    while pending and not stop.is_set():
        ids = list(pending)
        results = await asyncio.gather(
            *(service.signal_flow_replies(client, wf_id, pending[wf_id]) for wf_id in ids),
            return_exceptions=True,
        )
        failed: dict[str, list[Record]] = {}
        for wf_id, result in zip(ids, results, strict=True):
            if isinstance(result, RPCError) and result.status == RPCStatusCode.NOT_FOUND:
                skipped = len(pending[wf_id])
                log.info("flow run %s is not running: %d record(s) skipped", wf_id, skipped)
            elif isinstance(result, BaseException):
                failed[wf_id] = pending[wf_id]
        if failed:
            log.warning("Temporal did not accept replies for %d flow run(s); retrying", len(failed))
            await wait(delay, stop)
            delay = min(delay * 2, RETRY_MAX_S)
        pending = failed
