"""ArchiveWorkflow: one archive run of an org, started by the org's Temporal Schedule
(kafkaorg/archive/schedule.py) or by ``kafkaorg archive run``.

The run is one activity: reading Kafka and writing Parquet is I/O, and a retry after
a crash resumes where the manifest in PostgreSQL ends, so the history stays a handful
of events however much is archived.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.archive import ArchiveActivities
    from kafkaorg.contracts.archive import ArchiveInput, ArchiveResult
    from kafkaorg.names import ARCHIVE_WORKFLOW_TYPE


ARCHIVE_RUN = workflow.ActivityConfig(
    # Long backlogs take long; a dead worker is noticed by the heartbeat.
    start_to_close_timeout=timedelta(hours=2),
    heartbeat_timeout=timedelta(seconds=60),
    retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=10),
)
"""An archive run: the schedule's and an org's last one before it stops."""


@workflow.defn(name=ARCHIVE_WORKFLOW_TYPE)
class ArchiveWorkflow:
    @workflow.run
    async def run(self, input: ArchiveInput) -> ArchiveResult:
        return await workflow.execute_activity_method(
            ArchiveActivities.archive_org, input, **ARCHIVE_RUN
        )
