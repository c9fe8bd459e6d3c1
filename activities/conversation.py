"""Conversation turns of ``llm`` agents stored by reference in PostgreSQL, and read back.

The AgentWorkflow keeps only the recent part of a conversation in its state (and
so in Temporal's history); older turns are written here first, keyed by the
workflow chain and turn number, so a retried archive writes each turn once.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.state import org_id_of
from kafkaorg.db.models import ConversationTurn
from kafkaorg.llm.conversation import turn_text

MAX_RECALL_CHARS = 4000
"""Text handed back to the model per recall; it can ask for a turn by number for more."""


class ArchiveInput(BaseModel):
    org: str
    agent: str
    workflow_id: str
    chain_id: str
    """The workflow's first run id: constant across continue-as-new."""
    first_turn: int = Field(ge=1)
    turns: list[list[dict[str, Any]]]


class RecallQuery(BaseModel):
    org: str
    agent: str
    chain_id: str
    query: str = ""
    """Case-insensitive text the turn must contain; empty: the most recent turns."""
    turn: int | None = None
    """One turn by number (1 is the oldest archived)."""
    limit: int = Field(default=3, ge=1, le=20)


class RecalledTurn(BaseModel):
    turn: int
    text: str


class ConversationActivities:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    @activity.defn
    def archive_turns(self, input: ArchiveInput) -> int:
        """Store the turns; returns how many were new (0 when a retry finds them written)."""
        if not input.turns:
            return 0
        with self._sessions.begin() as session:
            org_id = org_id_of(session, input.org)
            result = session.execute(
                insert(ConversationTurn)
                .values(
                    [
                        {
                            "org_id": org_id,
                            "agent": input.agent,
                            "workflow_id": input.workflow_id,
                            "chain_id": input.chain_id,
                            "turn": input.first_turn + n,
                            "messages": messages,
                        }
                        for n, messages in enumerate(input.turns)
                    ]
                )
                .on_conflict_do_nothing(index_elements=["chain_id", "turn"])
                .returning(ConversationTurn.id)
            )
            return len(result.all())

    @activity.defn
    def recall_turns(self, query: RecallQuery) -> list[RecalledTurn]:
        """Newest first, matching turns only, cut to ``MAX_RECALL_CHARS`` in all."""
        with self._sessions() as session:
            org_id = org_id_of(session, query.org)
            statement = (
                select(ConversationTurn.turn, ConversationTurn.messages)
                .where(
                    ConversationTurn.org_id == org_id,
                    ConversationTurn.agent == query.agent,
                    ConversationTurn.chain_id == query.chain_id,
                )
                .order_by(ConversationTurn.turn.desc())
            )
            if query.turn is not None:
                statement = statement.where(ConversationTurn.turn == query.turn)
            needle = query.query.strip().lower()
            found: list[RecalledTurn] = []
            budget = MAX_RECALL_CHARS
            for turn, messages in session.execute(statement.execution_options(yield_per=100)):
                text = turn_text(messages)
                if needle and needle not in text.lower():
                    continue
                found.append(RecalledTurn(turn=turn, text=text[:budget]))
                budget -= len(found[-1].text)
                if budget <= 0 or len(found) >= query.limit:
                    break
            return found
