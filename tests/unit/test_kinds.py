from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kafkaorg.envelope import derived_id, new_record
from kafkaorg.kinds import AgentStepError, emissions_for
from kafkaorg.spec import AgentSpec

NOW = datetime(2026, 11, 24, tzinfo=UTC)


def test_echo_copies_payload_to_every_published_topic_with_derived_ids() -> None:
    agent = AgentSpec(name="e", kind="echo", publishes=["a", "b"])
    record = new_record(org="acme", type="t", source="user:x", payload={"k": 1}, correlation_id="c")
    out = emissions_for(agent, "agent:acme:e", record, NOW)
    assert [e.topic for e in out] == ["a", "b"]
    for i, emission in enumerate(out):
        assert emission.record.payload == {"k": 1}
        assert emission.record.causation_id == record.id
        assert emission.record.correlation_id == "c"
        assert emission.record.source == "agent:e"
        assert emission.record.id == derived_id("agent:acme:e", record.id, i)
    again = emissions_for(agent, "agent:acme:e", record, NOW)
    assert [e.record.id for e in again] == [e.record.id for e in out]


def test_rule_maps_fields_and_ignores_other_types() -> None:
    agent = AgentSpec.model_validate(
        {
            "name": "r",
            "kind": "rule",
            "publishes": ["out"],
            "rules": [
                {
                    "on": "order.placed",
                    "emit": "invoice.requested",
                    "to": "out",
                    "map": {
                        "amount": "$.payload.total",
                        "who": "$.source",
                        "currency": "EUR",
                        "missing": "$.payload.nope",
                        "first": "$.payload.items.0",
                    },
                }
            ],
        }
    )
    placed = new_record(
        org="acme", type="order.placed", source="user:x", payload={"total": 12.5, "items": ["pen"]}
    )
    [emission] = emissions_for(agent, "wf", placed, NOW)
    assert emission.record.type == "invoice.requested"
    assert emission.record.payload == {
        "amount": 12.5,
        "who": "user:x",
        "currency": "EUR",
        "missing": None,
        "first": "pen",
    }
    other = new_record(org="acme", type="order.cancelled", source="user:x", payload={})
    assert emissions_for(agent, "wf", other, NOW) == []


def test_kinds_this_version_cannot_run_are_refused() -> None:
    agent = AgentSpec(name="l", kind="llm")
    record = new_record(org="acme", type="t", source="user:x", payload={})
    with pytest.raises(AgentStepError):
        emissions_for(agent, "wf", record, NOW)
