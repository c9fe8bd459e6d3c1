"""Every name other parts rely on: task queues, workflow ids, topics, attributes.

Call sites use these builders, never string literals, so a rename is one edit.
"""

from __future__ import annotations

import re
from typing import Final

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

TASK_QUEUE: Final = "kafkaorg"
SANDBOX_TASK_QUEUE: Final = "kafkaorg-sandbox"
BRIDGE_GROUP_ID: Final = "kafkaorg-bridge"

ORG_WORKFLOW_TYPE: Final = "OrgWorkflow"
AGENT_WORKFLOW_TYPE: Final = "AgentWorkflow"
FLOW_WORKFLOW_TYPE: Final = "FlowWorkflow"
ARCHIVE_WORKFLOW_TYPE: Final = "ArchiveWorkflow"
FLOW_ID_PREFIX: Final = "flow:"
"""A flow run's workflow id is also its records' correlation id: the bridge routes an
agent's record with such a correlation id back to the run."""

ORG_ATTR: Final = SearchAttributeKey.for_keyword("KafkaorgOrg")
AGENT_ATTR: Final = SearchAttributeKey.for_keyword("KafkaorgAgent")
FLOW_ATTR: Final = SearchAttributeKey.for_keyword("KafkaorgFlow")

ORG_NAME_RE: Final = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
TOPIC_NAME_RE: Final = re.compile(r"^[a-z][a-z0-9-]{0,99}$")
AGENT_NAME_RE: Final = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
RESERVED_TOPIC_NAMES: Final = frozenset({"sys"})

AUDIT_TOPIC: Final = "sys.audit"
DLQ_TOPIC: Final = "sys.dlq"
APPROVALS_TOPIC: Final = "sys.approvals"
AGENTS_TOPIC: Final = "sys.agents"
"""Compacted: each agent's latest status, key = agent name (activities/agent_feed.py)."""
"""Approvals requested and decided; a person's ``approval.decision`` record here decides one."""
PLATFORM_ORG: Final = "kafkaorg"
"""Reserved: no org may take this name, its ``sys.dlq`` is the platform's."""
PLATFORM_DLQ_TOPIC: Final = f"{PLATFORM_ORG}.{DLQ_TOPIC}"
"""Dead letters that cannot go to their own org's DLQ (no such topic, unknown org)."""

# Topics the bridge consumes: an org's own topics (exactly one dot, so no other
# `<org>.sys.*` matches) and its `sys.approvals`, where people send their verdicts.
BRIDGE_TOPIC_PATTERN: Final = r"^[a-z][a-z0-9-]*\.([a-z][a-z0-9-]*|sys\.approvals)$"


def org_workflow_id(org: str) -> str:
    return f"org:{org}"


def agent_workflow_id(org: str, agent: str) -> str:
    return f"agent:{org}:{agent}"


def archive_schedule_id(org: str) -> str:
    """The org's Temporal Schedule; each run is an ArchiveWorkflow ``archive:<org>-<time>``."""
    return f"archive:{org}"


def flow_workflow_id(org: str, flow: str, run: str) -> str:
    return f"{FLOW_ID_PREFIX}{org}:{flow}:{run}"


def is_flow_workflow_id(value: str) -> bool:
    """Whether a correlation id names a flow run (``flow:<org>:<flow>:<run>``)."""
    parts = value.split(":")
    return len(parts) == 4 and parts[0] == FLOW_ID_PREFIX[:-1] and all(parts[1:])


def kafka_topic(org: str, topic: str) -> str:
    """The Kafka topic for an org's topic (``sys.audit`` works too)."""
    return f"{org}.{topic}"


def agents_topic(org: str) -> str:
    return kafka_topic(org, AGENTS_TOPIC)


def audit_topic(org: str) -> str:
    return kafka_topic(org, AUDIT_TOPIC)


def dlq_topic(org: str) -> str:
    return kafka_topic(org, DLQ_TOPIC)


def approvals_topic(org: str) -> str:
    return kafka_topic(org, APPROVALS_TOPIC)


def split_kafka_topic(name: str) -> tuple[str, str]:
    """``acme.tasks`` → ``("acme", "tasks")``; raises ValueError on other shapes."""
    org, sep, topic = name.partition(".")
    if not sep or not ORG_NAME_RE.match(org) or not topic:
        raise ValueError(f"not a kafkaorg topic: {name!r}")
    return org, topic


def agent_search_attributes(org: str, agent: str) -> TypedSearchAttributes:
    """What the Web UI filters agent workflows by."""
    return TypedSearchAttributes(
        [SearchAttributePair(ORG_ATTR, org), SearchAttributePair(AGENT_ATTR, agent)]
    )


def org_search_attributes(org: str) -> TypedSearchAttributes:
    return TypedSearchAttributes([SearchAttributePair(ORG_ATTR, org)])


def flow_search_attributes(org: str, flow: str) -> TypedSearchAttributes:
    """What the Web UI filters flow runs by."""
    return TypedSearchAttributes(
        [SearchAttributePair(ORG_ATTR, org), SearchAttributePair(FLOW_ATTR, flow)]
    )
