"""A step's several outputs are one Kafka transaction: all visible to read-committed
consumers, or none, and a crashed worker's open transaction is aborted by its successor."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import NewTopic

from kafkaorg.config import Settings
from kafkaorg.envelope import new_record
from kafkaorg.kafka import (
    Outgoing,
    TransactionalProducers,
    client_config,
    create_admin,
    producer_config,
)
from kafkaorg.lag import bridge_lag
from kafkaorg.names import kafka_topic
from tests.support import Platform, collect_records, task, unique_org

pytestmark = pytest.mark.integration


def _watermarks(settings: Settings, topic: str) -> tuple[int, int]:
    consumer = Consumer({**client_config(settings), "group.id": f"test-{uuid.uuid4()}"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        return int(low), int(high)
    finally:
        consumer.close()


async def test_a_step_with_several_outputs_commits_them_as_one_transaction(
    platform: Platform,
) -> None:
    org = unique_org("txn")
    await platform.start_org(
        {
            "org": org,
            "topics": [{"name": "in", "partitions": 1}, {"name": "out", "partitions": 1}],
            "agents": [
                {
                    "name": "splitter",
                    "kind": "rule",
                    "subscribes": ["in"],
                    "publishes": ["out"],
                    "rules": [
                        {"on": "*", "emit": "part.one", "to": "out"},
                        {"on": "*", "emit": "part.two", "to": "out"},
                        {"on": "*", "emit": "part.three", "to": "out"},
                    ],
                }
            ],
        }
    )
    await platform.send(org, "in", [task(org, 1)])
    out = await platform.collect(org, "out", 3, settle=1.0)
    assert sorted(c.record.type for c in out) == ["part.one", "part.three", "part.two"]
    # Three records and one commit marker: only a transaction writes the marker.
    assert sorted(c.offset for c in out) == [0, 1, 2]
    assert _watermarks(platform.settings, kafka_topic(org, "out"))[1] == 4
    # The bridge, idle, commits past the marker: its lag on ``out`` goes to 0, not 1.
    lag = None
    for _ in range(40):
        lag = sum(p.lag for p in bridge_lag(platform.settings, org) if p.topic.endswith(".out"))
        if lag == 0:
            break
        await asyncio.sleep(0.5)
    assert lag == 0


def test_a_crashed_producers_open_transaction_is_never_seen_and_is_aborted_by_its_successor(
    stack: Settings,
) -> None:
    topic = f"txn-{uuid.uuid4().hex[:8]}.out"
    admin = create_admin(stack)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result()
    org = "txn"
    prefix = f"test-{uuid.uuid4().hex[:8]}"

    def records(n: int) -> list[Outgoing]:
        return [
            Outgoing(topic, new_record(org=org, type="t", source="user:test", payload={"n": i}))
            for i in range(n)
        ]

    # A "worker" that dies mid-transaction: records sent, never committed.
    from confluent_kafka import Producer

    zombie = Producer(
        {
            **producer_config(stack),
            "transactional.id": f"{prefix}-0",
            "transaction.timeout.ms": 60_000,
        }
    )
    zombie.init_transactions(30)
    zombie.begin_transaction()
    for item in records(3):
        zombie.produce(item.kafka_topic, key=item.record.kafka_key(), value=item.value)
    assert zombie.flush(10) == 0  # on the broker, but uncommitted

    # Its successor (same worker id) fences it at start; then commits its own step.
    successor = TransactionalProducers(stack, prefix=prefix, size=1)
    successor.fence_all()
    committed = records(2)
    assert successor.produce(committed) == 2

    seen = collect_records(stack, topic, 2, timeout=30, settle=1.0)
    assert [c.record.id for c in seen] == [o.record.id for o in committed]
    del zombie
