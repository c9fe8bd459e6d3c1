"""Delivery guarantees at the exact moment they are about: a bridge that dies after
Temporal accepted its signals but before it committed the offsets, and a bridge whose
subscription snapshot would be far too old to route a record."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from kafkaorg import client as service
from kafkaorg.config import Settings
from kafkaorg.contracts import AgentSignal, Delivery
from kafkaorg.envelope import Record
from kafkaorg.faults import FAULT_EXIT_CODE, FAULTS_ENV, FaultPoint
from kafkaorg.kafka import client_config
from kafkaorg.names import dlq_topic, kafka_topic
from tests.support import Platform, echo_spec, raw_messages, run_cli_async, task, unique_org

pytestmark = pytest.mark.integration


async def test_a_bridge_dying_between_signal_and_commit_redelivers_and_dedup_absorbs_it(
    platform: Platform,
) -> None:
    org = unique_org()
    await platform.start_org(echo_spec(org, partitions=1))
    sent = [task(org, n) for n in range(20)]
    with platform.replaced(
        platform.bridge, **{FAULTS_ENV: FaultPoint.BRIDGE_AFTER_SIGNAL.value}
    ) as faulty:
        await platform.send(org, "inbox", sent)
        assert faulty.process is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(faulty.process.wait, 60)
        assert faulty.returncode == FAULT_EXIT_CODE, "the bridge never reached the fault point"
        first = await service.agent_report(platform.client, org, "echo")
        assert first.received == 20, "Temporal had the signal before the bridge died"
    # The session's bridge is back: the uncommitted batch comes again, and only again.
    out = await platform.collect(org, "outbox", 20, timeout=60, settle=3.0)
    assert sorted(c.record.causation_id or "" for c in out) == sorted(r.id for r in sent)
    report = await platform.agent_status(org, "echo", until=lambda s: s.duplicates >= 20)
    assert (report.received, report.duplicates, report.processed) == (40, 20, 20)


async def test_a_record_sent_right_after_agent_create_arrives_despite_an_old_snapshot(
    platform: Platform, tmp_path: Path
) -> None:
    """An hour-long snapshot age: only the record-time refresh can route to the new agent."""
    org = unique_org()
    await platform.start_org(echo_spec(org, partitions=1))
    with platform.replaced(platform.bridge, KAFKAORG_BRIDGE_SUBSCRIPTION_TTL_S="3600"):
        await platform.send(org, "inbox", [task(org, 0)])  # the snapshot now knows the org
        await platform.collect(org, "outbox", 1, timeout=60)
        for n in range(1, 3):
            name = f"late-{n}"
            path = tmp_path / f"{name}.yaml"
            path.write_text(
                yaml.safe_dump(
                    {"name": name, "kind": "echo", "subscribes": ["inbox"], "publishes": ["outbox"]}
                )
            )
            created = await run_cli_async("agent", "create", org, str(path))
            assert created.returncode == 0, created.stderr
            await platform.send(org, "inbox", [task(org, n)])
            report = await platform.agent_status(
                org, name, until=lambda s: s.processed == 1, timeout=30
            )
            assert report.processed == 1, f"{name} never got the record sent right after it"


async def test_a_step_that_fails_every_retry_dead_letters_its_whole_batch_with_attempts(
    platform: Platform,
) -> None:
    org = unique_org()
    await platform.start_org(echo_spec(org, partitions=1))
    sent = [task(org, n) for n in range(5)]
    with platform.replaced(platform.worker, **{FAULTS_ENV: FaultPoint.AGENT_STEP_RAISE.value}):
        handle = await platform.restart_agent(org, "echo", step_max_attempts=3)
        await handle.signal(AgentSignal.PAUSE)  # the whole batch in one step
        await handle.signal(AgentSignal.DELIVER, Delivery(records=sent))
        await handle.signal(AgentSignal.RESUME)
        dead = await asyncio.to_thread(raw_messages, platform.settings, dlq_topic(org), 5, 60)
    assert sorted(Record.from_kafka_value(m.value()).id for m in dead) == sorted(r.id for r in sent)
    for message in dead:
        headers = {k: v for k, v in message.headers()}
        assert headers["dlq.reason"] == b"agent-step-failed"
        assert headers["dlq.attempts"] == b"3"
        assert b"agent-step.raise" in headers["dlq.error"]
    report = await service.agent_report(platform.client, org, "echo")
    assert report.dead_lettered == 5 and report.failed_reason


def _read_uncommitted(settings: Settings, topic: str, timeout: float = 5.0) -> list[str]:
    """Every record id on the topic, aborted transactions' included."""
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": f"test-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "isolation.level": "read_uncommitted",
        }
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    ids: list[str] = []
    try:
        for _ in range(int(timeout / 0.2)):
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                ids.append(Record.from_kafka_value(message.value() or b"").id)
    finally:
        consumer.close()
    return ids


def _worker_ids(log: Path) -> list[str]:
    return re.findall(r"worker id (\S+)", log.read_text(encoding="utf-8", errors="replace"))


async def test_a_worker_killed_mid_transaction_is_fenced_by_its_restarted_successor(
    platform: Platform,
) -> None:
    """The restarted process takes the same worker slot, so the same transactional ids:
    its start fences the dead one's open transaction, and the step's retry commits the
    outputs once. Read-committed consumers never see the aborted copies."""
    org = unique_org()
    spec = echo_spec(org, partitions=1)
    spec["topics"].append({"name": "copy", "partitions": 1})
    spec["agents"][0]["publishes"] = ["outbox", "copy"]  # two outputs: one transaction
    await platform.start_org(spec)
    record = task(org, 1)
    fault = {FAULTS_ENV: FaultPoint.TRANSACTION_BEFORE_COMMIT.value}
    with platform.replaced(platform.worker, **fault) as faulty:
        await platform.send(org, "inbox", [record])
        assert faulty.process is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(faulty.process.wait, 60)
        assert faulty.returncode == FAULT_EXIT_CODE, "the worker never reached the fault point"
        dead_id = _worker_ids(faulty.log_path)[-1]
    # The session's worker is back; the step is retried once its heartbeat times out.
    outbox = await platform.collect(org, "outbox", 1, timeout=90, settle=3.0)
    copy = await platform.collect(org, "copy", 1, timeout=30, settle=1.0)
    assert len(outbox) == len(copy) == 1
    assert _worker_ids(platform.worker.log_path)[-1] == dead_id, "the same slot, so fenced"
    raw = await asyncio.to_thread(_read_uncommitted, platform.settings, kafka_topic(org, "outbox"))
    assert raw == [outbox[0].record.id] * 2, "the aborted copy and the committed one"
