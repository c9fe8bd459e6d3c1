"""What the built-in agent kinds do with one record: pure functions, no I/O.

Output ids derive from the agent's workflow id, the input id and the output's
position, so a retried step publishes records with the same ids.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, JsonValue

from kafkaorg.envelope import Record, caused_by, derived_id
from kafkaorg.spec import AgentSpec, RuleSpec


class Emission(BaseModel):
    """One record an agent step publishes, and the org topic it goes to."""

    topic: str
    record: Record


class AgentStepError(ValueError):
    """The agent cannot process this record (bad rule mapping, unsupported kind)."""


def _lookup(record: Record, path: str) -> JsonValue:
    """Resolve ``$.payload.a.b`` against the record; a missing field gives None."""
    current: JsonValue = record.model_dump(mode="json")
    for part in path.removeprefix("$.").split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return current


def _map_payload(rule: RuleSpec, record: Record) -> dict[str, JsonValue]:
    if rule.map is None:
        return dict(record.payload)
    out: dict[str, JsonValue] = {}
    for key, value in rule.map.items():
        out[key] = (
            _lookup(record, value) if isinstance(value, str) and value.startswith("$.") else value
        )
    return out


def _output(
    agent: AgentSpec,
    workflow_id: str,
    record: Record,
    index: int,
    type_: str,
    payload: dict[str, JsonValue],
    now: datetime,
) -> Record:
    return Record.model_validate(
        {
            "id": derived_id(workflow_id, record.id, index),
            "type": type_,
            "source": f"agent:{agent.name}",
            "timestamp": now,
            "payload": payload,
            **caused_by(record),
        }
    )


def emissions_for(
    agent: AgentSpec, workflow_id: str, record: Record, now: datetime
) -> list[Emission]:
    """The records ``agent`` publishes in answer to ``record``."""
    if agent.kind == "echo":
        return [
            Emission(
                topic=topic,
                record=_output(
                    agent, workflow_id, record, i, record.type, dict(record.payload), now
                ),
            )
            for i, topic in enumerate(agent.publishes)
        ]
    if agent.kind == "rule":
        matching = [r for r in agent.rules if r.on in ("*", record.type)]
        return [
            Emission(
                topic=rule.to,
                record=_output(
                    agent, workflow_id, record, i, rule.emit, _map_payload(rule, record), now
                ),
            )
            for i, rule in enumerate(matching)
        ]
    raise AgentStepError(f"agent kind {agent.kind!r} cannot run in this version")


def tool_emissions(
    agent: AgentSpec,
    workflow_id: str,
    record: Record,
    result: dict[str, JsonValue],
    now: datetime,
) -> list[Emission]:
    """What a ``tool`` agent publishes: the tool's result, to each of its topics.

    The type is the agent's ``emit``, else ``<input type>.result``.
    """
    type_ = agent.emit or f"{record.type}.result"
    return [
        Emission(
            topic=topic,
            record=_output(agent, workflow_id, record, i, type_, dict(result), now),
        )
        for i, topic in enumerate(agent.publishes)
    ]
