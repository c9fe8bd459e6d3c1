"""The archive's pure parts: Parquet segments round-trip byte for byte, ``verify`` tells
each kind of damage apart, and replay planning splits a range between archive and Kafka."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from kafkaorg.archive.files import (
    ArchiveStorage,
    decode_segment,
    encode_segment,
    segment_path,
    sha256,
)
from kafkaorg.archive.manifest import SegmentRow
from kafkaorg.archive.reader import ArchiveDamagedError, read_range, verify
from kafkaorg.archive.replay import plan_partition
from kafkaorg.log_ranges import RawRecord
from kafkaorg.redelivery import PartitionRange

NOW_MS = 1_796_000_000_000


def _records(start: int, count: int, partition: int = 0) -> list[RawRecord]:
    return [
        RawRecord(
            partition=partition,
            offset=start + i,
            timestamp_ms=NOW_MS + i,
            key=f"k{i}".encode() if i % 2 else None,
            value=b'{"id": "r%d", "type": "task.request", "payload": {}}' % i,
            headers=[("kafkaorg.mark", b"replay:x"), ("empty", None)] if i == 1 else [],
        )
        for i in range(count)
    ]


def _write(storage: ArchiveStorage, records: list[RawRecord], start: int, end: int) -> SegmentRow:
    data = encode_segment(records).data
    path = segment_path("acme", "events", records[0].partition, start, records[0].day)
    storage.write(path, data)
    return SegmentRow(
        topic="events",
        kafka_topic="acme.events",
        partition=records[0].partition,
        start_offset=start,
        end_offset=end,
        records=len(records),
        first_timestamp=None,
        last_timestamp=None,
        path=path,
        sha256=sha256(data),
        bytes=len(data),
        created_at=datetime.now(UTC),
    )


def test_a_segment_round_trips_every_byte_key_header_and_timestamp() -> None:
    records = _records(10, 5)
    assert list(decode_segment(encode_segment(records).data)) == records


def test_segment_paths_are_partitioned_by_org_topic_and_day_and_named_by_start() -> None:
    assert segment_path("acme", "sys.audit", 2, 7, date(2026, 12, 7)) == (
        "acme/sys.audit/date=2026-12-07/p2-00000000000000000007.parquet"
    )


def test_verify_tells_missing_checksum_and_content_problems_apart(tmp_path: Path) -> None:
    storage = ArchiveStorage(tmp_path.as_uri())
    good = _write(storage, _records(0, 3), 0, 3)
    flipped = _write(storage, _records(3, 3), 3, 6)
    gone = _write(storage, _records(6, 3), 6, 9)
    wrong_count = _write(storage, _records(9, 3), 9, 12).model_copy(update={"records": 4})
    later = _write(storage, _records(20, 2), 20, 22)  # 12..19 expired before archived
    target = Path(storage.full_path(flipped.path))
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    Path(storage.full_path(gone.path)).unlink()

    report = verify(storage, "acme", [good, flipped, gone, wrong_count, later])
    assert not report.ok
    assert [(p.start_offset, p.kind) for p in report.problems] == [
        (3, "checksum"),
        (6, "missing"),
        (9, "content"),
    ]
    assert [(g.start, g.end) for g in report.gaps] == [(12, 20)]
    assert verify(storage, "acme", [good, later]).ok

    assert [r.offset for b in read_range(storage, [good], 0, 1, 3) for r in b] == [1, 2]
    with pytest.raises(ArchiveDamagedError, match="is damaged"):
        list(read_range(storage, [good, flipped], 0, 0, 6))


@pytest.mark.parametrize(
    ("low", "high", "start", "archived", "archive", "kafka", "missing"),
    [
        # Expired entirely, all archived: the archive serves everything.
        (10, 10, 0, [(0, 10)], (0, 10), (10, 10), 0),
        # Partly expired: the archive below its end, Kafka the rest.
        (6, 14, 0, [(0, 5), (5, 10)], (0, 10), (10, 14), 0),
        # Nothing expired, nothing archived: all Kafka.
        (0, 8, 2, [], (2, 2), (2, 8), 0),
        # Expired before the archive reached them: 10..11 in neither.
        (12, 15, 0, [(0, 10)], (0, 10), (12, 15), 2),
        # A gap inside the archive (expired before a run): counted, not read.
        (30, 30, 0, [(0, 10), (20, 30)], (0, 30), (30, 30), 10),
        # Starting inside the archive.
        (10, 12, 7, [(0, 10)], (7, 10), (10, 12), 0),
    ],
)
def test_replay_planning_splits_a_range_between_archive_and_kafka(
    low: int,
    high: int,
    start: int,
    archived: list[tuple[int, int]],
    archive: tuple[int, int],
    kafka: tuple[int, int],
    missing: int,
) -> None:
    plan = plan_partition(0, low, high, start, archived)
    assert plan.archive == PartitionRange(0, *archive)
    assert plan.kafka == PartitionRange(0, *kafka)
    assert plan.missing == missing
