"""The org's permissions and quotas as pure functions: each check is what refuses.

Every refusing case starts from a request that is otherwise allowed (a parent that
*may* spawn, a topic it may use), so the refusal can only come from the rule tested.
"""

from __future__ import annotations

import pytest

from kafkaorg import org_rules
from kafkaorg.contracts import (
    AgentAction,
    AgentCommand,
    AgentRegistration,
    AgentStatus,
    ApproveToolRequest,
    CreateAgentRequest,
    CreateToolRequest,
    CreateTopicRequest,
    OrgState,
    RefusalType,
    RollbackToolRequest,
    ToolStatus,
    ToolVersionState,
)
from kafkaorg.org_rules import OrgView
from kafkaorg.spec import AgentSpec, OrgSpec, ToolSpec, TopicSpec

NOW = 1_000_000.0


def _view(**limits: int) -> OrgView:
    spec = OrgSpec.model_validate(
        {
            "org": "acme",
            "topics": [{"name": "in"}, {"name": "out"}],
            "agents": [
                {
                    "name": "boss",
                    "kind": "echo",
                    "subscribes": ["in"],
                    "publishes": ["out"],
                    "can_create_agents": True,
                },
                {"name": "plain", "kind": "echo", "subscribes": ["in"], "publishes": ["out"]},
            ],
            "limits": limits,
        }
    )
    state = OrgState(statuses={"boss": AgentStatus.RUNNING, "plain": AgentStatus.RUNNING})
    return OrgView(spec, state)


def _child(name: str = "kid", **extra: object) -> AgentSpec:
    return AgentSpec.model_validate(
        {"name": name, "kind": "echo", "subscribes": ["in"], "publishes": ["out"], **extra}
    )


def _spawn(view: OrgView, parent: str, name: str) -> None:
    """Record a spawn as the workflow does after a successful create_agent."""
    depth = view.depth(parent) + 1
    view.state.dynamic_agents.append(
        AgentRegistration(
            spec=_child(name, can_create_agents=True),
            created_by=f"agent:{parent}",
            parent_agent=parent,
            depth=depth,
        )
    )
    view.state.statuses[name] = AgentStatus.RUNNING
    view.state.spawn_times.append(NOW)


def _types(problems: list[org_rules.Refusal]) -> list[RefusalType]:
    return [p.type for p in problems]


def test_a_parent_that_may_spawn_creates_a_child() -> None:
    request = CreateAgentRequest(agent=_child(), requested_by="agent:boss")
    assert org_rules.create_agent_problems(_view(), request, NOW) == []


def test_spawn_depth_is_what_refuses_the_grandchild_past_the_limit() -> None:
    view = _view(max_spawn_depth=1)
    _spawn(view, "boss", "kid")  # depth 1: allowed
    request = CreateAgentRequest(agent=_child("grandkid"), requested_by="agent:kid")
    problems = org_rules.create_agent_problems(view, request, NOW + 3600)
    assert _types(problems) == [RefusalType.QUOTA_EXCEEDED]
    assert "spawn depth 2 exceeds limits.max_spawn_depth (1)" in str(problems[0])


def test_spawn_rate_is_what_refuses_the_spawn_past_the_limit_and_it_recovers() -> None:
    view = _view(max_spawns_per_minute=2, max_spawn_depth=5)
    _spawn(view, "boss", "k1")
    _spawn(view, "boss", "k2")
    request = CreateAgentRequest(agent=_child("k3"), requested_by="agent:boss")
    problems = org_rules.create_agent_problems(view, request, NOW + 1)
    assert _types(problems) == [RefusalType.QUOTA_EXCEEDED]
    assert "2 agents spawned in the last minute" in str(problems[0])
    assert org_rules.create_agent_problems(view, request, NOW + 61) == []


def test_people_are_not_rate_limited_but_the_agent_count_is() -> None:
    view = _view(max_agents=3, max_spawns_per_minute=0)
    by_person = CreateAgentRequest(agent=_child("k1"), requested_by="user:ann")
    assert org_rules.create_agent_problems(view, by_person, NOW) == []
    _spawn(view, "boss", "k1")
    problems = org_rules.create_agent_problems(
        view, CreateAgentRequest(agent=_child("k2"), requested_by="user:ann"), NOW
    )
    assert _types(problems) == [RefusalType.QUOTA_EXCEEDED]


def test_a_child_never_gets_more_rights_than_its_parent() -> None:
    view = _view()
    request = CreateAgentRequest(agent=_child(can_create_tools=True), requested_by="agent:boss")
    problems = org_rules.create_agent_problems(view, request, NOW)
    assert _types(problems) == [RefusalType.NOT_PERMITTED]
    assert "can_create_tools" in str(problems[0])
    no_right = CreateAgentRequest(agent=_child(), requested_by="agent:plain")
    assert "may not create agents" in str(org_rules.create_agent_problems(view, no_right, NOW)[0])


def test_the_same_name_twice_is_already_exists() -> None:
    view = _view()
    _spawn(view, "boss", "kid")
    problems = org_rules.create_agent_problems(
        view, CreateAgentRequest(agent=_child(), requested_by="user:ann"), NOW
    )
    assert _types(problems)[0] == RefusalType.ALREADY_EXISTS


@pytest.mark.parametrize(
    ("requested_by", "message"),
    [
        ("agent:other:boss", "belongs to org 'other'"),
        ("agent:ghost", "not a live agent"),
        ("robot", "must be user:<name>"),
    ],
)
def test_requesters_are_checked(requested_by: str, message: str) -> None:
    problems = org_rules.create_agent_problems(
        _view(), CreateAgentRequest(agent=_child(), requested_by=requested_by), NOW
    )
    assert any(message in str(p) for p in problems), problems


def test_a_request_addressed_to_another_org_is_refused() -> None:
    request = CreateAgentRequest(agent=_child(), requested_by="user:ann", org="other")
    assert "for org 'other'" in str(org_rules.create_agent_problems(_view(), request, NOW)[0])


def test_lifecycle_rules() -> None:
    view = _view()
    pause = AgentCommand(agent="plain", action=AgentAction.PAUSE)
    assert org_rules.lifecycle_problems(view, pause) == []
    view.state.statuses["plain"] = AgentStatus.RETIRED
    assert _types(org_rules.lifecycle_problems(view, pause)) == [RefusalType.CONFLICT]
    unknown = AgentCommand(agent="nobody", action=AgentAction.RETIRE)
    assert _types(org_rules.lifecycle_problems(view, unknown)) == [RefusalType.NOT_FOUND]
    update = AgentCommand(agent="boss", action=AgentAction.UPDATE)
    assert org_rules.lifecycle_problems(view, update)
    _spawn(view, "boss", "kid")
    by_stranger = AgentCommand(agent="kid", action=AgentAction.PAUSE, requested_by="agent:kid")
    assert _types(org_rules.lifecycle_problems(view, by_stranger)) == [RefusalType.NOT_PERMITTED]
    by_parent = AgentCommand(agent="kid", action=AgentAction.PAUSE, requested_by="agent:boss")
    assert org_rules.lifecycle_problems(view, by_parent) == []


def test_topic_rules() -> None:
    view = _view()
    new = CreateTopicRequest(topic=TopicSpec(name="more"), requested_by="agent:boss")
    assert org_rules.create_topic_problems(view, new) == []
    taken = CreateTopicRequest(topic=TopicSpec(name="in"))
    assert _types(org_rules.create_topic_problems(view, taken)) == [RefusalType.ALREADY_EXISTS]
    by_plain = CreateTopicRequest(topic=TopicSpec(name="more"), requested_by="agent:plain")
    assert _types(org_rules.create_topic_problems(view, by_plain)) == [RefusalType.NOT_PERMITTED]


def test_a_tool_change_based_on_an_old_version_is_a_conflict() -> None:
    view = _view()
    tool = ToolSpec(name="score", code="def run(args):\n    return {}\n")
    assert org_rules.create_tool_problems(view, CreateToolRequest(tool=tool)) == []
    view.state.tools.append(ToolVersionState(name="score", version=1, status=ToolStatus.ACTIVE))
    fresh = CreateToolRequest(tool=tool, based_on_version=1)
    assert org_rules.create_tool_problems(view, fresh) == []
    stale = CreateToolRequest(tool=tool, based_on_version=0)
    problems = org_rules.create_tool_problems(view, stale)
    assert _types(problems) == [RefusalType.CONFLICT] and "at version 1 now" in str(problems[0])


def test_approve_and_rollback_rules() -> None:
    view = _view()
    view.state.tools += [
        ToolVersionState(name="score", version=1, status=ToolStatus.ACTIVE),
        ToolVersionState(name="score", version=2, status=ToolStatus.PENDING_APPROVAL),
    ]
    assert org_rules.approve_problems(view, ApproveToolRequest(tool="score", version=2)) == []
    approved_by_agent = ApproveToolRequest(tool="score", version=2, approved_by="agent:boss")
    assert _types(org_rules.approve_problems(view, approved_by_agent)) == [
        RefusalType.NOT_PERMITTED
    ]
    not_pending = ApproveToolRequest(tool="score", version=1)
    assert _types(org_rules.approve_problems(view, not_pending)) == [RefusalType.CONFLICT]
    assert org_rules.rollback_problems(view, RollbackToolRequest(tool="score", version=1)) == []
    missing = RollbackToolRequest(tool="score", version=9)
    assert _types(org_rules.rollback_problems(view, missing)) == [RefusalType.NOT_FOUND]


def test_a_spec_may_not_take_a_topic_from_an_agent_created_at_run_time() -> None:
    view = _view()
    _spawn(view, "boss", "kid")
    smaller = view.spec.model_copy(update={"topics": [TopicSpec(name="in")]})
    smaller = smaller.model_copy(
        update={"agents": [a.model_copy(update={"publishes": []}) for a in smaller.agents[:0]]}
    )
    problems = org_rules.apply_spec_problems(view, smaller)
    assert any("'out' is still used by agent 'kid'" in str(p) for p in problems), problems
