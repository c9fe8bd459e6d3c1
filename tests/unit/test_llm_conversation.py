"""Bounding an llm agent's conversation: whole turns go, tool replies never lose their call."""

from __future__ import annotations

from typing import Any

from kafkaorg.llm.conversation import RECALL_TOOL, trim_conversation, turn_text, with_note
from kafkaorg.llm.prompts import (
    allowed_tools,
    first_call_tool_choice,
    system_prompt,
    tool_schemas,
)
from kafkaorg.spec import AgentSpec


def _turn(n: int, size: int = 100) -> list[dict[str, Any]]:
    call = {"id": f"c{n}", "type": "function", "function": {"name": "publish", "arguments": "{}"}}
    return [
        {"role": "user", "content": f"record {n} " + "x" * size},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": f"c{n}", "content": "{}"},
        {"role": "assistant", "content": f"done {n}"},
    ]


def test_small_conversations_are_kept_whole() -> None:
    messages = _turn(1) + _turn(2)
    assert trim_conversation(messages, max_chars=10_000) == (messages, [])


def test_oldest_whole_turns_move_out_first_and_the_last_turn_always_stays() -> None:
    messages = _turn(1, 500) + _turn(2, 500) + _turn(3, 500)
    kept, moved = trim_conversation(messages, max_chars=1_500)
    assert moved == [_turn(1, 500), _turn(2, 500)], "whole turns, oldest first, none lost"
    assert kept == _turn(3, 500)
    # Even a single turn over the limit is kept: the model needs the record it is on.
    kept, moved = trim_conversation(_turn(9, 5_000), max_chars=100)
    assert (kept, moved) == (_turn(9, 5_000), [])


def test_the_note_about_archived_turns_is_shown_to_the_model_but_never_stored() -> None:
    shown = with_note(_turn(3), 2)
    assert shown[0]["role"] == "system"
    assert "2 earlier record(s)" in shown[0]["content"]
    assert RECALL_TOOL in shown[0]["content"]
    assert with_note(_turn(3), 0) == _turn(3)
    assert trim_conversation(shown, max_chars=10_000) == (_turn(3), [])


def test_an_archived_turn_reads_as_text_with_its_tool_calls() -> None:
    text = turn_text(_turn(4, 3))
    assert text.splitlines() == [
        "user: record 4 xxx",
        "assistant called publish({})",
        "tool: {}",
        "assistant: done 4",
    ]


def test_rights_decide_which_builtin_tools_an_agent_sees() -> None:
    plain = AgentSpec(name="a", kind="llm", instructions="x", publishes=["out"])
    assert "create_tool" not in allowed_tools(plain)
    assert "create_agent" not in allowed_tools(plain)
    mighty = plain.model_copy(update={"can_create_tools": True, "can_create_agents": True})
    names = [s["function"]["name"] for s in tool_schemas(mighty)]
    assert names == allowed_tools(mighty)
    assert {"create_tool", "create_agent", "publish", "run_code", "call_tool"} <= set(names)
    assert RECALL_TOOL in allowed_tools(plain), "every llm agent can read its own archive"


def test_the_system_prompt_names_the_agent_on_its_first_line() -> None:
    agent = AgentSpec(name="scout", kind="llm", instructions="Find things.", publishes=["out"])
    prompt = system_prompt("acme", agent)
    assert prompt.splitlines()[0] == "You are agent scout of org acme."
    assert "Find things." in prompt
    assert "out" in prompt


def test_publish_may_name_only_the_agents_own_topics() -> None:
    agent = AgentSpec(name="a", kind="llm", publishes=["out", "log"])
    [publish] = [s["function"] for s in tool_schemas(agent) if s["function"]["name"] == "publish"]
    assert publish["parameters"]["properties"]["topic"]["enum"] == ["out", "log"]
    other = AgentSpec(name="b", kind="llm", publishes=["elsewhere"])
    [theirs] = [s["function"] for s in tool_schemas(other) if s["function"]["name"] == "publish"]
    assert theirs["parameters"]["properties"]["topic"]["enum"] == ["elsewhere"]


def test_the_first_call_on_a_record_follows_first_tool_choice_and_later_calls_do_not() -> None:
    agent = AgentSpec(name="a", kind="llm", publishes=["out"], first_tool_choice="publish")
    record = {"role": "user", "content": "New record: ..."}
    called = {"role": "assistant", "content": "", "tool_calls": [{"id": "c1"}]}
    answered = {"role": "tool", "tool_call_id": "c1", "content": "{}"}
    assert first_call_tool_choice(agent, [record]) == "publish"
    assert first_call_tool_choice(agent, [record, called, answered]) is None
    # "auto", said out loud: the local model's server hides the tools when it is left out.
    assert (
        first_call_tool_choice(agent.model_copy(update={"first_tool_choice": "auto"}), [record])
        == "auto"
    )
