"""What crosses a process boundary: workflow inputs and states, handler inputs, results
and names, statuses and kinds.

Workflows, activities, the bridge, the CLI and the service layer all import these;
nothing here imports ``temporalio.workflow`` or ``workflows/``, so anyone can start,
signal and query a workflow by name without importing its code.
"""

from kafkaorg.contracts.agent import (
    AgentConversation,
    AgentInput,
    AgentReport,
    AgentResult,
    AgentState,
    Delivery,
    SpecUpdate,
    StopRequest,
)
from kafkaorg.contracts.enums import (
    LIVE_AGENT_STATUSES,
    AgentAction,
    AgentKind,
    AgentStatus,
    OrgPhase,
    RefusalType,
    TextReply,
    ToolStatus,
)
from kafkaorg.contracts.handlers import AgentQuery, AgentSignal, OrgQuery, OrgSignal, OrgUpdate
from kafkaorg.contracts.org import (
    AgentCommand,
    AgentInfo,
    AgentRegistration,
    ApproveToolRequest,
    ChangeResult,
    CreateAgentRequest,
    CreateToolRequest,
    CreateTopicRequest,
    OrgInput,
    OrgRequest,
    OrgState,
    OrgStatus,
    OrgStopRequest,
    RollbackToolRequest,
    ToolVersionState,
)
from kafkaorg.contracts.refusals import Refusal, refuse, refuse_problems

__all__ = [
    "LIVE_AGENT_STATUSES",
    "AgentAction",
    "AgentCommand",
    "AgentConversation",
    "AgentInfo",
    "AgentInput",
    "AgentKind",
    "AgentQuery",
    "AgentRegistration",
    "AgentReport",
    "AgentResult",
    "AgentSignal",
    "AgentState",
    "AgentStatus",
    "ApproveToolRequest",
    "ChangeResult",
    "CreateAgentRequest",
    "CreateToolRequest",
    "CreateTopicRequest",
    "Delivery",
    "OrgInput",
    "OrgPhase",
    "OrgQuery",
    "OrgRequest",
    "OrgSignal",
    "OrgState",
    "OrgStatus",
    "OrgStopRequest",
    "OrgUpdate",
    "Refusal",
    "RefusalType",
    "RollbackToolRequest",
    "SpecUpdate",
    "StopRequest",
    "TextReply",
    "ToolStatus",
    "ToolVersionState",
    "refuse",
    "refuse_problems",
]
