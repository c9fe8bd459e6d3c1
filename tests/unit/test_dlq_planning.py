"""Redrive planning on plain values: where each DLQ entry goes back to, and why not."""

from __future__ import annotations

from kafkaorg.dlq import DlqEntry, DlqRead, plan_redrive, redrive_target
from kafkaorg.envelope import new_record


def _entry(**fields: object) -> DlqEntry:
    base: dict[str, object] = {
        "id": "r1",
        "reason": "agent-step-failed",
        "dlq_partition": 0,
        "dlq_offset": 7,
        "redrivable": True,
        "agent": "echo",
    }
    return DlqEntry.model_validate(base | fields)


def test_an_entry_goes_back_to_its_own_topic_and_never_outside_the_org() -> None:
    assert redrive_target("acme", _entry(topic="acme.tasks"), None, {}) == ("acme.tasks", None)
    target, why = redrive_target("acme", _entry(topic="other.tasks"), "tasks", {})
    assert target is None and "not a topic of org 'acme'" in str(why)


def test_without_its_topic_the_option_or_the_agents_one_topic_decides() -> None:
    entry = _entry()
    assert redrive_target("acme", entry, "inbox", {}) == ("acme.inbox", None)
    assert redrive_target("acme", entry, None, {"echo": ["inbox"]}) == ("acme.inbox", None)
    target, why = redrive_target("acme", entry, None, {"echo": ["a", "b"]})
    assert target is None and "pass --topic" in str(why)


def test_one_record_failed_by_two_agents_is_produced_once_for_both() -> None:
    record = new_record(org="acme", type="t", source="user:a", payload={}, record_id="r1")
    reads = [
        DlqRead(entry=_entry(topic="acme.tasks", agent="a", dlq_offset=1), record=record),
        DlqRead(entry=_entry(topic="acme.tasks", agent="b", dlq_offset=2), record=record),
        DlqRead(
            entry=_entry(id="p", redrivable=False, not_redrivable_because="poison"), record=None
        ),
    ]
    outcomes, items = plan_redrive("acme", reads, None, {})
    assert [o.redriven for o in outcomes] == [True, True, False]
    assert outcomes[2].reason == "poison"
    assert len(items) == 1 and items[0].kafka_topic == "acme.tasks"
    headers = dict(items[0].extra_headers)
    assert headers["kafkaorg.redrive.agents"] == b"a,b"
    assert headers["kafkaorg.redrive"] == b"r1"
