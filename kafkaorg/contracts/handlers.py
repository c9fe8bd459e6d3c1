"""Names of the workflows' signals, updates and queries.

Clients call handlers by these names (never by importing ``workflows/``), and the
workflows register under them, so the two cannot drift apart.
"""

from __future__ import annotations

from enum import StrEnum


class OrgUpdate(StrEnum):
    APPLY_SPEC = "apply_spec"
    REPAIR_DRIFT = "repair_drift"
    CREATE_AGENT = "create_agent"
    CHANGE_AGENT = "change_agent"
    CREATE_TOPIC = "create_topic"
    CREATE_TOOL = "create_tool"
    APPROVE_TOOL = "approve_tool"
    ROLLBACK_TOOL = "rollback_tool"
    DECIDE_APPROVAL = "decide_approval"
    HOLD_PUBLISH = "hold_publish"


class OrgSignal(StrEnum):
    STOP = "stop"
    AGENT_FAILED = "agent_failed"


class OrgQuery(StrEnum):
    STATUS = "status"
    SPEC = "spec"
    AGENTS = "agents"
    APPROVALS = "approvals"


class AgentSignal(StrEnum):
    DELIVER = "deliver"
    STOP = "stop"
    PAUSE = "pause"
    RESUME = "resume"
    UPDATE_SPEC = "update_spec"


class AgentQuery(StrEnum):
    STATUS = "status"
    CONVERSATION = "conversation"
