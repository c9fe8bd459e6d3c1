"""The archive's rates: archiving to Parquet, and replaying from the archive, each beside
its Kafka-only counterpart measured in the same round on the same records.

Each round starts an org with two ``archive: true`` topics, ``bulk`` (``--records``) and
``replayed`` (``--replay-records``), and an echo agent ``sink`` that subscribes to
neither. Then, all in this process:

* **kafka read**: the two topics read end to end with the archive's own reader (no
  file written): the floor any archive run stands on;
* **archive**: an archive run of the org (``ArchiveWriter.archive_org``: read, encode
  to Parquet with zstd, write, checksum, manifest row) over the same records;
* **replay kafka** / **replay archive**: ``replayed`` delivered to ``sink`` by
  ``kafkaorg replay``'s code and by ``kafkaorg archive replay``'s (every record from the
  archive: Kafka still has them, so the two read the same records). The order of the
  two alternates by round; the sink's echo outputs are awaited (untimed) after each.

Reported: records/s per phase (median over rounds), archive/kafka-read and
replay-archive/replay-kafka per round and of the medians, and bytes per record in
Parquet. Needs the core stack up (``kafkaorg dev up``; this starts its own worker and
bridge) and no other worker::

    python -m bench.bench_archive --records 100000 --replay-records 10000 --rounds 3 \\
        --out bench/results/2026-12-07-archive/archive.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import TopicPartition
from temporalio.client import Client

from bench.echo.harness import BenchError, bench_records, err
from bench.echo.kafkaorg_path import stop_org
from bench.echo.report import machine, write_report
from bench.echo.stack import PlatformProcesses, check_stack, wait_for_own_processes
from kafkaorg import client as service
from kafkaorg.archive.replay import deliver_archive_replay, plan_archive_replay
from kafkaorg.archive.writer import ArchiveWriter
from kafkaorg.config import Settings, get_settings
from kafkaorg.db import create_engine, create_sessionmaker
from kafkaorg.kafka import create_admin, create_producer
from kafkaorg.log_ranges import RangeReader, range_consumer, watermarks
from kafkaorg.names import kafka_topic
from kafkaorg.record_replay import deliver_replay, plan_replay
from kafkaorg.redelivery import PartitionRange
from kafkaorg.spec import validate_spec

PHASES = ("kafka read", "archive", "replay kafka", "replay archive")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--replay-records", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args(argv)


def org_spec(org: str, partitions: int) -> dict[str, Any]:
    return {
        "org": org,
        "topics": [
            {"name": "bulk", "partitions": partitions, "archive": True},
            {"name": "replayed", "partitions": partitions, "archive": True},
            {"name": "side"},
            {"name": "outbox"},
        ],
        "agents": [
            {"name": "sink", "kind": "echo", "subscribes": ["side"], "publishes": ["outbox"]}
        ],
    }


def produce(settings: Settings, topic: str, count: int, tag: str) -> None:
    producer = create_producer(settings)
    for record in bench_records(topic.split(".")[0], count, 300, tag):
        while True:
            try:
                producer.produce(
                    topic,
                    key=record.kafka_key(),
                    value=record.kafka_value(),
                    headers=record.kafka_headers(),
                )
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    if producer.flush(60):
        raise BenchError(f"not every record reached {topic}")


def kafka_read(settings: Settings, topics: list[str]) -> int:
    """Read the topics end to end with the archive's reader; how many records."""
    total = 0
    for name in topics:
        consumer = range_consumer(settings, f"bench-archive-{uuid.uuid4()}")
        try:
            admin = create_admin(settings)
            partitions = sorted(admin.list_topics(name, timeout=10).topics[name].partitions)
            ranges = [
                PartitionRange(p, low, high)
                for p, (low, high) in watermarks(admin, name, partitions).items()
            ]
            reader = RangeReader(consumer, name, ranges)
            while not reader.done:
                total += len(reader.next_batch())
        finally:
            consumer.close()
    return total


def outputs(settings: Settings, topic: str) -> int:
    consumer = range_consumer(settings, f"bench-archive-{uuid.uuid4()}")
    try:
        metadata = create_admin(settings).list_topics(topic, timeout=10).topics[topic]
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in metadata.partitions
        )
    finally:
        consumer.close()


async def wait_outputs(settings: Settings, topic: str, count: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while await asyncio.to_thread(outputs, settings, topic) < count:
        if time.monotonic() > deadline:
            raise BenchError(f"the sink's outputs did not reach {count} on {topic}")
        await asyncio.sleep(0.5)


async def one_round(
    settings: Settings,
    client: Client,
    writer: ArchiveWriter,
    args: argparse.Namespace,
    round_: int,
) -> dict[str, Any]:
    org = f"arb-{uuid.uuid4().hex[:8]}"
    spec = validate_spec(org_spec(org, args.partitions), source="bench")
    await asyncio.wait_for(service.launch_org(settings, spec), timeout=90)
    bulk, replayed = kafka_topic(org, "bulk"), kafka_topic(org, "replayed")
    try:
        await asyncio.to_thread(produce, settings, bulk, args.records, "bulk")
        await asyncio.to_thread(produce, settings, replayed, args.replay_records, "replayed")
        out: dict[str, Any] = {}

        start = time.perf_counter()
        read = await asyncio.to_thread(kafka_read, settings, [bulk, replayed])
        out["kafka read"] = read / (time.perf_counter() - start)

        start = time.perf_counter()
        result = await asyncio.to_thread(writer.archive_org, org)
        seconds = time.perf_counter() - start
        archived = [s for s in result.segments if s.topic in ("bulk", "replayed")]
        count = sum(s.records for s in archived)
        if count != read:
            raise BenchError(f"archived {count} records of {read}")
        out["archive"] = count / seconds
        out["parquet bytes/record"] = sum(s.bytes for s in archived) / count

        partitions = list(range(args.partitions))
        order = ["replay kafka", "replay archive"]
        if round_ % 2:
            order.reverse()
        expected = 0
        for phase in order:
            if phase == "replay kafka":
                planned = plan_replay(settings, org, "replayed", "sink", partitions, from_offset=0)
                start = time.perf_counter()
                done = await deliver_replay(settings, client, planned)
            else:
                planned_a = plan_archive_replay(
                    settings, org, "replayed", "sink", partitions, from_offset=0
                )
                start = time.perf_counter()
                from_archive = await deliver_archive_replay(settings, client, planned_a)
                if from_archive.from_archive != args.replay_records:
                    raise BenchError(f"only {from_archive.from_archive} from the archive")
                done = from_archive
            out[phase] = done.records / (time.perf_counter() - start)
            if done.records != args.replay_records:
                raise BenchError(f"{phase}: {done.records}/{args.replay_records} delivered")
            expected += args.replay_records
            await wait_outputs(settings, kafka_topic(org, "outbox"), expected)
        return out
    finally:
        await asyncio.wait_for(stop_org(client, org), timeout=120)


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    medians = {p: statistics.median(r[p] for r in rounds) for p in PHASES}
    return {
        **{f"{p} records/s": round(v) for p, v in medians.items()},
        "parquet bytes/record": round(
            statistics.median(r["parquet bytes/record"] for r in rounds), 1
        ),
        "archive/kafka read": round(medians["archive"] / medians["kafka read"], 3),
        "archive/kafka read per round": [round(r["archive"] / r["kafka read"], 3) for r in rounds],
        "replay archive/replay kafka": round(
            medians["replay archive"] / medians["replay kafka"], 3
        ),
        "replay archive/replay kafka per round": [
            round(r["replay archive"] / r["replay kafka"], 3) for r in rounds
        ],
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    archive_dir = Path(tempfile.mkdtemp(prefix="kafkaorg-bench-archive-"))
    env = {"KAFKAORG_ARCHIVE_URL": archive_dir.as_uri(), "KAFKAORG_ARCHIVE_INTERVAL_S": "3600"}
    os.environ.update(env)
    get_settings.cache_clear()
    settings = get_settings()
    client = await check_stack(settings)
    engine = create_engine(settings.database_url)
    writer = ArchiveWriter(
        settings,
        engine,
        create_sessionmaker(engine),
        create_admin(settings),
        create_producer(settings),
    )
    processes = PlatformProcesses(dict(env))
    processes.start()
    rounds: list[dict[str, Any]] = []
    try:
        await wait_for_own_processes(client, settings, processes)
        for round_ in range(args.rounds):
            err.print(f"round {round_ + 1}/{args.rounds} …")
            result = await one_round(settings, client, writer, args, round_)
            processes.check_alive()
            rounds.append(result)
            err.print("  " + ", ".join(f"{p} {result[p]:,.0f}/s" for p in PHASES))
    finally:
        processes.stop()
    return {
        "when": datetime.now(UTC).isoformat(),
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "summary": summary(rounds),
        "rounds": rounds,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = asyncio.run(run(args))
    except BenchError as exc:
        err.print(f"[red]error:[/] {exc}")
        return 1
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
