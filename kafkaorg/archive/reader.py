"""Reading the archive back: its records for a range, and a check of every file.

Every file read is checked against the manifest's SHA-256 first, so a damaged file
is an error that names it, never records silently wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import pairwise
from typing import Literal

from pydantic import BaseModel

from kafkaorg.archive.files import ArchiveStorage, decode_segment, sha256
from kafkaorg.archive.manifest import SegmentRow
from kafkaorg.errors import KafkaorgError
from kafkaorg.log_ranges import RawRecord

ProblemKind = Literal["missing", "checksum", "unreadable", "content"]


class ArchiveDamagedError(KafkaorgError):
    """A file of the archive is missing or not what the manifest says it is."""


class FileProblem(BaseModel):
    path: str
    topic: str
    partition: int
    start_offset: int
    kind: ProblemKind
    detail: str


class Gap(BaseModel):
    """Offsets of a partition that are in no file: they left Kafka before an archive
    run reached them (not damage; nothing can bring them back)."""

    topic: str
    partition: int
    start: int
    end: int


class VerifyReport(BaseModel):
    org: str
    files: int
    records: int
    bytes: int
    problems: list[FileProblem]
    gaps: list[Gap]

    @property
    def ok(self) -> bool:
        return not self.problems


def _problem(row: SegmentRow, kind: ProblemKind, detail: str) -> FileProblem:
    return FileProblem(
        path=row.path,
        topic=row.topic,
        partition=row.partition,
        start_offset=row.start_offset,
        kind=kind,
        detail=detail,
    )


def _check(storage: ArchiveStorage, row: SegmentRow) -> tuple[list[RawRecord], FileProblem | None]:
    """The file's records, or what is wrong with it."""
    try:
        data = storage.read(row.path)
    except (FileNotFoundError, OSError) as exc:
        return [], _problem(row, "missing", f"cannot read {storage.full_path(row.path)}: {exc}")
    digest = sha256(data)
    if digest != row.sha256:
        return [], _problem(
            row, "checksum", f"SHA-256 is {digest[:16]}…, the manifest says {row.sha256[:16]}…"
        )
    try:
        records = list(decode_segment(data))
    except Exception as exc:  # pyarrow raises several types for a damaged file
        return [], _problem(row, "unreadable", f"not a readable Parquet file: {exc}")
    offsets = [r.offset for r in records]
    if len(records) != row.records:
        return records, _problem(
            row, "content", f"{len(records)} records, the manifest says {row.records}"
        )
    if offsets and (
        offsets[0] < row.start_offset
        or offsets[-1] >= row.end_offset
        or any(b <= a for a, b in pairwise(offsets))
        or any(r.partition != row.partition for r in records)
    ):
        return records, _problem(
            row,
            "content",
            f"offsets {offsets[0]}..{offsets[-1]} are not inside "
            f"[{row.start_offset}, {row.end_offset}) of partition {row.partition} in order",
        )
    return records, None


def verify(
    storage: ArchiveStorage,
    org: str,
    rows: list[SegmentRow],
    on_file: Callable[[], None] | None = None,
) -> VerifyReport:
    """Read every file of the org's manifest: present, checksum, Parquet, offsets."""
    problems: list[FileProblem] = []
    gaps: list[Gap] = []
    for row in rows:
        _, problem = _check(storage, row)
        if problem is not None:
            problems.append(problem)
        if on_file is not None:
            on_file()
    for a, b in pairwise(rows):
        same = (a.kafka_topic, a.partition) == (b.kafka_topic, b.partition)
        if same and b.start_offset > a.end_offset:
            gaps.append(
                Gap(topic=a.topic, partition=a.partition, start=a.end_offset, end=b.start_offset)
            )
    return VerifyReport(
        org=org,
        files=len(rows),
        records=sum(r.records for r in rows),
        bytes=sum(r.bytes for r in rows),
        problems=problems,
        gaps=gaps,
    )


def read_checked(storage: ArchiveStorage, row: SegmentRow) -> bytes:
    """The file's bytes, present and with the manifest's checksum, or ``ArchiveDamagedError``."""
    try:
        data = storage.read(row.path)
    except (FileNotFoundError, OSError) as exc:
        raise _damaged(_problem(row, "missing", f"cannot read it: {exc}")) from None
    if sha256(data) != row.sha256:
        raise _damaged(_problem(row, "checksum", "its SHA-256 is not the manifest's"))
    return data


def _damaged(problem: FileProblem) -> ArchiveDamagedError:
    return ArchiveDamagedError(
        f"archive file {problem.path} is damaged ({problem.kind}: {problem.detail}); "
        "see `kafkaorg archive verify`"
    )


def read_range(
    storage: ArchiveStorage, rows: list[SegmentRow], partition: int, start: int, end: int
) -> Iterator[list[RawRecord]]:
    """The archived records of ``partition`` in ``[start, end)``, a file at a time;
    raises ``ArchiveDamagedError`` on a file that fails its check."""
    for row in rows:
        if row.partition != partition or row.end_offset <= start or row.start_offset >= end:
            continue
        records, problem = _check(storage, row)
        if problem is not None:
            raise _damaged(problem)
        yield [r for r in records if start <= r.offset < end]
