"""``<org>.sys.agents``: each agent's latest status on a compacted topic, key = agent name.

Real Kafka compaction: the test shortens the topic's segments and cleaning lag so the
broker's log cleaner compacts it while the test waits.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from kafkaorg import client as service
from kafkaorg.config import Settings
from kafkaorg.contracts import AgentAction, AgentCommand
from kafkaorg.kafka import client_config, create_admin
from kafkaorg.names import agents_topic
from tests.support import Platform, unique_org

pytestmark = pytest.mark.integration


def _spec(org: str) -> dict[str, Any]:
    return {
        "org": org,
        "topics": [{"name": "inbox"}, {"name": "outbox"}],
        "agents": [
            {"name": name, "kind": "echo", "subscribes": ["inbox"], "publishes": ["outbox"]}
            for name in ("alpha", "beta")
        ],
    }


def _feed(settings: Settings, org: str) -> list[tuple[str, dict[str, Any]]]:
    """(key, payload) of every record on the org's sys.agents now, oldest first."""
    topic = agents_topic(org)
    consumer = Consumer(
        {**client_config(settings), "group.id": f"test-{uuid.uuid4()}", "enable.auto.commit": False}
    )
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        out: list[tuple[str, dict[str, Any]]] = []
        deadline = time.monotonic() + 30
        position = low
        while position < high:
            assert time.monotonic() < deadline, f"read {position} of {high} on {topic}"
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            position = (message.offset() or 0) + 1
            payload = json.loads(message.value() or b"{}").get("payload", {})
            out.append(((message.key() or b"").decode(), payload))
        return out
    finally:
        consumer.close()


async def _feed_of(settings: Settings, org: str, at_least: int) -> list[tuple[str, dict[str, Any]]]:
    """The feed once it holds ``at_least`` records (the statuses are published as they commit)."""
    deadline = time.monotonic() + 30
    while len(feed := await asyncio.to_thread(_feed, settings, org)) < at_least:
        assert time.monotonic() < deadline, feed
        await asyncio.sleep(0.3)
    return feed


def _latest(feed: list[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    return {key: payload["status"] for key, payload in feed if "status" in payload}


async def _change(platform: Platform, org: str, agent: str, action: AgentAction) -> None:
    await service.change_agent(platform.client, org, AgentCommand(agent=agent, action=action))


async def test_agent_statuses_are_published_and_compaction_keeps_the_latest(
    platform: Platform,
) -> None:
    org = unique_org("feed")
    await platform.start_org(_spec(org))
    await _change(platform, org, "alpha", AgentAction.PAUSE)
    await _change(platform, org, "beta", AgentAction.RETIRE)

    feed = await _feed_of(platform.settings, org, 4)
    assert _latest(feed) == {"alpha": "paused", "beta": "retired"}
    assert {key for key, _ in feed} == {"alpha", "beta"}
    assert [p["kind"] for _, p in feed] == ["echo"] * len(feed)

    topic = agents_topic(org)
    admin = create_admin(platform.settings)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    described = admin.describe_configs([resource])[resource].result()
    assert described["cleanup.policy"].value == "compact"

    # Make the cleaner take the topic now: tiny segments, no lag, any dirt is enough.
    settings_now = {
        "segment.ms": "100",
        "min.compaction.lag.ms": "0",
        "min.cleanable.dirty.ratio": "0.001",
    }
    changes = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
            for k, v in settings_now.items()
        ],
    )
    admin.incremental_alter_configs([changes])[changes].result()
    for action in (AgentAction.RESUME, AgentAction.PAUSE, AgentAction.RESUME):
        await _change(platform, org, "alpha", action)
    before = await _feed_of(platform.settings, org, len(feed) + 3)
    assert _latest(before) == {"alpha": "running", "beta": "retired"}
    assert len(before) > 2

    # A record after the segment time rolls the segment that holds the statuses.
    producer = Producer(client_config(platform.settings))
    deadline = time.monotonic() + 120
    while True:
        await asyncio.sleep(1.0)
        producer.produce(topic, key=b"zz-roll", value=b'{"payload": {}}')
        producer.flush(10)
        after = await asyncio.to_thread(_feed, platform.settings, org)
        agent_records = [(k, p) for k, p in after if k != "zz-roll"]
        if len(agent_records) == 2:
            break
        assert time.monotonic() < deadline, f"not compacted: {len(agent_records)} agent records"
    assert _latest(agent_records) == {"alpha": "running", "beta": "retired"}
