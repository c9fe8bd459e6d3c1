"""Records travel Kafka → bridge → AgentWorkflow → Kafka on the real services."""

from __future__ import annotations

from collections import defaultdict

import pytest

from kafkaorg.envelope import derived_id
from kafkaorg.names import agent_workflow_id
from tests.support import Platform, echo_spec, task, unique_org
from workflows.agent import AgentWorkflow

pytestmark = pytest.mark.integration


async def test_200_records_reach_echo_agent_in_order_per_correlation_id(platform: Platform) -> None:
    org = unique_org()
    await platform.start_org(echo_spec(org, partitions=3))
    correlation_ids = [f"conv-{i}" for i in range(10)]
    sent = [task(org, n, correlation_id=correlation_ids[n % 10]) for n in range(200)]
    await platform.send(org, "inbox", sent)

    out = await platform.collect(org, "outbox", 200, timeout=120, settle=2.0)

    assert len(out) == 200, f"expected exactly 200 outputs, got {len(out)}"
    by_input = {r.id: r for r in sent}
    assert {c.record.causation_id for c in out} == set(by_input)
    for c in out:
        source = by_input[c.record.causation_id or ""]
        assert c.record.source == "agent:echo"
        assert c.record.payload == source.payload
        assert c.record.correlation_id == source.correlation_id
        assert c.record.type == source.type
    # Order per correlation id: outputs of one conversation sit in one partition, in send order.
    sent_order: dict[str, list[str]] = defaultdict(list)
    for r in sent:
        sent_order[r.correlation_id].append(r.id)
    out_order: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    for c in out:
        out_order[c.record.correlation_id].append(
            (c.partition, c.offset, c.record.causation_id or "")
        )
    for cid, outputs in out_order.items():
        assert len({p for p, _, _ in outputs}) == 1, f"{cid} spread over partitions"
        assert [i for _, _, i in sorted(outputs)] == sent_order[cid]


async def test_chain_rule_then_echo_carries_a_record_end_to_end(platform: Platform) -> None:
    org = unique_org()
    await platform.start_org(
        {
            "org": org,
            "topics": [
                {"name": "tasks"},
                {"name": "triaged"},
                {"name": "results", "class": "audit"},
            ],
            "agents": [
                {
                    "name": "triage",
                    "kind": "rule",
                    "subscribes": ["tasks"],
                    "publishes": ["triaged"],
                    "rules": [
                        {
                            "on": "task.request",
                            "emit": "task.triaged",
                            "to": "triaged",
                            "map": {"title": "$.payload.title", "team": "ops", "by": "$.source"},
                        }
                    ],
                },
                {
                    "name": "recorder",
                    "kind": "echo",
                    "subscribes": ["triaged"],
                    "publishes": ["results"],
                },
            ],
        }
    )
    wanted = task(org, 1)
    ignored = task(org, 2, type_="task.cancelled")  # no rule matches: no output
    await platform.send(org, "tasks", [ignored, wanted])

    triaged = await platform.collect(org, "triaged", 1, settle=2.0)
    results = await platform.collect(org, "results", 1, settle=1.0)

    assert len(triaged) == 1 and len(results) == 1
    middle, final = triaged[0].record, results[0].record
    assert middle.type == "task.triaged"
    assert middle.payload == {"title": "task 1", "team": "ops", "by": "user:test"}
    assert middle.causation_id == wanted.id
    assert middle.id == derived_id(agent_workflow_id(org, "triage"), wanted.id, 0)
    assert final.causation_id == middle.id
    assert final.source == "agent:recorder"
    assert final.correlation_id == wanted.correlation_id
    assert final.payload == middle.payload


async def test_same_record_id_twice_produces_one_output(platform: Platform) -> None:
    org = unique_org()
    await platform.start_org(echo_spec(org, partitions=1))
    record = task(org, 7)
    await platform.send(org, "inbox", [record])
    await platform.send(org, "inbox", [record])  # a redelivery, as after a bridge crash
    await platform.send(org, "inbox", [task(org, 8)])  # a later record proves both were read

    out = await platform.collect(org, "outbox", 2, settle=3.0)

    assert [c.record.causation_id for c in out].count(record.id) == 1
    assert len(out) == 2
    handle = platform.client.get_workflow_handle_for(
        AgentWorkflow.run, agent_workflow_id(org, "echo")
    )
    status = await handle.query(AgentWorkflow.status)
    assert status.duplicates == 1
    assert status.processed == 2


async def test_bare_json_is_wrapped_as_external_with_position_derived_id(
    platform: Platform,
) -> None:
    org = unique_org()
    await platform.start_org(echo_spec(org, partitions=1))
    await platform.send_raw(org, "inbox", b'{"hello": "world"}', headers=[("type", b"greeting")])

    out = await platform.collect(org, "outbox", 1, settle=1.0)

    assert len(out) == 1
    record = out[0].record
    assert record.payload == {"hello": "world"}
    assert record.type == "greeting"
    assert record.causation_id == derived_id("external", f"{org}.inbox", 0, 0)
