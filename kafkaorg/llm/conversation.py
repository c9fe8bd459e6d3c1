"""Keeping an ``llm`` agent's conversation within bounds across records and continue-as-new.

The conversation lives in the AgentWorkflow's state (and so in Temporal's history,
once per model call). When it grows past a size, whole turns leave it from the
front and are stored by reference in PostgreSQL (``conversation_turns``); a note
tells the model how many there are and that ``recall_conversation`` reads them.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

MAX_CONVERSATION_CHARS = 40_000
"""Serialized size kept between records: each model call carries it as activity input."""
RECALL_TOOL = "recall_conversation"


def _size(messages: list[dict[str, Any]]) -> int:
    return sum(len(json.dumps(m, sort_keys=True)) for m in messages)


def _turn_starts(messages: list[dict[str, Any]]) -> list[int]:
    """Where each turn begins: a user message (tool replies always follow their call)."""
    return [i for i, m in enumerate(messages) if m.get("role") == "user"]


def trim_conversation(
    messages: list[dict[str, Any]], max_chars: int = MAX_CONVERSATION_CHARS
) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """The messages to keep, and the whole turns that leave, oldest first.

    The last turn always stays. System messages are notes added for the model
    (``with_note``) and are neither kept nor archived.
    """
    kept = [m for m in messages if m.get("role") != "system"]
    moved: list[list[dict[str, Any]]] = []
    starts = _turn_starts(kept)
    while len(starts) > 1 and _size(kept) > max_chars:
        moved.append(kept[: starts[1]])
        kept = kept[starts[1] :]
        starts = _turn_starts(kept)
    return kept, moved


def with_note(messages: list[dict[str, Any]], archived_turns: int) -> list[dict[str, Any]]:
    """The conversation as the model sees it: a first note when earlier turns were archived."""
    if not archived_turns:
        return messages
    note = {
        "role": "system",
        "content": f"Note: {archived_turns} earlier record(s) of this conversation (turns 1 to "
        f"{archived_turns}) were archived to keep it short; call {RECALL_TOOL} to read them.",
    }
    return [note, *messages]


def turn_text(messages: list[dict[str, Any]]) -> str:
    """One archived turn as compact text for the model: role, then content or tool calls."""
    lines = []
    for message in messages:
        role = message.get("role", "?")
        if message.get("content"):
            lines.append(f"{role}: {message['content']}")
        for call in message.get("tool_calls") or []:
            function = call.get("function", {})
            lines.append(f"{role} called {function.get('name')}({function.get('arguments')})")
    return "\n".join(lines)


class ToolCallView(BaseModel):
    """One tool call of the model, with the result it was given back."""

    name: str
    arguments: str
    result: str | None = None


class DecisionStep(BaseModel):
    """One model reply: what it said and the tools it called."""

    reply: str = ""
    tool_calls: list[ToolCallView] = []


class DecisionTurn(BaseModel):
    """One record an llm agent handled: what it was given and what it decided, in order."""

    turn: int
    input: str
    steps: list[DecisionStep]
    archived: bool = False


def decision_turns(
    messages: list[dict[str, Any]], first_turn: int = 1, archived: bool = False
) -> list[DecisionTurn]:
    """A conversation (OpenAI messages) as turns: each user message opens one, the
    assistant replies follow, and each tool result is matched to its call by id."""
    turns: list[DecisionTurn] = []
    calls: dict[str, ToolCallView] = {}
    for message in messages:
        role = message.get("role")
        if role == "user":
            content = message.get("content")
            text = content if isinstance(content, str) else json.dumps(content)
            turns.append(
                DecisionTurn(turn=first_turn + len(turns), input=text, steps=[], archived=archived)
            )
        elif role == "assistant" and turns:
            step = DecisionStep(reply=str(message.get("content") or ""))
            for call in message.get("tool_calls") or []:
                function = call.get("function", {})
                view = ToolCallView(
                    name=str(function.get("name")), arguments=str(function.get("arguments", ""))
                )
                calls[str(call.get("id"))] = view
                step.tool_calls.append(view)
            turns[-1].steps.append(step)
        elif role == "tool":
            matched = calls.get(str(message.get("tool_call_id")))
            if matched is not None:
                matched.result = str(message.get("content") or "")
    return turns
