"""The reasoning loop of an ``llm`` agent: a LangGraph graph run by the temporalio-langgraph plugin.

``model`` runs as a Temporal activity (the network call, its retries and timeouts);
``tools`` runs inside the AgentWorkflow and turns each tool call into the activity
that does it. The graph handles one record: model → tools → model … until the
model answers without tool calls or the call budget per record is spent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from kafkaorg.llm.state import LlmGraphState
    from workflows.llm_builtins import run_tools

if TYPE_CHECKING:
    from langgraph.graph import StateGraph

GRAPH_NAME = "kafkaorg-llm-agent"
MAX_MODEL_CALLS_PER_RECORD = 12


async def _after_model(state: LlmGraphState) -> str:
    """Async on purpose: LangGraph runs sync edge functions on a thread, not allowed here."""
    last = state["messages"][-1]
    if not last.get("tool_calls"):
        return "done"
    if state.get("model_calls", 0) >= MAX_MODEL_CALLS_PER_RECORD:
        return "done"
    return "tools"


def build_llm_graph() -> StateGraph[Any, Any, Any, Any]:
    """A fresh graph: the plugin rewires its nodes, so every plugin gets its own.

    The model node's code (and its HTTP client) is imported only here, by the processes
    that build a plugin (workers, replayers); workflow code never needs it.
    """
    from langgraph.graph import END, START, StateGraph

    from activities.llm import MODEL_CALL_OPTIONS, call_model

    graph: StateGraph[Any, Any, Any, Any] = StateGraph(LlmGraphState)
    graph.add_node("model", call_model, metadata={"execute_in": "activity", **MODEL_CALL_OPTIONS})
    graph.add_node("tools", run_tools, metadata={"execute_in": "workflow"})
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", _after_model, {"tools": "tools", "done": END})
    graph.add_edge("tools", "model")
    return graph


def langgraph_plugin() -> Any:
    """The plugin for workers and replayers (same graphs, so histories replay)."""
    from temporalio.langgraph import LangGraphPlugin

    return LangGraphPlugin(graphs={GRAPH_NAME: build_llm_graph()})
