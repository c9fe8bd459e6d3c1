"""The org's permissions and quotas: pure functions of the org's spec and state.

The OrgWorkflow asks these twice per request: in the update's validator (so a
refusal never reaches history) and again under its lock (the org may have changed
while the request waited). Each returns the ``Refusal``s it finds, none when the
request may go ahead; the workflow turns them into a typed ``ApplicationError``.
No I/O and no clock: the caller passes ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass

from kafkaorg.contracts.approvals import ApprovalKind, ApprovalVerdict
from kafkaorg.contracts.enums import AgentAction, AgentStatus, RefusalType, ToolStatus
from kafkaorg.contracts.org import (
    AgentCommand,
    AgentRegistration,
    ApproveToolRequest,
    CreateAgentRequest,
    CreateToolRequest,
    CreateTopicRequest,
    OrgRequest,
    OrgState,
    PendingApproval,
    PublishRequest,
    RollbackToolRequest,
)
from kafkaorg.contracts.refusals import Refusal
from kafkaorg.mcp_tools import exceeding_entries
from kafkaorg.reconcile import diff_specs
from kafkaorg.spec import (
    AgentSpec,
    ApprovalRule,
    OrgSpec,
    TopicClass,
    agent_problems,
    semantic_problems,
)

SPAWN_RATE_WINDOW_S = 60.0

_NOT_PERMITTED = RefusalType.NOT_PERMITTED
_QUOTA = RefusalType.QUOTA_EXCEEDED


@dataclass
class OrgView:
    """Read-only questions about a running org, answered from its spec and state."""

    spec: OrgSpec
    state: OrgState

    def agent_names(self) -> list[str]:
        names = [a.name for a in self.spec.agents]
        names += [d.spec.name for d in self.state.dynamic_agents if d.spec.name not in names]
        return names

    def pending(self, kind: ApprovalKind, subject: str) -> PendingApproval | None:
        return next(
            (p for p in self.state.approvals if (p.kind, p.subject) == (kind, subject)), None
        )

    def registration(self, name: str) -> AgentRegistration | None:
        return next((d for d in self.state.dynamic_agents if d.spec.name == name), None)

    def agent_spec(self, name: str) -> AgentSpec | None:
        spec = self.spec.agent(name)
        if spec is not None:
            return spec
        dyn = self.registration(name)
        return dyn.spec if dyn else None

    def status_of(self, name: str) -> AgentStatus | None:
        if self.agent_spec(name) is None:
            return None
        return AgentStatus(self.state.statuses.get(name, AgentStatus.STARTING))

    def depth(self, name: str) -> int:
        dyn = self.registration(name)
        return dyn.depth if dyn else 0

    def parent_of(self, name: str) -> str | None:
        dyn = self.registration(name)
        return dyn.parent_agent if dyn else None

    def live_agents(self) -> list[str]:
        return [n for n in self.agent_names() if self.status_of(n) != AgentStatus.RETIRED]

    def known_tools(self) -> frozenset[str]:
        return frozenset(t.name for t in self.state.tools) | {t.name for t in self.spec.tools}

    def latest_tool_version(self, name: str) -> int | None:
        versions = [t.version for t in self.state.tools if t.name == name]
        return max(versions) if versions else None

    def tool_status(self, name: str, version: int) -> ToolStatus | None:
        return next(
            (t.status for t in self.state.tools if (t.name, t.version) == (name, version)), None
        )


def requester(view: OrgView, requested_by: str) -> str | None:
    """The requesting agent's name (None for a person); refuses agents not live in this org.

    Agents ask as ``agent:<org>:<name>`` (the platform fills in the org); the short
    ``agent:<name>`` means an agent of this org, as a user acting for it would write.
    """
    if requested_by.startswith("user:"):
        return None
    if not requested_by.startswith("agent:"):
        raise Refusal(
            f"requested_by {requested_by!r} must be user:<name> or agent:<org>:<name>",
            RefusalType.INVALID_REQUEST,
        )
    org, _, name = requested_by.removeprefix("agent:").rpartition(":")
    if org and org != view.spec.org:
        raise Refusal(
            f"requester {requested_by!r} belongs to org {org!r}, not {view.spec.org!r}",
            _NOT_PERMITTED,
        )
    if view.status_of(name) in (None, AgentStatus.RETIRED, AgentStatus.FAILED):
        raise Refusal(f"requester {requested_by!r} is not a live agent of this org", _NOT_PERMITTED)
    return name


def _addressed(view: OrgView, request: OrgRequest) -> list[Refusal]:
    if request.org is not None and request.org != view.spec.org:
        return [
            Refusal(
                f"request for org {request.org!r} sent to org {view.spec.org!r}",
                RefusalType.INVALID_REQUEST,
            )
        ]
    return []


def _requester_problems(view: OrgView, request: OrgRequest) -> tuple[str | None, list[Refusal]]:
    try:
        return requester(view, request.requested_by), []
    except Refusal as refusal:
        return None, [refusal]


def exceeds_parent(child: AgentSpec, parent: AgentSpec) -> list[Refusal]:
    """A spawned agent never gets more rights than the agent that asked for it."""
    problems = []
    if not parent.can_create_agents:
        problems.append(f"agent {parent.name!r} may not create agents (can_create_agents: false)")
    if child.can_create_agents and not parent.can_create_agents:
        problems.append("can_create_agents: not granted to the parent")
    if child.can_create_tools and not parent.can_create_tools:
        problems.append("can_create_tools: not granted to the parent")
    if child.can_start_flows and not parent.can_start_flows:
        problems.append("can_start_flows: not granted to the parent")
    parent_topics = set(parent.subscribes) | set(parent.publishes)
    for name in child.subscribes:
        if name not in parent_topics:
            problems.append(f"subscribes: {name!r} is not readable by the parent")
    for name in child.publishes:
        if name not in parent.publishes:
            problems.append(f"publishes: {name!r} is not writable by the parent")
    for entry in exceeding_entries(child.mcp, parent.mcp):
        problems.append(f"mcp: {entry!r} is not granted to the parent")
    return [Refusal(p, _NOT_PERMITTED) for p in problems]


def spawn_quota_problems(view: OrgView, parent: str, now: float) -> list[Refusal]:
    """Depth and rate limits on agents creating agents (people are not rate-limited)."""
    limits = view.spec.limits
    problems = []
    depth = view.depth(parent) + 1
    if depth > limits.max_spawn_depth:
        problems.append(
            Refusal(
                f"quota: spawn depth {depth} exceeds limits.max_spawn_depth "
                f"({limits.max_spawn_depth})",
                _QUOTA,
            )
        )
    recent = [t for t in view.state.spawn_times if now - t < SPAWN_RATE_WINDOW_S]
    if len(recent) >= limits.max_spawns_per_minute:
        problems.append(
            Refusal(
                f"quota: {len(recent)} agents spawned in the last minute "
                f"(limits.max_spawns_per_minute = {limits.max_spawns_per_minute})",
                _QUOTA,
            )
        )
    return problems


def create_agent_problems(view: OrgView, request: CreateAgentRequest, now: float) -> list[Refusal]:
    spec = request.agent
    problems = _addressed(view, request)
    if view.status_of(spec.name) not in (None, AgentStatus.RETIRED):
        problems.append(Refusal(f"agent {spec.name!r} already exists", RefusalType.ALREADY_EXISTS))
    problems += [
        Refusal(p)
        for p in agent_problems(
            spec,
            {t.name for t in view.spec.topics},
            "agent",
            set(view.known_tools()),
            {m.name for m in view.spec.mcp_servers},
        )
    ]
    live = view.live_agents()
    if len(live) >= view.spec.limits.max_agents:
        problems.append(
            Refusal(
                f"quota: the org has {len(live)} agents "
                f"(limits.max_agents = {view.spec.limits.max_agents})",
                _QUOTA,
            )
        )
    problems += _waiting_problems(view, ApprovalKind.CREATE_AGENT, spec.name)
    parent, refused = _requester_problems(view, request)
    problems += refused
    if parent is not None:
        parent_spec = view.agent_spec(parent)
        assert parent_spec is not None  # requester() vouched for it
        problems += exceeds_parent(spec, parent_spec)
        problems += spawn_quota_problems(view, parent, now)
    return problems


def _waiting_problems(view: OrgView, kind: ApprovalKind, subject: str) -> list[Refusal]:
    """One request per agent or tool waits at a time: a second would race the first."""
    waiting = view.pending(kind, subject)
    if waiting is None:
        return []
    return [
        Refusal(
            f"{subject!r} already waits for approval {waiting.id} "
            f"(requested by {waiting.requested_by})",
            RefusalType.CONFLICT,
        )
    ]


def needs_approval(view: OrgView, kind: ApprovalKind, requested_by: str) -> ApprovalRule | None:
    """The policy's rule when an agent asks for an action the org makes wait for a person;
    None when it goes ahead (people's own requests never wait)."""
    if not requested_by.startswith("agent:"):
        return None
    return next((r for a, r in view.spec.policy.approvals.items() if a == kind), None)


def publish_subject(request: PublishRequest) -> str:
    """What a held publish is listed as; one record is held once."""
    return f"{request.record.type} to {request.topic} ({request.record.id})"


def publish_problems(view: OrgView, request: PublishRequest) -> list[Refusal]:
    """Only an agent of the org, to a topic it publishes to, may have a record held."""
    parent, problems = _requester_problems(view, request)
    if problems:
        return problems
    spec = view.agent_spec(parent) if parent else None
    if spec is None or request.topic not in spec.publishes:
        return [
            Refusal(
                f"{request.requested_by} does not publish to {request.topic!r}",
                _NOT_PERMITTED,
            )
        ]
    return []


def publish_needs_approval(view: OrgView, request: PublishRequest) -> ApprovalRule | None:
    """The policy's ``publish`` rule when an agent's record goes to an audit-class topic."""
    rule = needs_approval(view, ApprovalKind.PUBLISH, request.requested_by)
    topic = next((t for t in view.spec.topics if t.name == request.topic), None)
    if rule is None or topic is None or topic.topic_class != TopicClass.AUDIT:
        return None
    return rule


def verdict_problems(view: OrgView, verdict: ApprovalVerdict) -> list[Refusal]:
    if verdict.by.startswith("agent:"):
        return [Refusal(f"{verdict.by}: only people decide approvals", _NOT_PERMITTED)]
    if not any(p.id == verdict.id for p in view.state.approvals):
        waiting = ", ".join(p.id for p in view.state.approvals) or "none"
        return [
            Refusal(
                f"org {view.spec.org!r} has no approval {verdict.id!r} waiting "
                f"(waiting: {waiting}; decided ones are in kafkaorg approval list --all)",
                RefusalType.NOT_FOUND,
            )
        ]
    return []


def lifecycle_problems(view: OrgView, command: AgentCommand) -> list[Refusal]:
    problems = _addressed(view, command)
    if command.action == AgentAction.UPDATE:
        return [
            *problems,
            Refusal("agents change their spec through the org spec (kafkaorg org apply)"),
        ]
    status = view.status_of(command.agent)
    if status is None:
        return [
            *problems,
            Refusal(
                f"unknown agent {command.agent!r} in org {view.spec.org!r}", RefusalType.NOT_FOUND
            ),
        ]
    if status == AgentStatus.RETIRED:
        problems.append(Refusal(f"agent {command.agent!r} is retired", RefusalType.CONFLICT))
    elif status == AgentStatus.FAILED and command.action != AgentAction.RETIRE:
        problems.append(
            Refusal(
                f"agent {command.agent!r} failed; retire it and create it again",
                RefusalType.CONFLICT,
            )
        )
    parent, refused = _requester_problems(view, command)
    problems += refused
    if parent is not None and view.parent_of(command.agent) != parent:
        problems.append(
            Refusal(f"{command.requested_by} may only change agents it created", _NOT_PERMITTED)
        )
    return problems


def create_topic_problems(view: OrgView, request: CreateTopicRequest) -> list[Refusal]:
    problems = _addressed(view, request)
    if view.spec.topic(request.topic.name) is not None:
        problems.append(
            Refusal(f"topic {request.topic.name!r} already exists", RefusalType.ALREADY_EXISTS)
        )
    parent, refused = _requester_problems(view, request)
    problems += refused
    if parent is not None:
        spec = view.agent_spec(parent)
        if spec is None or not spec.can_create_agents:
            problems.append(
                Refusal(f"{request.requested_by} may not create topics", _NOT_PERMITTED)
            )
    return problems


def create_tool_problems(view: OrgView, request: CreateToolRequest) -> list[Refusal]:
    problems = _addressed(view, request)
    parent, refused = _requester_problems(view, request)
    problems += refused
    if parent is not None:
        spec = view.agent_spec(parent)
        if spec is None or not spec.can_create_tools:
            problems.append(Refusal(f"{request.requested_by} may not create tools", _NOT_PERMITTED))
    name = request.tool.name
    if view.spec.tool(name) is not None:
        problems.append(
            Refusal(
                f"tool {name!r} is declared in the org spec; change it there (kafkaorg org apply)",
                RefusalType.CONFLICT,
            )
        )
    if not request.tool.source.strip():
        problems.append(Refusal(f"tool {name!r} has no code"))
    problems += _waiting_problems(view, ApprovalKind.CREATE_TOOL, name)
    latest = view.latest_tool_version(name)
    if request.based_on_version is not None and request.based_on_version != (latest or 0):
        problems.append(
            Refusal(
                f"tool {name!r} is at version {latest or 0} now, not "
                f"{request.based_on_version}: read it again and base the change on that",
                RefusalType.CONFLICT,
            )
        )
    return problems


def _tool_version_problems(
    view: OrgView, tool: str, version: int, allowed: ToolStatus, why: str
) -> list[Refusal]:
    status = view.tool_status(tool, version)
    if status is None:
        return [
            Refusal(
                f"tool {tool!r} has no version {version} in org {view.spec.org!r}",
                RefusalType.NOT_FOUND,
            )
        ]
    if status != allowed:
        return [
            Refusal(f"tool {tool!r} version {version} is {status}, {why}", RefusalType.CONFLICT)
        ]
    return []


def approve_problems(view: OrgView, request: ApproveToolRequest) -> list[Refusal]:
    if not request.approved_by.startswith("user:"):
        return [Refusal(f"only people approve tools, not {request.approved_by!r}", _NOT_PERMITTED)]
    return _tool_version_problems(
        view, request.tool, request.version, ToolStatus.PENDING_APPROVAL, "not pending approval"
    )


def rollback_problems(view: OrgView, request: RollbackToolRequest) -> list[Refusal]:
    problems = _addressed(view, request)
    if not request.requested_by.startswith("user:"):
        return [
            *problems,
            Refusal(f"only people roll tools back, not {request.requested_by!r}", _NOT_PERMITTED),
        ]
    return problems + _tool_version_problems(
        view,
        request.tool,
        request.version,
        ToolStatus.ACTIVE,
        "only a version that passed its tests (and was approved) can be rolled back to",
    )


def apply_spec_problems(view: OrgView, spec: OrgSpec) -> list[Refusal]:
    """A changed spec for the running org: valid, for this org, and not taking away what
    agents created at run time still use."""
    problems = [
        Refusal(p, RefusalType.INVALID_SPEC)
        for p in semantic_problems(spec, frozenset(t.name for t in view.state.tools))
    ]
    if spec.org != view.spec.org:
        problems.insert(
            0,
            Refusal(
                f"org: spec is for {spec.org!r}, this is {view.spec.org!r}",
                RefusalType.INVALID_SPEC,
            ),
        )
    problems += [Refusal(p, RefusalType.INVALID_SPEC) for p in diff_specs(view.spec, spec).problems]
    topics = {t.name for t in spec.topics}
    for dyn in view.state.dynamic_agents:
        if view.status_of(dyn.spec.name) == AgentStatus.RETIRED:
            continue
        if spec.agent(dyn.spec.name) is not None:
            problems.append(
                Refusal(
                    f"agent {dyn.spec.name!r} already exists (created at run time)",
                    RefusalType.ALREADY_EXISTS,
                )
            )
        for name in dyn.spec.subscribes + dyn.spec.publishes:
            if name not in topics:
                problems.append(
                    Refusal(
                        f"topic {name!r} is still used by agent {dyn.spec.name!r}",
                        RefusalType.CONFLICT,
                    )
                )
        for entry in dyn.spec.mcp:
            server = entry.partition(".")[0]
            if spec.mcp_server(server) is None:
                problems.append(
                    Refusal(
                        f"MCP server {server!r} is still used by agent {dyn.spec.name!r}",
                        RefusalType.CONFLICT,
                    )
                )
    return problems
