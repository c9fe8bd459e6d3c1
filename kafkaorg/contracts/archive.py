"""What crosses the ArchiveWorkflow's boundary: its input, and what one run archived."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ArchiveInput(BaseModel):
    org: str


class ArchivedRange(BaseModel):
    """One Parquet file a run wrote: a partition's ``[start, end)`` offsets."""

    topic: str
    partition: int
    start: int
    end: int
    records: int
    bytes: int
    path: str


class ArchiveResult(BaseModel):
    """One archive run of an org; a run with nothing new writes nothing."""

    org: str
    segments: list[ArchivedRange] = Field(default_factory=list)
    expired_unarchived: int = 0
    """Offsets that left Kafka before they were archived (retention shorter than the
    schedule's interval, or the org was stopped): a gap in the archive, logged."""

    @property
    def records(self) -> int:
        return sum(s.records for s in self.segments)


class ArchiveScheduleRequest(BaseModel):
    org: str
    interval_s: float | None = None
    """None: the worker's ``KAFKAORG_ARCHIVE_INTERVAL_S``."""
