"""Each running org's archive schedule: a Temporal Schedule that starts an
``ArchiveWorkflow`` every ``KAFKAORG_ARCHIVE_INTERVAL_S``, one run at a time.

It shows in the Web UI's Schedules page as ``archive:<org>``, where it can be paused
or triggered; ``kafkaorg archive run`` starts a run right away.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from kafkaorg.contracts.archive import ArchiveInput, ArchiveResult
from kafkaorg.names import (
    ARCHIVE_WORKFLOW_TYPE,
    TASK_QUEUE,
    archive_schedule_id,
    org_search_attributes,
)


def _schedule(org: str, interval_s: float) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ARCHIVE_WORKFLOW_TYPE,
            ArchiveInput(org=org),
            id=archive_schedule_id(org),
            task_queue=TASK_QUEUE,
            typed_search_attributes=org_search_attributes(org),
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=interval_s))]),
        # A run still going when the next is due: the next is skipped, never stacked.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(note=f"archives the audit topics of org {org}"),
    )


async def ensure_archive_schedule(client: Client, org: str, interval_s: float) -> bool:
    """Create the org's schedule, or bring an existing one up to date; whether it was new."""
    schedule = _schedule(org, interval_s)
    try:
        await client.create_schedule(archive_schedule_id(org), schedule)
        return True
    except ScheduleAlreadyRunningError:

        def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(archive_schedule_id(org)).update(update)
        return False


async def delete_archive_schedule(client: Client, org: str) -> bool:
    """Delete the org's schedule; whether there was one."""
    try:
        await client.get_schedule_handle(archive_schedule_id(org)).delete()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def run_archive_now(client: Client, org: str) -> ArchiveResult:
    """One run right away (not waiting for the schedule), and what it archived."""
    return await client.execute_workflow(
        ARCHIVE_WORKFLOW_TYPE,
        ArchiveInput(org=org),
        id=f"{archive_schedule_id(org)}-now-{uuid.uuid4().hex[:8]}",
        task_queue=TASK_QUEUE,
        search_attributes=org_search_attributes(org),
        result_type=ArchiveResult,
    )
