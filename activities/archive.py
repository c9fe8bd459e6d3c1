"""The archive's activities: one archive run of an org, and the org's schedule kept."""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client

from kafkaorg.archive.schedule import delete_archive_schedule, ensure_archive_schedule
from kafkaorg.archive.writer import ArchiveWriter
from kafkaorg.contracts.archive import ArchiveInput, ArchiveResult, ArchiveScheduleRequest


class ArchiveActivities:
    def __init__(self, client: Client, writer: ArchiveWriter, interval_s: float) -> None:
        self._client = client
        self._writer = writer
        self._interval_s = interval_s

    @activity.defn
    def archive_org(self, input: ArchiveInput) -> ArchiveResult:
        """Archive what is new; idempotent by offset range (a retry resumes where the
        manifest ends). Heartbeats after every file."""
        return self._writer.archive_org(input.org, heartbeat=activity.heartbeat)

    @activity.defn
    async def ensure_archive_schedule(self, request: ArchiveScheduleRequest) -> bool:
        interval = request.interval_s or self._interval_s
        return await ensure_archive_schedule(self._client, request.org, interval)

    @activity.defn
    async def delete_archive_schedule(self, request: ArchiveScheduleRequest) -> bool:
        return await delete_archive_schedule(self._client, request.org)
