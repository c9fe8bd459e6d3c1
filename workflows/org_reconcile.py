"""Reconciliation: making the org's topics, rows and agent workflows match a spec, and
repairing drift (a topic deleted, an agent's workflow terminated behind the org's back).

Workflow code, called by the OrgWorkflow under its lock. The diff itself is pure
(``kafkaorg/reconcile.py``, shared with ``kafkaorg org plan``); here it is carried out,
each change written to PostgreSQL first and announced on the audit topic after.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.kafka import DeleteTopicsInput, KafkaActivities
    from activities.lifecycle import AgentsRef, LifecycleActivities
    from activities.state import StateActivities
    from kafkaorg.contracts import (
        LIVE_AGENT_STATUSES,
        AgentAction,
        AgentCommand,
        AgentStatus,
        OrgState,
        OrgStopRequest,
    )
    from kafkaorg.names import AGENTS_TOPIC, APPROVALS_TOPIC, AUDIT_TOPIC, DLQ_TOPIC, kafka_topic
    from kafkaorg.org_rules import OrgView
    from kafkaorg.reconcile import SpecDiff
    from kafkaorg.spec import OrgSpec

from workflows.org_effects import OrgEffects


async def apply_spec(
    effects: OrgEffects,
    state: OrgState,
    current: OrgSpec,
    spec: OrgSpec,
    diff: SpecDiff,
    *,
    first: bool = False,
) -> list[str]:
    """Carry out ``diff`` (from ``current`` to ``spec``); say what changed, line by line."""
    old_topics = {t.name: t for t in current.topics}
    old_tools = {} if first else {t.name: t for t in current.tools}
    await effects.ensure_topics(spec)
    saved = await effects.run(StateActivities.save_org, spec)
    for name in saved.retired:
        state.statuses[name] = AgentStatus.RETIRED
    summary = diff.summary_lines()
    await effects.audit(
        "org.applied" if first else "org.changed",
        {"changes": list(summary), "topics": list(saved.topics), "agents": list(saved.agents)},
    )
    for tool in spec.tools:
        old = old_tools.get(tool.name)
        if old is None or (old.code, old.tests) != (tool.code, tool.tests):
            summary.append(await effects.register_tool(tool, spec))
    for name in saved.retired:
        await effects.run(
            LifecycleActivities.command_agent,
            AgentCommand(
                org=spec.org,
                agent=name,
                action=AgentAction.RETIRE,
                reason="removed from the org spec",
            ),
        )
        await effects.audit("agent.retired", {"agent": name, "reason": "removed from spec"})
    for change in diff.agents_to_change:
        version = saved.versions.get(change.name, 1)
        await effects.run(
            LifecycleActivities.command_agent,
            AgentCommand(
                org=spec.org,
                agent=change.name,
                action=AgentAction.UPDATE,
                spec=change.spec,
                version=version,
            ),
        )
        await effects.audit(
            "agent.updated",
            {"agent": change.name, "version": version, "changes": list(change.changes)},
        )
    await effects.delete_work_topics(
        [old_topics[n] for n in diff.topics_to_remove if n in old_topics]
    )
    new_agents = [a.name for a in diff.agents_to_add]
    if new_agents:
        await effects.run(
            LifecycleActivities.start_agents, AgentsRef(org=spec.org, agents=new_agents)
        )
    for agent in spec.agents:
        state.versions[agent.name] = saved.versions.get(agent.name, 1)
        if state.statuses.get(agent.name) in (None, AgentStatus.RETIRED):
            state.statuses[agent.name] = AgentStatus.RUNNING
    if first:
        await effects.set_org_status("running")
    return summary


async def repair_drift(effects: OrgEffects, view: OrgView) -> list[str]:
    """Recreate topics deleted behind the org's back and restart agents that stopped."""
    org = view.spec.org
    expected = [kafka_topic(org, t.name) for t in view.spec.topics]
    sys_topics = (AUDIT_TOPIC, DLQ_TOPIC, APPROVALS_TOPIC, AGENTS_TOPIC)
    expected += [kafka_topic(org, t) for t in sys_topics]
    missing = await effects.run(
        KafkaActivities.missing_topics, DeleteTopicsInput(kafka_topics=expected)
    )
    should_run = [n for n in view.agent_names() if view.status_of(n) in LIVE_AGENT_STATUSES]
    stopped = await effects.run(
        LifecycleActivities.stopped_agents, AgentsRef(org=org, agents=should_run)
    )
    if not missing and not stopped:
        return []
    if missing:
        await effects.ensure_topics(view.spec)
    if stopped:
        await effects.run(
            LifecycleActivities.start_agents, AgentsRef(org=org, agents=list(stopped))
        )
    await effects.audit(
        "org.drift-repaired",
        {"recreated_topics": list(missing), "restarted_agents": list(stopped)},
    )
    return [f"recreated topic {t}" for t in missing] + [f"restarted agent {a}" for a in stopped]


async def shut_down(effects: OrgEffects, view: OrgView, request: OrgStopRequest) -> None:
    """Retire every agent, drop the work topics if asked, and mark the org stopped."""
    await effects.run(
        LifecycleActivities.stop_agents, AgentsRef(org=view.spec.org, agents=view.agent_names())
    )
    if request.delete_work_topics:
        await effects.delete_work_topics(list(view.spec.topics))
    await effects.set_org_status("stopped", reason=request.reason)
