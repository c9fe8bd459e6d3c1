"""Flows in the org spec: every problem named with its flow and step, before anything runs."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.flows import flow_replies, trigger_run, triggered_runs
from bridge.mapping import Accepted, Origin
from kafkaorg.envelope import new_record
from kafkaorg.examples import review_spec
from kafkaorg.names import flow_workflow_id, is_flow_workflow_id
from kafkaorg.spec import SpecError, validate_spec


def _spec(*steps: dict[str, Any], **flow: Any) -> dict[str, Any]:
    return {
        "org": "acme",
        "topics": [{"name": "tasks"}, {"name": "results"}],
        "agents": [
            {"name": "writer", "kind": "echo", "subscribes": ["tasks"], "publishes": ["results"]},
            {"name": "reviewer", "kind": "echo", "subscribes": ["tasks"], "publishes": ["results"]},
            {"name": "mute", "kind": "echo", "publishes": ["results"]},
        ],
        "flows": [{"name": "review", "steps": list(steps), **flow}],
    }


def _problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as info:
        validate_spec(data)
    return info.value.problems


def test_a_flow_with_every_step_kind_is_valid() -> None:
    spec = validate_spec(
        _spec(
            {
                "id": "drafts",
                "parallel": [{"ask": "writer"}, {"ask": "reviewer"}],
                "gather": "quorum:2",
                "timeout_s": 30,
            },
            {"id": "verdict", "ask": "reviewer", "input": {"drafts": "$.steps.drafts"}},
            {
                "id": "route",
                "switch": [
                    {"when": "steps.verdict.payload.score >= `8`", "goto": "sign-off"},
                    {"goto": "revise"},
                ],
            },
            {"id": "revise", "ask": "writer", "max_visits": 3, "next": "verdict"},
            {"id": "sign-off", "approval": {"timeout_s": 60, "default": "deny"}},
            {"id": "publish", "emit": {"topic": "results", "type": "review.done"}},
            on_failure=[{"ask": "writer"}],
            output={"topic": "results", "type": "review.result"},
        )
    )
    flow = spec.flow("review")
    assert flow is not None
    assert [s.kind for s in flow.steps] == ["parallel", "ask", "switch", "ask", "approval", "emit"]
    assert flow.steps[0].needed() == 2


def test_duplicate_ids_and_unknown_targets_name_the_flow_and_step() -> None:
    problems = _problems(
        _spec(
            {"id": "a", "ask": "writer", "next": "nowhere"},
            {"id": "a", "switch": [{"goto": "elsewhere"}]},
        )
    )
    assert "flows.0(review).steps.1.id: duplicate step id 'a'" in problems
    assert any(
        p.startswith("flows.0(review).steps.0(a).next: unknown step 'nowhere'") for p in problems
    )
    assert any(
        p.startswith("flows.0(review).steps.1(a).switch.0.goto: unknown step 'elsewhere'")
        for p in problems
    )


def test_unknown_agents_and_agents_that_cannot_be_asked() -> None:
    problems = _problems(
        _spec(
            {"id": "a", "ask": "ghost"},
            {"id": "b", "parallel": [{"ask": "writer"}, {"ask": "mute"}]},
            on_failure=[{"ask": "janitor"}],
        )
    )
    assert any("steps.0(a).ask: unknown agent 'ghost'" in p for p in problems)
    assert any(
        "steps.1(b).parallel.1.ask: agent 'mute' subscribes to no topic" in p for p in problems
    )
    assert any("flows.0(review).on_failure.0.ask: unknown agent 'janitor'" in p for p in problems)


def test_expressions_must_compile() -> None:
    problems = _problems(
        _spec(
            {"id": "a", "ask": "writer", "input": {"x": "$.steps.[["}},
            {"id": "b", "switch": [{"when": "steps.a.payload.score >=", "goto": "a"}]},
        )
    )
    assert any(
        p.startswith("flows.0(review).steps.0(a).input.x: not a valid JMESPath") for p in problems
    )
    assert any(
        p.startswith("flows.0(review).steps.1(b).switch.0.when: not a valid JMESPath")
        for p in problems
    )


@pytest.mark.parametrize(
    ("gather", "needle"),
    [
        ("most", "'most' is not all, first or quorum:N"),
        ("quorum:0", "'quorum:0' is not all, first or quorum:N"),
        ("quorum:3", "quorum:3 needs more replies than the 2 branches"),
    ],
)
def test_gather_is_all_first_or_a_quorum_within_the_branches(gather: str, needle: str) -> None:
    problems = _problems(
        _spec({"id": "p", "parallel": [{"ask": "writer"}, {"ask": "reviewer"}], "gather": gather})
    )
    assert any(
        p.startswith("flows.0(review).steps.0(p).gather: ") and needle in p for p in problems
    )


def test_a_step_has_exactly_one_kind_and_topics_exist() -> None:
    problems = _problems(
        _spec(
            {"id": "both", "ask": "writer", "emit": {"topic": "results", "type": "x"}},
        )
    )
    assert any(
        "exactly one of ask, parallel, map, handoff, switch, emit, approval" in p for p in problems
    )
    problems = _problems(_spec({"id": "e", "emit": {"topic": "nowhere", "type": "x"}}))
    assert any("steps.0(e).emit.topic: unknown topic 'nowhere'" in p for p in problems)


def test_duplicate_flows_are_refused() -> None:
    data = _spec({"id": "a", "ask": "writer"})
    data["flows"].append(dict(data["flows"][0]))
    assert any("flows.1(review).name: duplicate flow 'review'" in p for p in _problems(data))


def test_the_bridge_routes_only_agents_records_of_the_runs_own_org() -> None:
    run = flow_workflow_id("acme", "review", "r1")
    assert is_flow_workflow_id(run) and not is_flow_workflow_id("agent:acme:x")

    def accepted(org: str, source: str, correlation: str) -> Accepted:
        record = new_record(
            org=org, type="t", source=source, payload={}, correlation_id=correlation
        )
        return Accepted(Origin(f"{org}.results", 0, 0), record, 10)

    reply = accepted("acme", "agent:writer", run)
    routed = flow_replies(
        [
            reply,
            accepted("acme", "system:flow", run),  # the run's own request
            accepted("other", "agent:writer", run),  # another org cannot write into it
            accepted("acme", "agent:writer", "plain-correlation"),
        ]
    )
    assert routed == {run: [reply.record]}


def test_a_trigger_starts_one_named_run_per_record_and_never_its_own() -> None:
    data = _spec({"id": "a", "ask": "writer"}, trigger={"topic": "tasks", "type": "review.ask"})
    flow = validate_spec(data).flows[0]
    triggers = {("acme", "tasks"): [flow]}
    ask = new_record(org="acme", type="review.ask", source="user:x", payload={"doc": 1})
    other = new_record(org="acme", type="review.other", source="user:x", payload={})
    own = new_record(
        org="acme",
        type="review.ask",
        source="system:flow",
        payload={},
        correlation_id=flow_workflow_id("acme", "review", "r1"),
    )
    items = [Accepted(Origin("acme.tasks", 0, i), r, 10) for i, r in enumerate([ask, other, own])]
    items.append(Accepted(Origin("acme.tasks", 0, 9), ask, 10))  # redelivered
    runs = triggered_runs(items, triggers)
    assert [r.run for r in runs] == [trigger_run("acme", "review", ask.id)] * 2
    assert runs[0].input == {"doc": 1}
    bad = _spec({"id": "a", "ask": "writer"}, trigger={"topic": "nowhere"})
    assert "flows.0(review).trigger.topic: unknown topic 'nowhere'" in _problems(bad)


def test_the_shipped_review_example_is_valid() -> None:
    flow = review_spec().flow("review")
    assert flow is not None and flow.trigger is not None
    assert [s.kind for s in flow.steps] == ["parallel", "ask", "switch", "ask", "approval", "emit"]


def test_map_and_handoff_steps_are_valid_and_checked_against_the_org() -> None:
    spec = validate_spec(
        _spec(
            {
                "id": "each",
                "map": {
                    "over": "input.docs",
                    "ask": "writer",
                    "input": {"doc": "$.item", "at": "$.index"},
                    "max_concurrency": 2,
                    "timeout_s": 5,
                },
                "gather": "quorum:2",
            },
            {
                "id": "fan",
                "parallel": [{"ask": "writer", "timeout_s": 3}, {"ask": "reviewer"}],
            },
            {"id": "pick", "handoff": {"supervisor": "reviewer", "choices": ["writer"]}},
        )
    )
    flow = spec.flow("review")
    assert flow is not None
    assert [s.kind for s in flow.steps] == ["map", "parallel", "handoff"]
    assert [s.per_branch() for s in flow.steps] == [True, True, False]
    assert flow.steps[0].map is not None and flow.steps[0].map.expression == "input.docs"
    problems = _problems(
        _spec(
            {"id": "m", "map": {"over": "input.[[", "ask": "ghost"}, "gather": "most"},
            {"id": "h", "handoff": {"supervisor": "nobody", "choices": ["writer", "mute", "x"]}},
            {"id": "d", "handoff": {"supervisor": "writer", "choices": ["writer", "writer"]}},
            {"id": "g", "ask": "writer", "gather": "first"},
        )
    )
    assert any("steps.0(m).map.ask: unknown agent 'ghost'" in p for p in problems)
    assert any(p.startswith("flows.0(review).steps.0(m).map.over: not a valid") for p in problems)
    assert any("steps.0(m).gather: 'most' is not all" in p for p in problems)
    assert any("steps.1(h).handoff.supervisor: unknown agent 'nobody'" in p for p in problems)
    assert any("steps.1(h).handoff.choices.1: agent 'mute' subscribes to no" in p for p in problems)
    assert any("steps.1(h).handoff.choices.2: unknown agent 'x'" in p for p in problems)
    assert any("steps.2(d).handoff.choices: an agent is named twice" in p for p in problems)
    assert any("steps.3(g).gather: only parallel and map steps gather" in p for p in problems)


def test_start_flow_is_a_right_an_agent_has_and_passes_on_only_if_it_has_it() -> None:
    from kafkaorg.llm.prompts import allowed_tools, argument_problems
    from kafkaorg.org_rules import exceeds_parent
    from kafkaorg.spec import AgentSpec

    plain = AgentSpec(name="p", kind="llm", can_create_agents=True)
    starter = AgentSpec(name="s", kind="llm", can_create_agents=True, can_start_flows=True)
    assert "start_flow" not in allowed_tools(plain)
    assert "start_flow" in allowed_tools(starter)
    assert argument_problems("start_flow", {"input": []}) == [
        "flow: required",
        "input: expected object, got array",
    ]
    child = AgentSpec(name="c", kind="llm", can_start_flows=True)
    assert [str(r) for r in exceeds_parent(child, plain)] == [
        "can_start_flows: not granted to the parent"
    ]
    assert exceeds_parent(child, starter) == []
