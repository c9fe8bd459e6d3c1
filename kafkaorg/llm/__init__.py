"""The LLM layer: chat models from one factory, token use and budgets, prompts."""

from kafkaorg.llm.models import (
    LLMNotConfiguredError,
    create_chat_model,
    require_llm,
    require_llm_for,
)

__all__ = ["LLMNotConfiguredError", "create_chat_model", "require_llm", "require_llm_for"]
