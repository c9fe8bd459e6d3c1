"""The loop guard's verdicts and the chain it names, on plain values (no broker)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from bridge.loop_guard import HOP_LIMIT_REASON, RecentRecords, over_hop_limit
from bridge.mapping import Accepted, Origin, dead_letter, decode
from kafkaorg.envelope import Record, caused_by, new_record
from kafkaorg.kinds import emissions_for
from kafkaorg.spec import AgentSpec

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _answer(cause: Record, agent: str) -> Record:
    return Record.model_validate(
        {
            "id": f"{agent}-{cause.id}"[:100],
            "type": "t",
            "source": f"agent:{agent}",
            "timestamp": NOW,
            **caused_by(cause),
        }
    )


def _accepted(record: Record, topic: str) -> Accepted:
    return Accepted(Origin(f"acme.{topic}", 0, 0), record, len(record.kafka_value()))


def test_echo_and_rule_outputs_count_one_hop_more() -> None:
    cause = new_record(org="acme", type="t", source="user:a", payload={}).model_copy(
        update={"hops": 5}
    )
    echo = AgentSpec(name="e", kind="echo", subscribes=["a"], publishes=["b", "c"])
    assert [e.record.hops for e in emissions_for(echo, "wf", cause, NOW)] == [6, 6]


def test_a_record_within_the_limit_passes_and_one_past_it_is_dead_lettered_with_its_chain() -> None:
    recent = RecentRecords()
    record = new_record(org="acme", type="t", source="user:ann", payload={})
    topics = ["tasks", "results"]
    for hop in range(4):
        topic = topics[hop % 2]
        recent.remember(record, topic)
        assert over_hop_limit(_accepted(record, topic), max_hops=3, recent=recent) is None
        record = _answer(record, f"agent-{hop}")
    assert record.hops == 4
    poison = over_hop_limit(_accepted(record, "tasks"), max_hops=3, recent=recent)
    assert poison is not None and poison.reason == HOP_LIMIT_REASON
    assert poison.chain[0] == "user:ann → tasks (t)"
    assert poison.chain[-1] == "agent:agent-3 → tasks (t)"
    assert len(poison.chain) == 5 and "partial" not in poison.detail
    dlq, headers = dead_letter(poison, NOW)
    assert dlq.payload["reason"] == "hop-limit" and dlq.payload["chain"] == list(poison.chain)
    assert ("dlq.reason", b"hop-limit") in headers


def test_a_chain_whose_start_was_forgotten_says_it_is_partial() -> None:
    recent = RecentRecords(capacity=2)
    record = new_record(org="acme", type="t", source="user:ann", payload={})
    for hop in range(5):
        recent.remember(record, "tasks")
        record = _answer(record, f"a{hop}")
    poison = over_hop_limit(_accepted(record, "tasks"), max_hops=2, recent=recent)
    assert poison is not None and "(partial)" in poison.detail
    assert len(poison.chain) == 3  # this record and the two remembered causes


def test_the_bridge_accepts_an_envelope_with_fields_it_does_not_know() -> None:
    record = new_record(org="acme", type="t", source="user:a", payload={"x": 1})
    newer = json.dumps(json.loads(record.kafka_value()) | {"trace_flags": "01"}).encode()
    result = decode(Origin("acme.tasks", 0, 1), newer, max_bytes=10_000)
    assert isinstance(result, Accepted) and result.record == record
