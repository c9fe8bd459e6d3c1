"""The scripted model server speaks the protocol the real LangChain client expects."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from langchain_core.messages import convert_to_openai_messages

from activities.llm import keep_invalid_tool_calls, to_langchain
from kafkaorg.config import Settings
from kafkaorg.llm import LLMNotConfiguredError, create_chat_model, require_llm_for
from kafkaorg.llm.failures import is_empty_reply, reply_text
from kafkaorg.llm.prompts import argument_problems
from kafkaorg.spec import AgentSpec
from tests.llm_server import ScriptedLLM, ScriptedReply, ScriptedToolCall

SYSTEM = {"role": "system", "content": "You are agent scout of org acme.\nBe brief."}
PUBLISH = {
    "type": "function",
    "function": {
        "name": "publish",
        "description": "publish a record",
        "parameters": {"type": "object", "properties": {"topic": {"type": "string"}}},
    },
}


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


def test_tool_calls_and_token_use_round_trip_through_the_real_client(llm: ScriptedLLM) -> None:
    llm.script(
        "scout",
        [
            ScriptedReply(tool_calls=[ScriptedToolCall(name="publish", arguments={"topic": "x"})]),
            ScriptedReply(content="done", prompt_tokens=5, completion_tokens=2),
        ],
    )
    model = create_chat_model(Settings(llm_base_url=llm.base_url)).bind_tools([PUBLISH])
    first = model.invoke([SYSTEM, {"role": "user", "content": "go"}])
    assert first.tool_calls[0]["name"] == "publish"
    assert first.tool_calls[0]["args"] == {"topic": "x"}
    assert first.usage_metadata is not None and first.usage_metadata["total_tokens"] == 18
    second = model.invoke([SYSTEM, {"role": "user", "content": "go"}])
    assert second.content == "done"
    assert second.usage_metadata is not None and second.usage_metadata["total_tokens"] == 7
    sent = llm.requests_for("scout")
    assert len(sent) == 2
    assert sent[0]["tools"][0]["function"]["name"] == "publish"


def test_rules_answer_first_and_only_once(llm: ScriptedLLM) -> None:
    llm.script("scout", [ScriptedReply(content="from the queue")])
    llm.add_rule(
        "scout",
        lambda messages: any("urgent" in str(m.get("content")) for m in messages),
        lambda messages: ScriptedReply(content=f"rule saw {len(messages)} messages"),
    )
    model = create_chat_model(Settings(llm_base_url=llm.base_url))
    urgent = [SYSTEM, {"role": "user", "content": "urgent"}]
    assert model.invoke(urgent).content == "rule saw 2 messages"
    assert model.invoke(urgent).content == "from the queue"


def test_an_exhausted_script_fails_loudly(llm: ScriptedLLM) -> None:
    model = create_chat_model(Settings(llm_base_url=llm.base_url, llm_max_retries=0))
    with pytest.raises(Exception, match="script exhausted for agent scout"):
        model.invoke([SYSTEM, {"role": "user", "content": "go"}])


def test_without_an_endpoint_there_is_no_model_and_llm_agents_are_refused() -> None:
    with pytest.raises(LLMNotConfiguredError, match="KAFKAORG_LLM_BASE_URL"):
        create_chat_model(Settings(llm_base_url=None))
    agents = [
        AgentSpec(name="thinker", kind="llm", instructions="x"),
        AgentSpec(name="copier", kind="echo", publishes=["out"]),
    ]
    with pytest.raises(LLMNotConfiguredError, match="thinker"):
        require_llm_for(agents, Settings(llm_base_url=None))
    require_llm_for(agents[1:], Settings(llm_base_url=None))  # no llm agent: nothing to refuse
    require_llm_for(agents, Settings(llm_base_url="http://127.0.0.1:1/v1"))


def _http(url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_streaming_and_unknown_agents_are_refused_in_openai_error_form(llm: ScriptedLLM) -> None:
    llm.script("scout", [ScriptedReply(content="unused")])
    url = f"{llm.base_url}/chat/completions"
    status, body = _http(url, {"model": "m", "stream": True, "messages": [SYSTEM]})
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    status, body = _http(url, {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert status == 500 and body["error"]["type"] == "server_error"
    status, body = _http(url, {"model": "m", "messages": [SYSTEM]})
    assert status == 200 and body["object"] == "chat.completion" and body["model"] == "m"
    assert body["choices"][0]["finish_reason"] == "stop"
    status, models = _http(f"{llm.base_url}/models")
    assert status == 200 and models["object"] == "list"


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (429, openai.RateLimitError, "rate_limit_error"),
        (500, openai.InternalServerError, "server_error"),
        (503, openai.InternalServerError, "server_error"),
    ],
)
def test_error_statuses_come_with_an_openai_error_body(
    llm: ScriptedLLM, status: int, error: type[Exception], kind: str
) -> None:
    llm.script(
        "scout",
        [ScriptedReply.failure(status, "provider says no"), ScriptedReply.failure(status)],
    )
    url = f"{llm.base_url}/chat/completions"
    got, body = _http(url, {"model": "m", "messages": [SYSTEM]})
    assert got == status
    assert body["error"] == {
        "message": "provider says no",
        "type": kind,
        "param": None,
        "code": None,
    }
    model = create_chat_model(Settings(llm_base_url=llm.base_url, llm_max_retries=0))
    with pytest.raises(error, match=f"scripted error status {status}"):
        model.invoke([SYSTEM, {"role": "user", "content": "go"}])


def test_the_client_retries_an_error_status_and_gets_the_next_reply(llm: ScriptedLLM) -> None:
    llm.script("scout", [ScriptedReply.failure(503), ScriptedReply(content="back")])
    model = create_chat_model(Settings(llm_base_url=llm.base_url, llm_max_retries=1))
    assert model.invoke([SYSTEM, {"role": "user", "content": "go"}]).content == "back"
    assert len(llm.requests_for("scout")) == 2


def test_a_delay_past_the_clients_timeout_is_a_timeout(llm: ScriptedLLM) -> None:
    llm.script("scout", [ScriptedReply(content="late", delay_s=2.0), ScriptedReply(content="ok")])
    model = create_chat_model(
        Settings(llm_base_url=llm.base_url, llm_timeout_s=0.3, llm_max_retries=0)
    )
    with pytest.raises(openai.APITimeoutError):
        model.invoke([SYSTEM, {"role": "user", "content": "go"}])
    # The late answer went to a closed socket; the server still serves the next request.
    assert model.invoke([SYSTEM, {"role": "user", "content": "go"}]).content == "ok"


def test_malformed_tool_calls_are_sent_as_scripted(llm: ScriptedLLM) -> None:
    llm.script(
        "scout",
        [
            ScriptedReply(
                tool_calls=[
                    ScriptedToolCall(name="publish", raw_arguments="{topic: x"),
                    ScriptedToolCall(name="teleport", arguments={"to": "mars"}),
                    ScriptedToolCall(name="publish", arguments={"topic": 7}),
                ]
            )
        ],
    )
    got, body = _http(f"{llm.base_url}/chat/completions", {"model": "m", "messages": [SYSTEM]})
    assert got == 200
    calls = body["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["arguments"] for c in calls] == [
        "{topic: x",
        '{"to": "mars"}',
        '{"topic": 7}',
    ]
    assert [c["function"]["name"] for c in calls] == ["publish", "teleport", "publish"]
    assert body["choices"][0]["finish_reason"] == "tool_calls"


def test_a_call_with_arguments_that_are_not_json_survives_the_round_trip(
    llm: ScriptedLLM,
) -> None:
    """The model node keeps such a call (LangChain would set it aside) and sends it back."""
    llm.script(
        "scout",
        [
            ScriptedReply(
                tool_calls=[ScriptedToolCall(name="publish", raw_arguments="{nope", id="c1")]
            ),
            ScriptedReply(content="ok"),
        ],
    )
    model = create_chat_model(Settings(llm_base_url=llm.base_url)).bind_tools([PUBLISH])
    first = model.invoke([SYSTEM, {"role": "user", "content": "go"}])
    turn = convert_to_openai_messages(first)
    assert isinstance(turn, dict)
    keep_invalid_tool_calls(first, turn)
    assert turn["tool_calls"] == [
        {"type": "function", "id": "c1", "function": {"name": "publish", "arguments": "{nope"}}
    ]
    told = {"role": "tool", "tool_call_id": "c1", "content": "not JSON"}
    conversation = [SYSTEM, {"role": "user", "content": "go"}, turn, told]
    assert model.invoke(to_langchain(conversation)).content == "ok"
    sent = llm.requests_for("scout")[1]["messages"]
    assert sent[2]["tool_calls"][0]["function"]["arguments"] == "{nope"
    assert sent[3] == told


def test_an_empty_reply_has_neither_content_nor_tool_calls(llm: ScriptedLLM) -> None:
    llm.script("scout", [ScriptedReply()])
    got, body = _http(f"{llm.base_url}/chat/completions", {"model": "m", "messages": [SYSTEM]})
    assert got == 200
    assert body["choices"][0]["message"] == {"role": "assistant", "content": None}
    assert body["choices"][0]["finish_reason"] == "stop"


def test_a_rule_fires_as_often_as_told(llm: ScriptedLLM) -> None:
    llm.script("scout", [ScriptedReply(content="queued")])
    llm.add_rule("scout", lambda m: True, ScriptedReply.failure(503), times=2)
    url = f"{llm.base_url}/chat/completions"
    statuses = [_http(url, {"model": "m", "messages": [SYSTEM]})[0] for _ in range(3)]
    assert statuses == [503, 503, 200]
    llm.add_rule("scout", lambda m: True, ScriptedReply.failure(429), times=None)
    assert {_http(url, {"model": "m", "messages": [SYSTEM]})[0] for _ in range(4)} == {429}


def test_tool_arguments_are_held_to_the_schema_the_model_was_shown() -> None:
    assert argument_problems("publish", {"topic": "x", "type": "t", "payload": {}}) == []
    assert argument_problems("publish", {"topic": 7, "payload": "text"}) == [
        "type: required",
        "topic: expected string, got integer",
        "payload: expected object, got string",
    ]
    assert argument_problems("create_agent", {"name": "a", "kind": "wizard"}) == [
        "kind: must be one of echo, rule, tool, llm"
    ]
    assert argument_problems("recall_conversation", {"turn": True}) == [
        "turn: expected integer, got boolean"
    ]


def test_empty_replies_are_told_apart_from_answers() -> None:
    assert is_empty_reply({"role": "assistant", "content": None})
    assert is_empty_reply({"role": "assistant", "content": "  \n"})
    assert is_empty_reply({"role": "assistant", "content": [{"type": "text", "text": ""}]})
    assert not is_empty_reply({"role": "assistant", "content": "done"})
    assert not is_empty_reply({"role": "assistant", "content": "", "tool_calls": [{"id": "x"}]})


def test_the_text_of_a_prose_answer() -> None:
    """What ``on_text_reply`` publishes: the text, stripped, parts joined; none for a turn
    that calls tools (its content is a preamble, not the answer)."""
    assert reply_text({"role": "assistant", "content": "  The sky is blue.\n"}) == (
        "The sky is blue."
    )
    parts = [{"type": "text", "text": "Blue."}, {"type": "text", "text": " "}, "Mostly."]
    assert reply_text({"role": "assistant", "content": parts}) == "Blue.\nMostly."
    assert reply_text({"role": "assistant", "content": "I'll publish.", "tool_calls": [{}]}) == ""
    assert reply_text({"role": "assistant", "content": None}) == ""
