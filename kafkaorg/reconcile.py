"""The difference between a desired spec and what runs: pure, shared by plan and apply.

``kafkaorg org plan`` prints it without changing anything; the OrgWorkflow's
``apply_spec`` update carries the same diff out. Only agents declared in a spec
are managed by it: agents created at run time (by users or other agents) are
left alone by ``apply``.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from kafkaorg.spec import AgentSpec, OrgSpec, TopicSpec


class TopicChange(BaseModel):
    name: str
    changes: list[str]


class AgentChange(BaseModel):
    name: str
    changes: list[str]
    spec: AgentSpec


class SpecDiff(BaseModel):
    topics_to_add: list[TopicSpec] = Field(default_factory=list)
    topics_to_change: list[TopicChange] = Field(default_factory=list)
    topics_to_remove: list[str] = Field(default_factory=list)
    agents_to_add: list[AgentSpec] = Field(default_factory=list)
    agents_to_change: list[AgentChange] = Field(default_factory=list)
    agents_to_retire: list[str] = Field(default_factory=list)
    tools_to_add: list[str] = Field(default_factory=list)
    tools_to_change: list[str] = Field(default_factory=list)
    """New code or tests: a new immutable version, tested in the sandbox before it is current."""
    limits_changed: bool = False
    mcp_servers_changed: list[str] = Field(default_factory=list)
    """``+ name``, ``~ name`` or ``- name``: MCP servers declared, changed or dropped (agents
    list the tools again when they next start a run or within ``MCP_CATALOG_TTL``)."""
    problems: list[str] = Field(default_factory=list)
    """Changes the platform refuses to make in place (e.g. fewer partitions)."""

    @property
    def is_empty(self) -> bool:
        return not (
            self.topics_to_add
            or self.topics_to_change
            or self.topics_to_remove
            or self.agents_to_add
            or self.agents_to_change
            or self.agents_to_retire
            or self.tools_to_add
            or self.tools_to_change
            or self.limits_changed
            or self.mcp_servers_changed
        )

    def summary_lines(self) -> list[str]:
        lines = [
            f"+ topic {t.name} ({t.topic_class.value}, {t.partitions} partitions)"
            for t in self.topics_to_add
        ]
        lines += [f"~ topic {t.name}: {'; '.join(t.changes)}" for t in self.topics_to_change]
        lines += [f"- topic {name}" for name in self.topics_to_remove]
        lines += [f"+ agent {a.name} ({a.kind})" for a in self.agents_to_add]
        lines += [f"~ agent {a.name}: {'; '.join(a.changes)}" for a in self.agents_to_change]
        lines += [f"- agent {name} (retire)" for name in self.agents_to_retire]
        lines += [f"+ tool {name}" for name in self.tools_to_add]
        lines += [
            f"~ tool {name}: new version (tested before it is current)"
            for name in self.tools_to_change
        ]
        if self.limits_changed:
            lines.append("~ limits")
        lines += [f"{change[0]} mcp server {change[2:]}" for change in self.mcp_servers_changed]
        return lines


def _field_changes(old: BaseModel, new: BaseModel) -> list[str]:
    before, after = old.model_dump(mode="json"), new.model_dump(mode="json")
    return [f"{key} changed" for key in after if before.get(key) != after.get(key)]


def diff_specs(current: OrgSpec | None, desired: OrgSpec) -> SpecDiff:
    """What applying ``desired`` over ``current`` (None: nothing runs yet) would do."""
    if current is None:
        return SpecDiff(
            topics_to_add=list(desired.topics),
            agents_to_add=list(desired.agents),
            limits_changed=False,
        )
    diff = SpecDiff()
    old_topics = {t.name: t for t in current.topics}
    new_topics = {t.name: t for t in desired.topics}
    for name, topic in new_topics.items():
        old = old_topics.get(name)
        if old is None:
            diff.topics_to_add.append(topic)
            continue
        changes = _field_changes(old, topic)
        if topic.partitions < old.partitions:
            diff.problems.append(
                f"topic {name}: partitions cannot shrink ({old.partitions} → {topic.partitions})"
            )
        if topic.topic_class != old.topic_class:
            diff.problems.append(
                f"topic {name}: class cannot change in place "
                f"({old.topic_class.value} → {topic.topic_class.value})"
            )
        if changes:
            diff.topics_to_change.append(TopicChange(name=name, changes=changes))
    diff.topics_to_remove = sorted(set(old_topics) - set(new_topics))
    old_agents = {a.name: a for a in current.agents}
    for agent in desired.agents:
        old_agent = old_agents.get(agent.name)
        if old_agent is None:
            diff.agents_to_add.append(agent)
        elif old_agent != agent:
            diff.agents_to_change.append(
                AgentChange(name=agent.name, changes=_field_changes(old_agent, agent), spec=agent)
            )
    diff.agents_to_retire = sorted(set(old_agents) - {a.name for a in desired.agents})
    old_tools = {t.name: t for t in current.tools}
    for tool in desired.tools:
        old_tool = old_tools.get(tool.name)
        if old_tool is None:
            diff.tools_to_add.append(tool.name)
        elif (old_tool.code, old_tool.tests) != (tool.code, tool.tests):
            diff.tools_to_change.append(tool.name)
    diff.limits_changed = current.limits != desired.limits
    old_servers = {s.name: s for s in current.mcp_servers}
    new_servers = {s.name: s for s in desired.mcp_servers}
    for name, server in new_servers.items():
        if name not in old_servers:
            diff.mcp_servers_changed.append(f"+ {name}")
        elif old_servers[name] != server:
            diff.mcp_servers_changed.append(f"~ {name}")
    diff.mcp_servers_changed += [f"- {name}" for name in old_servers if name not in new_servers]
    return diff
