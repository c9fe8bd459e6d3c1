# type: ignore
# ruff: noqa: F821  (the sandbox runs these after the tool: `run` is the tool's function)
# Tests of priority_score: plain asserts calling run(...), run in the sandbox at registration.

assert run({"title": "Tidy the backlog", "priority": "low"})["score"] == 10
assert run({"title": "Investigate the p99 latency spike", "priority": "high"})["score"] == 80


def test_unknown_priority_scores_zero_plus_urgency():
    out = run({"title": "Security review", "priority": "whenever"})
    assert out["score"] == 10
    assert out["urgent_words"] == ["security"]


def test_score_is_capped():
    title = "outage incident spike security tls certificate"
    assert run({"title": title, "priority": "high"})["score"] == 100
