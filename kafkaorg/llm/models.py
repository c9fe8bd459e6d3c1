"""The one place chat models are made: an OpenAI-compatible endpoint through LangChain.

Everything else asks this factory, so timeouts, retries and token limits are set
once, from ``KAFKAORG_LLM_*``, and no other module talks HTTP to a model.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from kafkaorg.config import Settings, get_settings
from kafkaorg.errors import KafkaorgError
from kafkaorg.spec import AgentSpec

if TYPE_CHECKING:
    from langchain_openai import ChatOpenAI


class LLMNotConfiguredError(KafkaorgError):
    """No endpoint: ``llm`` agents cannot run (the message says how to give one)."""

    exit_code = 2


def require_llm(settings: Settings | None = None) -> None:
    """Raise ``LLMNotConfiguredError`` unless an endpoint is configured."""
    settings = settings or get_settings()
    if not settings.llm_base_url:
        raise LLMNotConfiguredError(
            "no LLM endpoint configured: set KAFKAORG_LLM_BASE_URL to an OpenAI-compatible "
            "chat-completions URL (e.g. http://127.0.0.1:8000/v1) to run llm agents"
        )


def require_llm_for(agents: Iterable[AgentSpec], settings: Settings | None = None) -> None:
    """Refuse to start ``llm`` agents without an endpoint, naming them (offline default)."""
    names = [a.name for a in agents if a.kind == "llm"]
    if names and not (settings or get_settings()).llm_base_url:
        raise LLMNotConfiguredError(
            f"llm agent(s) {', '.join(names)} cannot start: no LLM endpoint configured; set "
            "KAFKAORG_LLM_BASE_URL to an OpenAI-compatible chat-completions URL "
            "(e.g. http://127.0.0.1:8000/v1) for this command and the workers"
        )


def create_chat_model(settings: Settings | None = None) -> ChatOpenAI:
    """A chat model for the configured endpoint; ``LLMNotConfiguredError`` without one."""
    settings = settings or get_settings()
    require_llm(settings)
    return _chat_model_class()(
        base_url=settings.llm_base_url,
        # Local servers ignore the key, but the client insists on one.
        api_key=SecretStr(settings.llm_api_key or "not-needed"),
        model=settings.llm_model,
        timeout=settings.llm_timeout_s,
        max_retries=settings.llm_max_retries,
        max_completion_tokens=settings.llm_max_tokens,
        max_tokens_param=settings.llm_max_tokens_param,
        temperature=settings.llm_temperature,
    )


@cache
def _chat_model_class() -> type[ChatOpenAI]:
    # Imported on first use: the OpenAI client costs a second of start-up every CLI call.
    from langchain_openai import ChatOpenAI

    class CompatibleChatOpenAI(ChatOpenAI):
        """Sends an assistant turn that only called tools with ``content: ""``, not
        ``null``: OpenAI takes either, llama-cpp-python's server refuses ``null`` (500), so
        an agent's second call on a record, after its first tool call, would fail there."""

        max_tokens_param: str = "max_completion_tokens"
        """How the token limit is sent (``KAFKAORG_LLM_MAX_TOKENS_PARAM``)."""

        def _get_request_payload(
            self, input_: Any, *, stop: list[str] | None = None, **kwargs: Any
        ) -> dict[str, Any]:
            payload: dict[str, Any] = super()._get_request_payload(input_, stop=stop, **kwargs)
            for message in payload.get("messages", []):
                if message.get("role") == "assistant" and message.get("content") is None:
                    message["content"] = ""
            if self.max_tokens_param != "max_completion_tokens" and (
                limit := payload.pop("max_completion_tokens", None)
            ):
                payload[self.max_tokens_param] = limit
            return payload

    return CompatibleChatOpenAI
