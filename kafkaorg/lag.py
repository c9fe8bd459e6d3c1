"""How far the bridge is behind: per partition, high watermark minus its committed offset.

Read from Kafka (list offsets and the group's committed offsets, two admin calls for
any number of partitions), so it is right whether or not a bridge runs. What a running
bridge says of itself (paused partitions and why) is in ``kafkaorg/bridge_status.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec

from kafkaorg.config import Settings
from kafkaorg.errors import ServiceUnavailableError
from kafkaorg.kafka import create_admin
from kafkaorg.names import BRIDGE_GROUP_ID, BRIDGE_TOPIC_PATTERN


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    high: int
    committed: int | None
    """None: the group never committed here (it starts from the beginning)."""
    lag: int


def bridge_lag(
    settings: Settings, org: str | None = None, timeout: float = 10.0
) -> list[PartitionLag]:
    """The bridge group's lag on every partition of the org's topics (all orgs if None)."""
    admin = create_admin(settings)
    try:
        metadata = admin.list_topics(timeout=timeout)
        pattern = re.compile(BRIDGE_TOPIC_PATTERN)
        partitions = [
            TopicPartition(name, p)
            for name, topic in sorted(metadata.topics.items())
            if pattern.match(name) and (org is None or name.startswith(f"{org}."))
            for p in sorted(topic.partitions)
        ]
        if not partitions:
            return []
        low = _offsets(admin, partitions, OffsetSpec.earliest(), timeout)
        high = _offsets(admin, partitions, OffsetSpec.latest(), timeout)
        request = [ConsumerGroupTopicPartitions(BRIDGE_GROUP_ID, partitions)]
        group = admin.list_consumer_group_offsets(request, request_timeout=timeout)
        result = group[BRIDGE_GROUP_ID].result(timeout)
    except KafkaException as exc:
        raise ServiceUnavailableError(f"reading the bridge's lag failed: {exc}") from None
    committed = {
        (tp.topic, tp.partition): tp.offset for tp in result.topic_partitions if tp.offset >= 0
    }
    out = []
    for tp in partitions:
        key = (tp.topic, tp.partition)
        at = committed.get(key)
        start = max(at if at is not None else low[key], low[key])
        out.append(PartitionLag(tp.topic, tp.partition, high[key], at, max(0, high[key] - start)))
    return out


def _offsets(
    admin: Any, partitions: list[TopicPartition], spec: OffsetSpec, timeout: float
) -> dict[tuple[str, int], int]:
    futures = admin.list_offsets({tp: spec for tp in partitions}, request_timeout=timeout)
    return {(tp.topic, tp.partition): f.result(timeout).offset for tp, f in futures.items()}


def lag_by_topic(lags: list[PartitionLag]) -> dict[str, int]:
    """Total lag per Kafka topic."""
    out: dict[str, int] = {}
    for item in lags:
        out[item.topic] = out.get(item.topic, 0) + item.lag
    return out
