"""The scripted model server speaks the protocol the real LangChain client expects."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from kafkaorg.config import Settings
from kafkaorg.llm import LLMNotConfiguredError, create_chat_model, require_llm_for
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
