"""Verdicts sent as records: a person's ``approval.decision`` on ``<org>.sys.approvals``.

A tool or a person's own producer may decide an approval by writing a record there
(payload ``{"id", "approve", "reason"}``; the record's ``source``, ``user:<name>``,
says who). The bridge hands it to whichever workflow holds the approval, before the
batch is committed. A refused verdict (no such approval, already decided, not a
person) is dead-lettered with the reason (``approval-refused``), so the sender can see
why; a redelivered verdict that was already carried out is recognised and skipped.
The records the platform itself writes there (``approval.requested``/``decided``)
are only read by people.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from pydantic import ValidationError
from temporalio.client import Client

from bridge.mapping import Accepted, Poison
from kafkaorg import client as service
from kafkaorg import org_queries as queries
from kafkaorg.config import Settings
from kafkaorg.contracts import ApprovalStatus, ApprovalVerdict
from kafkaorg.contracts.approvals import DECISION_RECORD_TYPE
from kafkaorg.errors import BadInputError
from kafkaorg.names import APPROVALS_TOPIC

log = logging.getLogger(__name__)

RETRY_MAX_S = 5.0
REFUSED_REASON = "approval-refused"


def verdict_records(accepted: list[Accepted]) -> list[Accepted]:
    return [
        a
        for a in accepted
        if a.origin.topic == APPROVALS_TOPIC and a.record.type == DECISION_RECORD_TYPE
    ]


def _refused(item: Accepted, why: str) -> Poison:
    return Poison(
        origin=item.origin,
        reason=REFUSED_REASON,
        detail=why,
        value=item.record.model_dump_json().encode(),
    )


async def _decide_one(client: Client, settings: Settings, item: Accepted) -> Poison | None:
    record = item.record
    try:
        verdict = ApprovalVerdict.model_validate({**record.payload, "by": record.source})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        return _refused(item, f"not a verdict: {where}: {first['msg']}")
    org = item.origin.org
    try:
        approval = await asyncio.to_thread(queries.find_approval, settings, org, verdict.id)
        decided = approval.status is not ApprovalStatus.PENDING
        if decided and approval.decided_by == verdict.by:
            same = (approval.status is ApprovalStatus.APPROVED) == verdict.approve
            if same:  # redelivered after it was carried out
                return None
        await service.decide(client, approval, verdict)
    except BadInputError as refused:
        return _refused(item, str(refused).removeprefix("refused: "))
    log.info("approval %s of %s decided by %s (record %s)", verdict.id, org, verdict.by, record.id)
    return None


async def decide_from_records(
    client: Client,
    settings: Settings,
    accepted: list[Accepted],
    stop: asyncio.Event,
    wait: Callable[[float, asyncio.Event], Awaitable[None]],
) -> list[Poison] | None:
    """Carry out the batch's verdicts, in order; the refused ones to dead-letter. None:
    ``stop`` came before Temporal took them all (the batch must not be committed)."""
    refused: list[Poison] = []
    delay = 0.2
    for item in verdict_records(accepted):
        while True:
            if stop.is_set():
                return None
            try:
                outcome = await _decide_one(client, settings, item)
            except Exception as exc:  # Temporal or PostgreSQL away: the same verdict again
                log.warning("verdict %s not carried out yet: %s", item.record.id, exc)
                await wait(delay, stop)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            if outcome is not None:
                refused.append(outcome)
            break
    return refused
