"""The bridge's pause decisions, without a broker: hysteresis, estimates, unknowns, plans."""

from __future__ import annotations

from bridge.backpressure import (
    TEMPORAL_REASON,
    InboxGate,
    hold_decision,
    inbox_reason,
    pause_plan,
)

A = ("acme", "echo")


def test_hold_pauses_above_the_limit_and_resumes_only_below_half() -> None:
    assert not hold_decision(False, 100, 100)
    assert hold_decision(False, 101, 100)
    assert hold_decision(True, 60, 100), "between half and the limit a held agent stays held"
    assert hold_decision(True, 50, 100)
    assert not hold_decision(True, 49, 100)


def test_unknown_inbox_never_changes_the_decision() -> None:
    assert not hold_decision(False, None, 10)
    assert hold_decision(True, None, 10)


def test_estimate_grows_with_deliveries_and_holds_before_the_next_batch() -> None:
    gate = InboxGate(limit=50, check_interval_s=2.0)
    gate.delivered({A: 20}, now=0.0)
    assert gate.due(0.0) == [A]
    gate.query_sent(A, 0.0)
    gate.delivered({A: 20}, now=0.1)  # sent after the query: counted on top of its answer
    gate.answered(A, 20)
    assert gate.gauges[A].estimate == 40 and gate.held() == []
    gate.delivered({A: 20}, now=0.2)
    assert gate.held() == [A], "60 > 50 on the estimate, without waiting for the next query"
    assert gate.due(0.4) == [], "no query before a quarter interval"
    assert gate.due(0.5) == [A], "held on the estimate: re-checked after a quarter interval"
    gate.query_sent(A, 2.2)
    assert gate.due(2.3) == [] and gate.due(4.1) == []
    gate.answered(A, 30)
    assert gate.held() == [A], "30 is not below half of 50"
    gate.query_sent(A, 4.2)
    gate.answered(A, 24)
    assert gate.held() == []


def test_records_sent_before_a_query_in_flight_still_count_until_it_answers() -> None:
    """The old answer did not see them and the new one has not come: both must not drop them."""
    gate = InboxGate(limit=50, check_interval_s=2.0)
    gate.delivered({A: 25}, now=0.0)
    gate.query_sent(A, 0.0)
    gate.answered(A, 25)
    gate.delivered({A: 20}, now=0.5)
    gate.query_sent(A, 2.0)  # its answer will say 45; until then 25 is all we were told
    assert gate.gauges[A].estimate == 45
    gate.delivered({A: 25}, now=2.1)
    assert gate.held() == [A], "70 in the inbox, with the answer to the last query pending"
    gate.answered(A, 45)
    assert gate.gauges[A].estimate == 70, "the answer counts the 20, the 25 came after it"


def test_bytes_hold_a_few_large_records_and_release_only_when_both_are_low() -> None:
    gate = InboxGate(limit=10_000, check_interval_s=2.0, byte_limit=1_000)
    gate.query_sent(A, 0.0)
    gate.answered(A, 0, 0)
    gate.delivered({A: 3}, now=0.1, sizes={A: 900})
    assert gate.held() == [], "3 records, 900 bytes: under both bounds"
    gate.delivered({A: 1}, now=0.2, sizes={A: 300})
    assert gate.held() == [A], "4 records are nothing, 1,200 bytes are over the byte bound"
    gate.query_sent(A, 1.0)
    gate.answered(A, 2, 600)
    assert gate.held() == [A], "600 bytes is not below half of 1,000"
    gate.query_sent(A, 2.0)
    gate.answered(A, 1, 400)
    assert gate.held() == []
    # Without a byte bound, bytes never hold an agent.
    counting = InboxGate(limit=10_000)
    counting.query_sent(A, 0.0)
    counting.answered(A, 1, 10**9)
    assert counting.held() == []


def test_unknown_answer_keeps_a_hold_and_never_starts_one() -> None:
    gate = InboxGate(limit=10)
    gate.delivered({A: 500}, now=0.0)
    gate.query_sent(A, 0.0)
    gate.answered(A, None)  # no worker: the query timed out
    gate.delivered({A: 500}, now=0.1)
    assert gate.held() == []
    gate.query_sent(A, 3.0)
    gate.answered(A, 11)
    assert gate.held() == [A]
    gate.query_sent(A, 6.0)
    gate.answered(A, None)
    assert gate.held() == [A]


def test_held_agents_stay_checked_and_idle_ones_are_forgotten() -> None:
    gate = InboxGate(limit=10, check_interval_s=1.0)
    other = ("acme", "idle")
    gate.delivered({A: 5, other: 1}, now=0.0)
    gate.query_sent(A, 0.0)
    gate.answered(A, 50)
    gate.forget_idle(now=100.0)
    assert set(gate.gauges) == {A}
    assert gate.due(100.0) == [A], "a held agent receives nothing, yet must be checked"


def test_plan_pauses_everything_when_temporal_is_down() -> None:
    assignment = [("acme.inbox", 0), ("acme.inbox", 1), ("b.x", 0)]
    plan = pause_plan(assignment=assignment, temporal_down=True, held_agents=[], subscribers={})
    assert plan == {tp: [TEMPORAL_REASON] for tp in assignment}


def test_plan_pauses_only_assigned_partitions_of_a_held_agents_topics() -> None:
    subscribers = {
        ("acme", "inbox"): ["echo", "other"],
        ("acme", "tasks"): ["echo"],
        ("acme", "side"): ["other"],
    }
    assignment = [("acme.inbox", 0), ("acme.tasks", 2), ("acme.side", 0)]
    plan = pause_plan(
        assignment=assignment, temporal_down=False, held_agents=[A], subscribers=subscribers
    )
    assert plan == {
        ("acme.inbox", 0): [inbox_reason("acme", "echo")],
        ("acme.tasks", 2): [inbox_reason("acme", "echo")],
    }
    both = pause_plan(
        assignment=assignment, temporal_down=True, held_agents=[A], subscribers=subscribers
    )
    assert both[("acme.inbox", 0)] == [TEMPORAL_REASON, inbox_reason("acme", "echo")]
    assert both[("acme.side", 0)] == [TEMPORAL_REASON]
