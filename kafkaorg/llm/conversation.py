"""Keeping an ``llm`` agent's conversation within bounds across records and continue-as-new.

The conversation lives in the AgentWorkflow's state (and so in Temporal's history);
whole turns are dropped from the front when it grows past a size, and a note
tells the model how many earlier records it no longer sees.
"""

from __future__ import annotations

import json
from typing import Any

MAX_CONVERSATION_CHARS = 40_000
"""Serialized size kept between records: each model call carries it as activity input."""


def _size(messages: list[dict[str, Any]]) -> int:
    return sum(len(json.dumps(m, sort_keys=True)) for m in messages)


def _turn_starts(messages: list[dict[str, Any]]) -> list[int]:
    """Where each turn begins: a user message (tool replies always follow their call)."""
    return [i for i, m in enumerate(messages) if m.get("role") == "user"]


def trim_conversation(
    messages: list[dict[str, Any]], max_chars: int = MAX_CONVERSATION_CHARS
) -> tuple[list[dict[str, Any]], int]:
    """The messages to keep and how many turns were dropped (the last turn always stays).

    System messages are notes added for the model (``with_note``) and are not kept.
    """
    kept = [m for m in messages if m.get("role") != "system"]
    dropped = 0
    starts = _turn_starts(kept)
    while len(starts) > 1 and _size(kept) > max_chars:
        kept = kept[starts[1] :]
        dropped += 1
        starts = _turn_starts(kept)
    return kept, dropped


def with_note(messages: list[dict[str, Any]], dropped_turns: int) -> list[dict[str, Any]]:
    """The conversation as the model sees it: a first note when earlier turns were dropped."""
    if not dropped_turns:
        return messages
    note = {
        "role": "system",
        "content": f"Note: {dropped_turns} earlier record(s) of this conversation were "
        "dropped to keep it short.",
    }
    return [note, *messages]
