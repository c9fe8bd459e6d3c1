"""How far the bridge is behind: per partition, high watermark minus its committed offset.

Read from Kafka (list offsets and the group's committed offsets, two admin calls for
any number of partitions), so it is right whether or not a bridge runs. Also here: the
small status file a running bridge writes (paused partitions and why), which
``kafkaorg dev status`` shows next to the lag.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
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


# -- the bridge's status file ---------------------------------------------------------------


def bridge_status_dir(settings: Settings) -> Path:
    return settings.state_dir / "run" / "bridge-status"


def write_bridge_status(settings: Settings, status: dict[str, Any]) -> Path:
    """Atomically replace this process's status file (one per bridge pid)."""
    folder = bridge_status_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(status, sort_keys=True))
    tmp.replace(path)
    return path


def read_bridge_statuses(settings: Settings) -> list[dict[str, Any]]:
    """Status of every bridge still alive; files of dead bridges are removed."""
    folder = bridge_status_dir(settings)
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            pid = int(path.stem)
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            path.unlink(missing_ok=True)
            continue
        except PermissionError:
            pass
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return out
