"""The archive: audit and ``archive: true`` topics to Parquet, and read back past retention.

Real Kafka (a topic's ``retention.ms`` cut to 1 s, so its records really expire),
Temporal (the ``ArchiveWorkflow`` and each org's Schedule), PostgreSQL (the manifest)
and Parquet files in the test stack's archive directory.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource
from pydantic import JsonValue
from sqlalchemy import delete, select
from temporalio.service import RPCError

from kafkaorg.archive.files import ArchiveStorage, payload_path
from kafkaorg.db.models import PayloadBlob
from kafkaorg.kafka import client_config, create_admin
from kafkaorg.names import archive_schedule_id, kafka_topic
from kafkaorg.records import send_records
from tests.support import (
    Platform,
    assert_one_clear_line,
    db_sessions,
    raw_messages,
    task,
    unique_org,
)
from tests.support import run_cli_async as kafkaorg

pytestmark = pytest.mark.integration


def _spec(org: str) -> dict[str, Any]:
    return {
        "org": org,
        "topics": [
            {"name": "inbox", "partitions": 2, "archive": True},
            {"name": "outbox"},
        ],
        "agents": [
            {"name": "echo", "kind": "echo", "subscribes": ["inbox"], "publishes": ["outbox"]}
        ],
    }


async def _json(*args: str) -> Any:
    result = await kafkaorg(*args, "--json")
    assert result.returncode == 0, result.stderr + result.stdout
    return json.loads(result.stdout)


def _watermarks(platform: Platform, name: str, partitions: int) -> list[tuple[int, int]]:
    consumer = Consumer({**client_config(platform.settings), "group.id": "test-watermarks"})
    try:
        return [
            consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
            for p in range(partitions)
        ]
    finally:
        consumer.close()


def _set_retention(platform: Platform, name: str, ms: int) -> None:
    entry = ConfigEntry("retention.ms", str(ms), incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource("topic", name, incremental_configs=[entry])
    admin = create_admin(platform.settings)  # kept: a collected client fails its futures
    for future in admin.incremental_alter_configs([resource]).values():
        future.result()


def _expire(platform: Platform, name: str, partitions: int) -> None:
    """Cut the topic's retention to 1 s, wait until Kafka has deleted every record, and
    give it back a long one (records sent later stay)."""
    _set_retention(platform, name, 1000)
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            marks = _watermarks(platform, name, partitions)
            if all(low == high for low, high in marks):
                return
            time.sleep(1)
        raise AssertionError(f"records of {name} did not expire: {marks}")
    finally:
        _set_retention(platform, name, 3 * 24 * 3600 * 1000)


def _damage(path: Path) -> None:
    """One byte in the middle of the file flipped."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _contiguous(rows: list[dict[str, Any]], topic: str) -> dict[int, list[tuple[int, int]]]:
    """Each partition's files as ``(start, end)``, checked to follow each other exactly."""
    ranges: dict[int, list[tuple[int, int]]] = {}
    for r in rows:
        if r["topic"] == topic:
            ranges.setdefault(r["partition"], []).append((r["start_offset"], r["end_offset"]))
    for spans in ranges.values():
        spans.sort()
        for (_, end), (start, _) in pairwise(spans):
            assert start == end, f"gap or overlap in {topic}: {spans}"
    return ranges


async def test_replay_from_the_archive_delivers_expired_records_exactly_once(
    platform: Platform,
) -> None:
    org = unique_org("ar")
    await platform.start_org(_spec(org))
    schedule = await platform.client.get_schedule_handle(archive_schedule_id(org)).describe()
    assert schedule.schedule.action.workflow == "ArchiveWorkflow"  # type: ignore[attr-defined]

    originals = [task(org, n) for n in range(10)]
    await platform.send(org, "inbox", originals[:6])
    await platform.collect(org, "outbox", 6)
    first = await _json("archive", "run", org)
    assert sum(s["records"] for s in first["segments"] if s["topic"] == "inbox") == 6

    # A second run starts exactly where the first ended; a third finds nothing new.
    await platform.send(org, "inbox", originals[6:])
    await platform.collect(org, "outbox", 10)
    second = await _json("archive", "run", org)
    assert sum(s["records"] for s in second["segments"] if s["topic"] == "inbox") == 4
    third = await _json("archive", "run", org)
    assert not [s for s in third["segments"] if s["topic"] == "inbox"]
    rows = await _json("archive", "list", org, "inbox")
    spans = _contiguous(rows, "inbox")
    name = kafka_topic(org, "inbox")
    highs = [high for _, high in _watermarks(platform, name, 2)]
    assert {p: s[-1][1] for p, s in spans.items()} == {p: h for p, h in enumerate(highs) if h}
    assert sum(r["records"] for r in rows) == 10

    # Kafka forgets them (checked): a plain replay has nothing left to read.
    await asyncio.to_thread(_expire, platform, name, 2)
    gone = await kafkaorg("replay", org, "inbox", "--to", "echo", "--from-offset", "0")
    assert gone.returncode == 0 and "nothing to replay" in gone.stdout, gone.stdout

    one = await _json("archive", "replay", org, "inbox", "--to", "echo", "--from-offset", "0")
    assert (one["records"], one["from_archive"], one["missing"]) == (10, 10, 0)
    outputs = await platform.collect(org, "outbox", 20, settle=1.0)
    replayed = [c.record for c in outputs[10:]]
    assert len(replayed) == 10
    causes = Counter(r.causation_id for r in replayed)
    assert causes == Counter(r.id for r in originals), "every record exactly once"

    # A second run is a second deliberate replay: all ten again, under its own mark.
    two = await _json("archive", "replay", org, "inbox", "--to", "echo", "--since", "1h")
    assert two["run_id"] != one["run_id"] and two["records"] == 10
    again = await platform.collect(org, "outbox", 30, settle=1.0)
    assert len(again) == 30
    marks = Counter(
        dict(m.headers() or []).get("kafkaorg.mark", b"").decode()
        for m in await asyncio.to_thread(
            raw_messages, platform.settings, kafka_topic(org, "outbox"), 30
        )
    )
    assert marks == {"": 10, f"replay:{one['run_id']}": 10, f"replay:{two['run_id']}": 10}

    # A record sent after the expiry comes from Kafka, the rest from the archive.
    await platform.send(org, "inbox", [task(org, 99)])
    await platform.collect(org, "outbox", 31)
    mixed = await _json("archive", "replay", org, "inbox", "--to", "echo", "--from-offset", "0")
    assert (mixed["records"], mixed["from_archive"]) == (11, 10)


async def test_the_audit_topic_is_archived_restored_byte_for_byte_and_verified(
    platform: Platform,
) -> None:
    org = unique_org("ar")
    await platform.start_org(_spec(org))
    await platform.send(org, "inbox", [task(org, n) for n in range(3)])
    await platform.collect(org, "outbox", 3)
    await _json("archive", "run", org)
    rows = await _json("archive", "list", org, "sys.audit")
    archived = sum(r["records"] for r in rows)
    assert archived >= 2, rows  # org.applied, org.running at least

    ok = await kafkaorg("archive", "verify", org)
    assert ok.returncode == 0 and ": ok" in ok.stdout, ok.stdout + ok.stderr

    # Restore: a new topic with every archived record, value and headers identical.
    restored = await _json("archive", "restore", org, "sys.audit", "--to-topic", "audit-copy")
    assert restored["records"] == archived
    originals = await asyncio.to_thread(
        raw_messages, platform.settings, kafka_topic(org, "sys.audit"), archived
    )
    copies = await asyncio.to_thread(
        raw_messages, platform.settings, kafka_topic(org, "audit-copy"), archived
    )
    assert [(m.value(), m.headers(), m.timestamp()) for m in copies] == [
        (m.value(), m.headers(), m.timestamp()) for m in originals[:archived]
    ]
    twice = await kafkaorg("archive", "restore", org, "sys.audit", "--to-topic", "audit-copy")
    assert_one_clear_line(twice, 2, "already holds", "empty topic")

    # Damage: one file's bytes changed, another deleted; verify names both, exit 1.
    storage = ArchiveStorage(platform.settings.archive_location)
    inbox_rows = await _json("archive", "list", org, "inbox")
    assert len(inbox_rows) >= 1
    _damage(Path(storage.full_path(rows[0]["path"])))
    Path(storage.full_path(inbox_rows[0]["path"])).unlink()  # noqa: ASYNC240
    bad = await kafkaorg("archive", "verify", org)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert f"DAMAGED {rows[0]['path']}" in bad.stdout and "checksum" in bad.stdout
    assert f"DAMAGED {inbox_rows[0]['path']}" in bad.stdout and "missing" in bad.stdout
    report = json.loads((await kafkaorg("archive", "verify", org, "--json")).stdout)
    assert report["ok"] is False and {p["kind"] for p in report["problems"]} == {
        "checksum",
        "missing",
    }
    # Reading the damaged archive back is one clear error, not wrong records.
    await asyncio.to_thread(_expire, platform, kafka_topic(org, "inbox"), 2)
    damaged = await kafkaorg(
        "archive", "replay", org, "inbox", "--to", "echo", "--from-offset", "0"
    )
    assert_one_clear_line(damaged, 1, "is damaged", "kafkaorg archive verify")


async def test_concurrent_runs_archive_each_offset_once_and_a_stop_archives_to_the_end(
    platform: Platform,
) -> None:
    org = unique_org("ar")
    await platform.start_org(_spec(org))
    await platform.send(org, "inbox", [task(org, n) for n in range(20)])
    await platform.collect(org, "outbox", 20)
    runs = await asyncio.gather(*(_json("archive", "run", org) for _ in range(3)))
    written = [s for run in runs for s in run["segments"] if s["topic"] == "inbox"]
    assert sum(s["records"] for s in written) == 20, "each record archived by one run only"
    rows = await _json("archive", "list", org)
    _contiguous(rows, "inbox")
    assert len({(r["topic"], r["partition"], r["start_offset"]) for r in rows}) == len(rows)

    # The stop archives what the org wrote up to it, and takes the schedule with it.
    stopped = await kafkaorg("org", "stop", org)
    assert stopped.returncode == 0, stopped.stderr
    with pytest.raises(RPCError):
        await platform.client.get_schedule_handle(archive_schedule_id(org)).describe()
    audit = await _json("archive", "list", org, "sys.audit")
    end = max(r["end_offset"] for r in audit)
    (low_high,) = _watermarks(platform, kafka_topic(org, "sys.audit"), 1)
    assert end >= low_high[1] - 1, "all but the last announcement is archived"
    logged = await asyncio.to_thread(
        raw_messages, platform.settings, kafka_topic(org, "sys.audit"), end
    )
    types = {json.loads(m.value())["type"] for m in logged[:end]}
    assert "org.stopped" in types and "archive.written" in types


async def test_archive_commands_refuse_bad_input(platform: Platform) -> None:
    org = unique_org("ar")
    await platform.start_org(_spec(org))
    cases: list[tuple[tuple[str, ...], int, tuple[str, ...]]] = [
        (("archive", "list", "no-such-org"), 2, ("unknown org 'no-such-org'",)),
        (("archive", "list", "Bad_Org"), 2, ("org name 'Bad_Org' is not valid",)),
        (("archive", "verify", "no-such-org"), 2, ("unknown org",)),
        (
            ("archive", "replay", org, "inbox", "--to", "echo"),
            2,
            ("--from-offset N or --since TIME",),
        ),
        (
            ("archive", "replay", org, "inbox", "--to", "nobody", "--from-offset", "0"),
            2,
            ("unknown agent 'nobody'",),
        ),
        (
            ("archive", "replay", org, "inbox", "--to", "echo", "--since", "yesterday-ish"),
            2,
            ("--since",),
        ),
        (
            ("archive", "restore", org, "inbox", "--to-topic", "copy"),
            2,
            ("nothing of", "is archived"),
        ),
        (
            ("archive", "restore", org, "inbox", "--to-topic", "inbox"),
            2,
            ("must differ",),
        ),
    ]
    for args, code, needles in cases:
        assert_one_clear_line(await kafkaorg(*args), code, *needles)


async def test_a_payload_stored_by_reference_outlives_its_collection_in_the_archive(
    platform: Platform,
) -> None:
    org = unique_org("ar")
    await platform.start_org(_spec(org))
    big: dict[str, JsonValue] = {"blob": "y" * (platform.settings.payload_ref_bytes + 10)}
    (sent,) = await asyncio.to_thread(
        send_records, platform.settings, org, "inbox", type="bulk", payload=big
    )
    assert sent.payload_ref is not None
    await platform.collect(org, "outbox", 1)
    await _json("archive", "run", org)
    digest = sent.payload_ref.sha256
    storage = ArchiveStorage(platform.settings.archive_location)
    assert storage.exists(payload_path(org, digest)), "the archive keeps its own copy"

    # Collected from PostgreSQL (as `db collect-payloads` does after the retention).
    with db_sessions(platform.settings)() as session, session.begin():
        session.execute(delete(PayloadBlob).where(PayloadBlob.sha256 == digest))
    replayed = await _json("archive", "replay", org, "inbox", "--to", "echo", "--from-offset", "0")
    assert (replayed["records"], replayed["payloads_restored"]) == (1, 1)
    outputs = await platform.collect(org, "outbox", 2, settle=1.0)
    again = outputs[1].record
    assert again.causation_id == sent.id and again.payload_ref == sent.payload_ref
    with db_sessions(platform.settings)() as session:
        restored = session.scalar(select(PayloadBlob.data).where(PayloadBlob.sha256 == digest))
    assert restored is not None and json.loads(restored) == big
