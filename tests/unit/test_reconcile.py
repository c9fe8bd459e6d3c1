from __future__ import annotations

from kafkaorg.reconcile import diff_specs
from kafkaorg.spec import validate_spec

BASE = {
    "org": "acme",
    "topics": [{"name": "a", "partitions": 2}, {"name": "b", "class": "audit"}],
    "agents": [
        {"name": "x", "kind": "echo", "subscribes": ["a"], "publishes": ["b"]},
        {"name": "y", "kind": "echo", "subscribes": ["a"], "publishes": ["b"]},
    ],
}


def _spec(**changes: object) -> dict[str, object]:
    return {**BASE, **changes}


def test_unchanged_spec_has_an_empty_diff() -> None:
    spec = validate_spec(BASE)
    diff = diff_specs(spec, validate_spec(BASE))
    assert diff.is_empty and diff.summary_lines() == [] and diff.problems == []


def test_first_apply_adds_everything() -> None:
    diff = diff_specs(None, validate_spec(BASE))
    assert [t.name for t in diff.topics_to_add] == ["a", "b"]
    assert [a.name for a in diff.agents_to_add] == ["x", "y"]


def test_diff_names_exactly_what_changed() -> None:
    new = _spec(
        topics=[{"name": "a", "partitions": 3}, {"name": "c"}],
        agents=[
            {"name": "x", "kind": "echo", "subscribes": ["a"], "publishes": ["c"]},
            {"name": "z", "kind": "echo", "subscribes": ["c"], "publishes": ["a"]},
        ],
        limits={"max_agents": 5},
    )
    diff = diff_specs(validate_spec(BASE), validate_spec(new))
    assert [t.name for t in diff.topics_to_add] == ["c"]
    assert [(t.name, t.changes) for t in diff.topics_to_change] == [("a", ["partitions changed"])]
    assert diff.topics_to_remove == ["b"]
    assert [a.name for a in diff.agents_to_add] == ["z"]
    assert [(a.name, a.changes) for a in diff.agents_to_change] == [("x", ["publishes changed"])]
    assert diff.agents_to_retire == ["y"]
    assert diff.limits_changed
    assert diff.summary_lines()[0] == "+ topic c (work, 1 partitions)"


def test_changes_kafka_cannot_make_are_problems() -> None:
    new = _spec(topics=[{"name": "a", "partitions": 1}, {"name": "b", "class": "work"}])
    diff = diff_specs(validate_spec(BASE), validate_spec(new))
    assert diff.problems == [
        "topic a: partitions cannot shrink (2 → 1)",
        "topic b: class cannot change in place (audit → work)",
    ]
