"""The org spec (YAML or JSON): topics and agents, validated before anything is created.

``load_spec`` reports every problem at once, each with where it is, so a user
fixes a spec in one pass; nothing downstream ever sees an invalid spec.
"""

from __future__ import annotations

import copy
import json
import posixpath
import re
from enum import StrEnum
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kafkaorg.flow_spec import ApprovalRule, FlowSpec, flow_problems
from kafkaorg.names import (
    AGENT_NAME_RE,
    ORG_NAME_RE,
    PLATFORM_ORG,
    RESERVED_TOPIC_NAMES,
    TOPIC_NAME_RE,
)
from kafkaorg.schema_registry.validation import schema_problem

AgentKind = Literal["echo", "rule", "llm", "tool"]
SUPPORTED_KINDS: frozenset[str] = frozenset({"echo", "rule", "tool", "llm"})
"""Kinds this version can run (``llm`` needs KAFKAORG_LLM_BASE_URL where workers run)."""


class TopicClass(StrEnum):
    """Retention classes; each maps to Kafka topic configs set at creation."""

    WORK = "work"
    AUDIT = "audit"
    STATE = "state"
    DLQ = "dlq"


_DAY_MS = 24 * 3600 * 1000

TOOL_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,99}$")
MCP_SERVER_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,29}$")
"""No ``_`` or ``.``: a server's tools are offered as ``mcp__<server>__<tool>`` and an
agent's ``mcp:`` entries read ``<server>`` or ``<server>.<tool>``."""
RECORD_TYPE_PATTERN = r"^[a-z][a-z0-9_.-]{0,99}$"

TOPIC_CLASS_CONFIGS: dict[TopicClass, dict[str, str]] = {
    TopicClass.WORK: {"retention.ms": str(3 * _DAY_MS), "cleanup.policy": "delete"},
    TopicClass.AUDIT: {"retention.ms": str(90 * _DAY_MS), "cleanup.policy": "delete"},
    TopicClass.STATE: {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"},
    TopicClass.DLQ: {"retention.ms": str(30 * _DAY_MS), "cleanup.policy": "delete"},
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TopicSpec(_Strict):
    name: str
    topic_class: TopicClass = Field(default=TopicClass.WORK, alias="class")
    partitions: int = Field(default=1, ge=1, le=64)
    types: list[str] = Field(default_factory=list)
    """The record types this topic carries; any other type is dead-lettered
    (``schema-wrong-topic``). Empty: any type."""
    archive: bool = False
    """Archived to Parquet before its retention ends, like every audit-class topic."""

    @field_validator("types")
    @classmethod
    def _check_types(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.match(RECORD_TYPE_PATTERN, name):
                raise ValueError(f"record type {name!r} must match {RECORD_TYPE_PATTERN}")
        return value

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if value in RESERVED_TOPIC_NAMES:
            raise ValueError(f"topic name {value!r} is reserved")
        if not TOPIC_NAME_RE.match(value):
            raise ValueError(f"topic name {value!r} must match {TOPIC_NAME_RE.pattern}")
        return value

    def kafka_configs(self) -> dict[str, str]:
        return dict(TOPIC_CLASS_CONFIGS[self.topic_class])

    @property
    def archived(self) -> bool:
        return self.archive or self.topic_class == TopicClass.AUDIT


class RuleSpec(_Strict):
    """On a record of type ``on`` (or ``*``), emit a record of type ``emit`` to topic ``to``.

    ``map`` builds the output payload: a value starting with ``$.`` is a path into
    the input record (``$.payload.title``, ``$.source``), any other value is a literal.
    Without ``map`` the input payload is copied.
    """

    on: str = Field(min_length=1)
    emit: str = Field(pattern=RECORD_TYPE_PATTERN)
    to: str
    map: dict[str, Any] | None = None


class AgentSpec(_Strict):
    name: str
    kind: AgentKind
    instructions: str = ""
    subscribes: list[str] = Field(default_factory=list)
    publishes: list[str] = Field(default_factory=list)
    rules: list[RuleSpec] = Field(default_factory=list)
    tool: str | None = None
    """``tool`` agents: the registered tool run on every record."""
    emit: str | None = Field(default=None, pattern=RECORD_TYPE_PATTERN)
    """``tool`` agents: the output type (default ``<input type>.result``)."""
    can_create_agents: bool = False
    can_create_tools: bool = False
    can_start_flows: bool = False
    """``llm`` agents: the ``start_flow`` built-in (a run of one of the org's flows)."""
    on_text_reply: Literal["publish", "drop", "dlq"] = "publish"
    """``llm`` agents: what becomes of a plain-text answer to a record they published
    nothing for (``kafkaorg.contracts.enums.TextReply``)."""
    first_tool_choice: Literal["auto", "required", "publish"] = "auto"
    """``llm`` agents: what the first model call for each record must do: as the model
    likes (``auto``), call some tool (``required``) or call ``publish``. Small models answer
    in prose unless made to act; the calls after it are ``auto``, so the model can finish."""
    mcp: list[str] = Field(default_factory=list)
    """``llm`` agents: the org's MCP servers whose tools this agent may call, each
    ``<server>`` (all its tools) or ``<server>.<tool>`` (that tool only)."""
    token_budget: int | None = Field(default=None, ge=1)
    """LLM tokens this agent and every agent it spawns (and theirs) may spend together;
    past it, each of them stops at its next model call (``kafkaorg.llm.usage``)."""

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not AGENT_NAME_RE.match(value):
            raise ValueError(f"agent name {value!r} must match {AGENT_NAME_RE.pattern}")
        return value


class SchemaSpec(_Strict):
    """A record type's JSON Schema, registered by ``apply`` (``kafkaorg.schema_registry``).

    ``file`` names a JSON/YAML file relative to the spec; loading resolves it into
    ``schema``. A changed schema becomes the type's next version, if its
    ``compatibility`` mode accepts it.
    """

    type: str = Field(pattern=RECORD_TYPE_PATTERN)
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    file: str | None = None
    compatibility: Literal["BACKWARD", "FORWARD", "FULL", "NONE"] | None = None
    """None: the type's current mode (BACKWARD for a new type)."""

    @model_validator(mode="after")
    def _check_source(self) -> SchemaSpec:
        if (self.json_schema is None) == (self.file is None):
            raise ValueError("a schema needs exactly one of 'schema' (inline) or 'file'")
        return self


class ToolSpec(_Strict):
    """A tool: Python code defining ``def run(args: dict) -> dict``, and its tests.

    Tests are Python code with plain ``assert``s calling ``run(...)`` (top-level
    statements and/or ``test_*`` functions). In a file, ``file``/``tests_file``
    name files relative to the spec; loading resolves them into ``code``/``tests``,
    so the OrgWorkflow's input is self-contained JSON.
    """

    name: str
    description: str = ""
    code: str | None = None
    file: str | None = None
    tests: str | None = None
    tests_file: str | None = None
    args_schema: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not TOOL_NAME_RE.match(value):
            raise ValueError(f"tool name {value!r} must match {TOOL_NAME_RE.pattern}")
        return value

    @model_validator(mode="after")
    def _check_sources(self) -> ToolSpec:
        if (self.code is None) == (self.file is None):
            raise ValueError("a tool needs exactly one of 'code' (inline) or 'file'")
        if self.tests is not None and self.tests_file is not None:
            raise ValueError("a tool takes 'tests' (inline) or 'tests_file', not both")
        return self

    @property
    def source(self) -> str:
        """The inline code (only meaningful after loading resolved ``file``)."""
        return self.code or ""


_UNMOUNTABLE = frozenset({"/proc", "/sys", "/dev"})
"""The host's kernel interfaces (the jail's /tmp is its own tmpfs; a mount may go below it)."""


class McpSandboxLimits(_Strict):
    """What a stdio MCP server's jail may use; unset fields keep the worker's policy."""

    cpu_time_s: int | None = Field(default=None, ge=1, le=3600)
    memory_mb: int | None = Field(default=None, ge=64, le=65536)
    processes: int | None = Field(default=None, ge=1, le=4096)
    open_files: int | None = Field(default=None, ge=16, le=65536)
    tmpfs_mb: int | None = Field(default=None, ge=1, le=65536)


class McpServerSpec(_Strict):
    """An MCP server the org's ``llm`` agents may use (``AgentSpec.mcp`` says which).

    ``url``: a streamable-HTTP endpoint, reached from the workers. ``headers`` are sent
    with every request; ``${NAME}`` in a value is read from the worker's environment
    when connecting, so a secret stays out of the spec and the workflow histories.
    """

    name: str
    url: str | None = None
    command: list[str] | None = None
    """A stdio server: this program and its arguments, started in the sandbox (nsjail) on
    the sandbox worker, a fresh jail per listing and per call. ``command[0]`` is a path
    inside the jail, or a name found on its ``PATH`` (``/usr/bin:/bin``)."""
    description: str = ""
    headers: dict[str, str] = Field(default_factory=dict)
    mounts: list[str] = Field(default_factory=list)
    """stdio only: host directories the jail sees read-only, at the same paths (the
    server's code and libraries); the jail otherwise sees only /usr, /lib and /bin."""
    env: dict[str, str] = Field(default_factory=dict)
    """stdio only: the server's environment; ``${NAME}`` is read from the sandbox worker's."""
    sandbox: McpSandboxLimits | None = None
    """stdio only: limits tighter than the sandbox worker's policy (never looser)."""
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    """How long one call (or the tool listing) may take, per attempt."""
    max_attempts: int = Field(default=3, ge=1, le=10)
    """Attempts per call when the server cannot be reached or times out (1: a tool with
    side effects is never sent twice). A tool's own error is never retried."""

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not MCP_SERVER_NAME_RE.match(value):
            raise ValueError(f"MCP server name {value!r} must match {MCP_SERVER_NAME_RE.pattern}")
        return value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"url {value!r} must be an http:// or https:// URL")
        return value

    @field_validator("command")
    @classmethod
    def _check_command(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or not all(value)):
            raise ValueError("command must be a non-empty list of non-empty strings")
        return value

    @field_validator("mounts")
    @classmethod
    def _check_mounts(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path.startswith("/") or path != posixpath.normpath(path):
                raise ValueError(f"mount {path!r} must be an absolute, normalized path")
            top = "/" + path.split("/")[1]
            if path in ("/", "/tmp") or top in _UNMOUNTABLE:
                raise ValueError(f"mount {path!r}: cannot be mounted into the sandbox")
        return value

    @field_validator("env")
    @classmethod
    def _check_env(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise ValueError(f"env name {key!r} is not a valid variable name")
        return value

    @model_validator(mode="after")
    def _check_transport(self) -> McpServerSpec:
        if (self.url is None) == (self.command is None):
            raise ValueError(
                "an MCP server needs exactly one of 'url' (streamable HTTP) or 'command' (stdio)"
            )
        if self.url is not None and (self.mounts or self.env or self.sandbox):
            raise ValueError("'mounts', 'env' and 'sandbox' apply to stdio servers ('command')")
        if self.command is not None and self.headers:
            raise ValueError("'headers' apply to streamable-HTTP servers ('url')")
        return self

    @property
    def transport(self) -> Literal["stdio", "http"]:
        return "stdio" if self.command is not None else "http"


ApprovalAction = Literal["create_agent", "create_tool", "publish"]
"""Agents' risky actions an org may make wait for a person (``policy.approvals``);
``publish`` is an ``llm`` agent's record to an audit-class topic (kept for good)."""


class OrgPolicy(_Strict):
    tool_approval: Literal["auto", "human"] = "auto"
    """``human``: a tool version that passed its tests waits for ``kafkaorg tool approve``."""
    approvals: dict[ApprovalAction, ApprovalRule] = Field(default_factory=dict)
    """Actions an agent asks for that wait for a person (``kafkaorg approval approve``);
    what people ask for themselves is carried out at once."""
    unregistered_types: Literal["accept", "reject"] = "accept"
    """``reject``: a record whose type has no registered schema is dead-lettered
    (``schema-unregistered``); strict orgs register every type they use."""


class OrgLimits(_Strict):
    """Quotas the OrgWorkflow enforces on every change, whoever asks."""

    max_agents: int = Field(default=50, ge=1, le=10_000)
    max_spawn_depth: int = Field(default=3, ge=0, le=20)
    """How many generations of agents created by agents (an agent in the spec is depth 0)."""
    max_spawns_per_minute: int = Field(default=10, ge=0, le=1000)
    max_hops: int = Field(default=16, ge=1, le=1000)
    """How many agents a chain of records may pass through (each output is its input's
    hops + 1); a record past it goes to the DLQ (``hop-limit``): agent loops end."""
    llm_token_budget: int | None = Field(default=None, ge=1)
    """Tokens all ``llm`` agents of the org may use in total; then their model calls stop."""


class OrgSpec(_Strict):
    org: str
    topics: list[TopicSpec] = Field(default_factory=list)
    agents: list[AgentSpec] = Field(default_factory=list)
    limits: OrgLimits = Field(default_factory=OrgLimits)
    tools: list[ToolSpec] = Field(default_factory=list)
    policy: OrgPolicy = Field(default_factory=OrgPolicy)
    reconcile_interval_s: int = Field(default=60, ge=1, le=86_400)
    """How often the OrgWorkflow looks for drift (a topic deleted, an agent terminated)."""
    flows: list[FlowSpec] = Field(default_factory=list)
    """Multi-agent workflows (``kafkaorg.flow_spec``); each run is a ``FlowWorkflow``."""
    mcp_servers: list[McpServerSpec] = Field(default_factory=list)
    """MCP servers whose tools ``llm`` agents may call (each agent's ``mcp`` says which)."""
    schemas: list[SchemaSpec] = Field(default_factory=list)
    """Record types' JSON Schemas, registered (as new versions when changed) by ``apply``."""

    @field_validator("org")
    @classmethod
    def _check_org(cls, value: str) -> str:
        if not ORG_NAME_RE.match(value):
            raise ValueError(f"org name {value!r} must match {ORG_NAME_RE.pattern}")
        if value == PLATFORM_ORG:
            raise ValueError(f"org name {value!r} is reserved for the platform")
        return value

    def topic(self, name: str) -> TopicSpec | None:
        return next((t for t in self.topics if t.name == name), None)

    def agent(self, name: str) -> AgentSpec | None:
        return next((a for a in self.agents if a.name == name), None)

    def tool(self, name: str) -> ToolSpec | None:
        return next((t for t in self.tools if t.name == name), None)

    def flow(self, name: str) -> FlowSpec | None:
        return next((f for f in self.flows if f.name == name), None)

    def mcp_server(self, name: str) -> McpServerSpec | None:
        return next((m for m in self.mcp_servers if m.name == name), None)


class _SpecLoader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false, so a rule's ``on:`` key stays the string "on"."""


_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _first in "tTfF":
    _SpecLoader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), [_first]
    )


class SpecError(ValueError):
    """A spec that must not be applied; ``problems`` lists every one, with its place."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def mcp_problems(agent: AgentSpec, servers: set[str], where: str) -> list[str]:
    """An agent's ``mcp`` entries against the org's declared MCP servers."""
    problems: list[str] = []
    declared = ", ".join(sorted(servers)) or "none"
    for j, entry in enumerate(agent.mcp):
        server, _, tool = entry.partition(".")
        if server not in servers:
            problems.append(
                f"{where}.mcp.{j}: agent {agent.name!r} names unknown MCP server {server!r} "
                f"(declared in mcp_servers: {declared})"
            )
        elif "." in entry and not tool:
            problems.append(f"{where}.mcp.{j}: {entry!r} names no tool after the '.'")
    return problems


def agent_problems(
    agent: AgentSpec,
    topics: set[str],
    where: str,
    tools: set[str] | None = None,
    mcp_servers: set[str] | None = None,
) -> list[str]:
    """Problems of one agent against the org's topic names (and tool and MCP server
    names, when known)."""
    problems: list[str] = []
    if agent.mcp and agent.kind != "llm":
        problems.append(
            f"{where}.mcp: only llm agents use MCP tools, {agent.name!r} is {agent.kind}"
        )
    elif mcp_servers is not None:
        problems.extend(mcp_problems(agent, mcp_servers, where))
    if agent.kind not in SUPPORTED_KINDS:
        supported = ", ".join(sorted(SUPPORTED_KINDS))
        problems.append(
            f"{where}.kind: {agent.kind!r} agents are not available in this version "
            f"(available: {supported})"
        )
    for field in ("subscribes", "publishes"):
        for j, name in enumerate(getattr(agent, field)):
            if name not in topics:
                problems.append(f"{where}.{field}.{j}: unknown topic {name!r}")
    if agent.kind == "rule" and not agent.rules:
        problems.append(f"{where}.rules: a rule agent needs at least one rule")
    if agent.kind != "rule" and agent.rules:
        problems.append(f"{where}.rules: only rule agents take rules")
    if agent.kind == "llm" and not agent.instructions.strip():
        problems.append(f"{where}.instructions: an llm agent needs instructions")
    if agent.kind == "echo" and not agent.publishes:
        problems.append(f"{where}.publishes: an echo agent needs a topic to publish to")
    if agent.kind == "tool":
        if not agent.tool:
            problems.append(f"{where}.tool: a tool agent needs the name of the tool it runs")
        elif tools is not None and agent.tool not in tools:
            problems.append(
                f"{where}.tool: unknown tool {agent.tool!r} (not declared or registered)"
            )
        if not agent.publishes:
            problems.append(f"{where}.publishes: a tool agent needs a topic to publish to")
    else:
        if agent.tool is not None:
            problems.append(f"{where}.tool: only tool agents take a tool")
        if agent.emit is not None:
            problems.append(f"{where}.emit: only tool agents take emit (rules have their own)")
    for j, rule in enumerate(agent.rules):
        if rule.to not in agent.publishes:
            problems.append(f"{where}.rules.{j}.to: {rule.to!r} is not in this agent's publishes")
    return problems


def semantic_problems(spec: OrgSpec, registered_tools: frozenset[str] = frozenset()) -> list[str]:
    """Cross-references a schema cannot express: unique names, known topics, rule targets.

    ``registered_tools``: tools the running org already has beyond the spec's own.
    """
    problems: list[str] = []
    seen_tools: set[str] = set()
    for i, tool in enumerate(spec.tools):
        if tool.name in seen_tools:
            problems.append(f"tools.{i}.name: duplicate tool {tool.name!r}")
        seen_tools.add(tool.name)
        if tool.file is not None or tool.tests_file is not None:
            problems.append(
                f"tools.{i}: 'file'/'tests_file' are only read when loading a spec file; "
                "pass the code inline ('code', 'tests')"
            )
    seen_types: set[str] = set()
    for i, schema in enumerate(spec.schemas):
        if schema.type in seen_types:
            problems.append(f"schemas.{i}.type: duplicate schema for type {schema.type!r}")
        seen_types.add(schema.type)
        if schema.file is not None:
            problems.append(
                f"schemas.{i}.file: only read when loading a spec file; pass 'schema' inline"
            )
        elif (problem := schema_problem(schema.json_schema)) is not None:
            problems.append(f"schemas.{i}.schema: {problem}")
    seen_servers: set[str] = set()
    for i, server in enumerate(spec.mcp_servers):
        if server.name in seen_servers:
            problems.append(f"mcp_servers.{i}.name: duplicate MCP server {server.name!r}")
        seen_servers.add(server.name)
    seen_topics: set[str] = set()
    for i, topic in enumerate(spec.topics):
        if topic.name in seen_topics:
            problems.append(f"topics.{i}.name: duplicate topic {topic.name!r}")
        seen_topics.add(topic.name)
    seen_agents: set[str] = set()
    for i, agent in enumerate(spec.agents):
        where = f"agents.{i}"
        if agent.name in seen_agents:
            problems.append(f"{where}.name: duplicate agent {agent.name!r}")
        seen_agents.add(agent.name)
        problems.extend(
            agent_problems(agent, seen_topics, where, seen_tools | registered_tools, seen_servers)
        )
    subscriptions = {a.name: a.subscribes for a in spec.agents}
    seen_flows: set[str] = set()
    for i, flow in enumerate(spec.flows):
        where = f"flows.{i}({flow.name})"
        if flow.name in seen_flows:
            problems.append(f"{where}.name: duplicate flow {flow.name!r}")
        seen_flows.add(flow.name)
        problems.extend(flow_problems(flow, where, subscriptions, seen_topics))
    if len(spec.agents) > spec.limits.max_agents:
        problems.append(
            f"agents: {len(spec.agents)} agents exceed limits.max_agents ({spec.limits.max_agents})"
        )
    return problems


def resolve_tool_files(data: dict[str, Any], base: Traversable) -> list[str]:
    """Replace each tool's ``file``/``tests_file`` by the file's text, in place.

    Returns the problems (unreadable files), each with its place in the spec.
    """
    problems: list[str] = []
    tools = data.get("tools")
    if not isinstance(tools, list):
        return problems
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            continue
        for key, target in (("file", "code"), ("tests_file", "tests")):
            name = tool.get(key)
            if not isinstance(name, str):
                continue
            try:
                text = base.joinpath(name).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(f"tools.{i}.{key}: cannot read {name!r} ({exc})")
                continue
            if tool.get(target) is not None:
                problems.append(f"tools.{i}: give {target!r} or {key!r}, not both")
                continue
            del tool[key]
            tool[target] = text
    return problems


def resolve_schema_files(data: dict[str, Any], base: Traversable) -> list[str]:
    """Replace each schema's ``file`` by the document it holds (JSON or YAML), in place."""
    problems: list[str] = []
    schemas = data.get("schemas")
    if not isinstance(schemas, list):
        return problems
    for i, entry in enumerate(schemas):
        if not isinstance(entry, dict) or not isinstance(name := entry.get("file"), str):
            continue
        try:
            text = base.joinpath(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"schemas.{i}.file: cannot read {name!r} ({exc})")
            continue
        try:
            document = parse_document(text, name)
        except SpecError as exc:
            problems.append(f"schemas.{i}.file: {name}: {'; '.join(exc.problems)}")
            continue
        if entry.get("schema") is not None:
            problems.append(f"schemas.{i}: give 'schema' or 'file', not both")
            continue
        del entry["file"]
        entry["schema"] = document
    return problems


def validate_spec(data: object, source: str = "spec", base: Traversable | None = None) -> OrgSpec:
    """Validate already-parsed spec data; raises ``SpecError`` listing every problem.

    ``base``: the folder tools' ``file``/``tests_file`` are relative to.
    """
    if not isinstance(data, dict):
        raise SpecError(source, ["(top level): expected a mapping with 'org', 'topics', 'agents'"])
    if base is not None:
        data = copy.deepcopy(data)  # the caller's data stays as given
        file_problems = resolve_tool_files(data, base) + resolve_schema_files(data, base)
        if file_problems:
            raise SpecError(source, file_problems)
    try:
        spec = OrgSpec.model_validate(data)
    except ValidationError as exc:
        problems = [f"{_location(err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise SpecError(source, problems) from None
    problems = semantic_problems(spec)
    if problems:
        raise SpecError(source, problems)
    return spec


def parse_document(text: str, source: str = "spec") -> Any:
    """YAML 1.2 (or JSON, which is YAML): the one parser for every file a user gives us."""
    try:
        return yaml.load(text, Loader=_SpecLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(source, [f"{where}: not valid YAML/JSON ({problem})"]) from None


def read_document(path: Path) -> Any:
    """Read and parse a YAML/JSON file; every problem is a ``SpecError`` naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(str(path), [f"cannot read file ({exc.strerror})"]) from None
    except UnicodeDecodeError:
        raise SpecError(str(path), ["file is not UTF-8 text"]) from None
    return parse_document(text, str(path))


def parse_spec_text(text: str, source: str = "spec", base: Traversable | None = None) -> OrgSpec:
    """Parse YAML or JSON (JSON is YAML) and validate it."""
    return validate_spec(parse_document(text, source), source, base)


def load_spec(path: Path) -> OrgSpec:
    return validate_spec(read_document(path), str(path), path.parent)


def load_agent_spec(path: Path) -> AgentSpec:
    """One agent's spec (``kafkaorg agent create``), read like an org spec."""
    data = read_document(path)
    try:
        return AgentSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(
            str(path), [f"{_location(err['loc'])}: {err['msg']}" for err in exc.errors()]
        ) from None


def spec_to_json(spec: OrgSpec) -> str:
    """The JSON form that ``temporal workflow start --input`` takes."""
    return json.dumps(spec.model_dump(mode="json", by_alias=True))
