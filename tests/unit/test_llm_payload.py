"""What the chat model sends: an assistant turn that only called tools has ``content: ""``."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from kafkaorg.config import Settings
from kafkaorg.llm import create_chat_model


def test_a_tool_calling_turn_is_sent_with_empty_content_not_null() -> None:
    model = create_chat_model(Settings(llm_base_url="http://127.0.0.1:1/v1"))
    turn = AIMessage(content="", tool_calls=[{"name": "publish", "args": {"a": 1}, "id": "c1"}])
    payload = model._get_request_payload(
        [HumanMessage("task"), turn, ToolMessage('{"ok": true}', tool_call_id="c1")]
    )
    assistant = payload["messages"][1]
    assert assistant["role"] == "assistant" and assistant["tool_calls"]
    assert assistant["content"] == ""


def test_the_token_limit_goes_where_the_endpoint_reads_it() -> None:
    messages = [HumanMessage("task")]
    current = create_chat_model(Settings(llm_base_url="http://127.0.0.1:1/v1", llm_max_tokens=64))
    payload = current._get_request_payload(messages)
    assert payload["max_completion_tokens"] == 64 and "max_tokens" not in payload
    older = create_chat_model(
        Settings(
            llm_base_url="http://127.0.0.1:1/v1",
            llm_max_tokens=64,
            llm_max_tokens_param="max_tokens",
        )
    )
    payload = older._get_request_payload(messages)
    assert payload["max_tokens"] == 64 and "max_completion_tokens" not in payload
