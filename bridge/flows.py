"""Flows at the bridge: replies go back to their runs, trigger records start runs.

A flow's request carries the run's workflow id (``flow:<org>:<flow>:<run>``) as its
correlation id, and every agent's output keeps its input's correlation id, so the
bridge recognises the answers among all the records it consumes (it consumes every
org topic, whoever subscribes) and signals them to the run. The run matches each to
its request by causation id. Only agents' records of the run's own org are routed:
another org cannot write into a run, and the run's own requests and emits
(``system:flow``) do not come back to it.

A flow with a ``trigger`` starts one run per matching record; the run's name derives
from the record's id and a run id is never reused, so a redelivered record (after a
crash before the commit) finds its run already there instead of starting another.
A run's own records never trigger its flow again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from bridge.mapping import Accepted
from kafkaorg import client as service
from kafkaorg.contracts import FlowInput
from kafkaorg.db.models import Org
from kafkaorg.envelope import Record, derived_id
from kafkaorg.flow_spec import FlowSpec
from kafkaorg.names import flow_workflow_id, is_flow_workflow_id

log = logging.getLogger(__name__)

RETRY_MAX_S = 5.0

Triggers = dict[tuple[str, str], list[FlowSpec]]
"""(org, topic) → the org's flows a record on that topic may start."""


class FlowTriggers:
    """The running orgs' triggered flows, read from their specs in PostgreSQL and kept
    for ``ttl_s`` seconds (a spec applied a moment ago triggers within that time)."""

    def __init__(self, sessions: sessionmaker[Session], ttl_s: float = 2.0) -> None:
        self._sessions = sessions
        self._ttl_s = ttl_s
        self._loaded_at = float("-inf")
        self._triggers: Triggers = {}

    async def get(self) -> Triggers:
        if time.monotonic() - self._loaded_at > self._ttl_s:
            self._triggers = await asyncio.to_thread(self._load)
            self._loaded_at = time.monotonic()
        return self._triggers

    def _load(self) -> Triggers:
        query = select(Org.name, Org.spec["flows"]).where(Org.status != "stopped")
        out: Triggers = defaultdict(list)
        with self._sessions() as session:
            for org, flows in session.execute(query):
                for data in flows or []:
                    try:
                        flow = FlowSpec.model_validate(data)
                    except ValidationError as exc:  # a spec of another version: skipped
                        log.warning("flow of org %s not read: %s", org, exc)
                        continue
                    if flow.trigger is not None:
                        out[(org, flow.trigger.topic)].append(flow)
        return dict(out)


def trigger_run(org: str, flow: str, record_id: str) -> str:
    """The name of the run a record starts: the same for every delivery of the record."""
    return derived_id("flow-trigger", org, flow, record_id)


def triggered_runs(accepted: Iterable[Accepted], triggers: Triggers) -> list[FlowInput]:
    """The runs this batch's records start, in record order."""
    out: list[FlowInput] = []
    for item in accepted:
        org, record = item.origin.org, item.record
        for flow in triggers.get((org, item.origin.topic), []):
            assert flow.trigger is not None
            if not flow.trigger.matches(item.origin.topic, record.type):
                continue
            cid = record.correlation_id
            if is_flow_workflow_id(cid) and cid.split(":")[1:3] == [org, flow.name]:
                continue  # a run's own record never starts its flow again
            run = trigger_run(org, flow.name, record.id)
            out.append(FlowInput(org=org, flow=flow, input=record.payload, run=run))
    return out


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


async def route_flows(
    client: Client,
    accepted: list[Accepted],
    stop: asyncio.Event,
    wait: Callable[[float, asyncio.Event], Awaitable[None]],
    triggers: FlowTriggers | None = None,
) -> bool:
    """Start the batch's triggered runs, then signal the runs their replies (both before
    the batch is committed). False: ``stop`` came first (the batch must not be committed)."""
    if triggers is not None:
        starts = triggered_runs(accepted, await triggers.get())
        if starts and not await start_runs(client, starts, stop, wait):
            return False
    return await signal_runs(client, accepted, stop, wait)


async def start_runs(
    client: Client,
    starts: list[FlowInput],
    stop: asyncio.Event,
    wait: Callable[[float, asyncio.Event], Awaitable[None]],
) -> bool:
    """Start each run once; one that exists (a redelivered record's) is left alone."""
    pending = starts
    delay = 0.2
    while pending and not stop.is_set():
        results = await asyncio.gather(
            *(service.start_flow_run(client, run) for run in pending), return_exceptions=True
        )
        failed = []
        for run, result in zip(pending, results, strict=True):
            wf_id = flow_workflow_id(run.org, run.flow.name, run.run)
            if isinstance(result, WorkflowAlreadyStartedError):
                log.info("flow run %s already started (a redelivered trigger)", wf_id)
            elif isinstance(result, BaseException):
                log.warning("flow run %s not started yet: %s", wf_id, result)
                failed.append(run)
            else:
                log.info("started flow run %s", wf_id)
        if failed:
            await wait(delay, stop)
            delay = min(delay * 2, RETRY_MAX_S)
        pending = failed
    return not pending


async def signal_runs(
    client: Client,
    accepted: Iterable[Accepted],
    stop: asyncio.Event,
    wait: Callable[[float, asyncio.Event], Awaitable[None]],
) -> bool:
    """Signal each run its replies before the batch is committed (at-least-once; the run
    drops a reply it already has). A run that no longer runs is skipped: nothing awaits
    the reply. ``wait`` keeps the consumer in its group while Temporal is away. False:
    ``stop`` came before Temporal took them all (the batch must not be committed)."""
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
    return not pending
