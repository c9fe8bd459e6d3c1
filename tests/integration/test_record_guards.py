"""Guards on the record path, end to end: agent loops end by themselves, a newer
producer's records are processed, and no record is committed unrecorded."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import NewTopic

from kafkaorg import client as service
from kafkaorg.envelope import Record
from kafkaorg.kafka import create_admin, create_missing_topics
from kafkaorg.names import PLATFORM_DLQ_TOPIC, dlq_topic
from tests.support import (
    Platform,
    echo_spec,
    raw_messages,
    run_cli_async,
    task,
    unique_org,
)

pytestmark = pytest.mark.integration

MAX_HOPS = 4


def _loop_spec(org: str) -> dict[str, object]:
    """Three echo agents tasks → results and one results → tasks: each round trip
    triples the records, without end unless something stops it."""
    agents = [
        {"name": f"fwd-{i}", "kind": "echo", "subscribes": ["tasks"], "publishes": ["results"]}
        for i in range(3)
    ]
    agents.append(
        {"name": "back", "kind": "echo", "subscribes": ["results"], "publishes": ["tasks"]}
    )
    return {
        "org": org,
        "topics": [{"name": "tasks", "partitions": 1}, {"name": "results", "partitions": 1}],
        "agents": agents,
        "limits": {"max_hops": MAX_HOPS},
    }


async def test_an_agent_loop_stops_at_the_hop_limit_and_the_agents_stay_healthy(
    platform: Platform,
) -> None:
    org = unique_org()
    await platform.start_org(_loop_spec(org))
    await platform.send(org, "tasks", [task(org, 1)])
    # hops 1: 3 results, 2: 3 tasks, 3: 9 results, 4: 9 tasks, 5: 27 results (over the
    # limit: dead-lettered, not processed). Without the guard it never ends.
    dead = await asyncio.to_thread(raw_messages, platform.settings, dlq_topic(org), 27, 120)
    assert len(dead) == 27
    entries = [Record.from_kafka_value(m.value()) for m in dead]
    assert {e.payload["reason"] for e in entries} == {"hop-limit"}
    chain = entries[0].payload["chain"]
    assert isinstance(chain, list) and len(chain) == MAX_HOPS + 2  # the user's record + 5 hops
    assert str(chain[0]).startswith("user:test → tasks")
    assert "agent:back → tasks" in str(chain[2]) and "agent:fwd-" in str(chain[-1])
    await asyncio.sleep(3)  # nothing more comes: the loop ended by itself
    results = await platform.collect(org, "results", 40, timeout=10, settle=1.0)
    tasks = await platform.collect(org, "tasks", 14, timeout=10, settle=1.0)
    assert (len(results), len(tasks)) == (3 + 9 + 27, 1 + 3 + 9)
    assert max(c.record.hops for c in results) == MAX_HOPS + 1
    for agent in ("fwd-0", "fwd-1", "fwd-2", "back"):
        report = await service.agent_report(platform.client, org, agent)
        assert report.failed_reason is None and report.dead_lettered == 0


async def test_hops_are_shown_by_tail(platform: Platform) -> None:
    org = unique_org()
    await platform.start_org(echo_spec(org, partitions=1))
    await platform.send(org, "inbox", [task(org, 1)])
    await platform.collect(org, "outbox", 1)
    out = await run_cli_async("tail", org, "outbox", "--from-beginning", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[0])["hops"] == 1


async def test_a_record_from_a_newer_producer_is_processed(platform: Platform) -> None:
    org = unique_org()
    await platform.start_org(echo_spec(org, partitions=1))
    record = task(org, 7)
    newer = json.loads(record.kafka_value()) | {"trace_flags": "01", "priority": {"class": "a"}}
    await platform.send_raw(org, "inbox", json.dumps(newer).encode(), key=b"k")
    out = await platform.collect(org, "outbox", 1, timeout=60)
    assert out[0].record.causation_id == record.id
    assert out[0].record.payload == record.payload
    dlq = await asyncio.to_thread(raw_messages, platform.settings, dlq_topic(org), 1, 3)
    assert dlq == []


async def test_poison_on_a_topic_of_no_org_goes_to_the_platform_dlq(platform: Platform) -> None:
    """A topic that looks like an org's, but no org (and so no org DLQ) exists."""
    ghost = f"ghost-{uuid.uuid4().hex[:8]}"
    topic = f"{ghost}.tasks"
    await asyncio.to_thread(
        create_missing_topics, create_admin(platform.settings), [NewTopic(topic, 1, 1)]
    )
    marker = f"not json {uuid.uuid4()}".encode()
    await platform.send_raw(ghost, "tasks", marker)

    def find() -> list[Record]:
        entries = raw_messages(platform.settings, PLATFORM_DLQ_TOPIC, 10_000, timeout=5)
        found = [Record.from_kafka_value(m.value()) for m in entries]
        return [r for r in found if r.payload.get("topic") == topic]

    found: list[Record] = []
    for _ in range(30):  # the bridge sees a new topic within its metadata refresh
        found = await asyncio.to_thread(find)
        if found:
            break
        await asyncio.sleep(1)
    assert len(found) == 1
    assert found[0].payload["reason"] == "not-json"
    assert str(found[0].payload["value_preview"]) == marker.decode()


async def test_cli_creates_a_rule_agent_whose_rule_is_keyed_on(
    platform: Platform, tmp_path: Path
) -> None:
    """``on:`` is a key in YAML 1.2 (and to every kafkaorg loader), not the boolean true."""
    org = unique_org()
    await platform.start_org(echo_spec(org, partitions=1))
    agent = tmp_path / "router.yaml"
    agent.write_text(
        "name: router\nkind: rule\nsubscribes: [inbox]\npublishes: [outbox]\n"
        "rules:\n  - on: task.request\n    emit: task.routed\n    to: outbox\n"
        "    map: {title: $.payload.title}\n",
        encoding="utf-8",
    )
    created = await run_cli_async("agent", "create", org, str(agent))
    assert created.returncode == 0, created.stderr
    assert "+ agent router (rule)" in created.stdout
    await platform.send(org, "inbox", [task(org, 3)])
    out = await platform.collect(org, "outbox", 2, timeout=60, settle=1.0)
    routed = [c.record for c in out if c.record.type == "task.routed"]
    assert len(routed) == 1 and routed[0].payload == {"title": "task 3"}
