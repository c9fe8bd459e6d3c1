"""The reasoning loop of an ``llm`` agent: a LangGraph graph run by the temporalio-langgraph plugin.

``model`` runs as a Temporal activity (the network call, its retries and timeouts);
``tools`` runs inside the AgentWorkflow and turns each tool call into the activity
that does it. The graph handles one record: model → tools → model … until the
model answers without tool calls. Two ways out are not answers, and end with
``failure`` set so the workflow dead-letters the record: a second empty reply
(the first is met with ``nudge``) and the call budget per record spent
(``give_up``). ``kafkaorg.llm.failures`` lists every outcome.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from kafkaorg.llm.failures import (
        EMPTY_REPLY_NUDGE,
        MAX_MODEL_CALLS_PER_RECORD,
        LlmFailure,
        is_empty_reply,
    )
    from kafkaorg.llm.state import LlmGraphState
    from workflows.llm_builtins import run_tools, unanswered_calls

if TYPE_CHECKING:
    from langgraph.graph import StateGraph

GRAPH_NAME = "kafkaorg-llm-agent"
EMPTY_REPLY_PATCH = "llm-empty-reply-nudged"
"""Histories from before ended a record on an empty reply as if it were an answer."""
CALL_CAP_PATCH = "llm-call-cap-dead-letters"
"""Histories from before ended a record at the call cap as if it were answered."""
CALL_FAILURE_PATCH = "llm-call-failure-dead-letters"
"""``AgentWorkflow._llm_step``: a model call that fails after every retry dead-letters the
record and the agent goes on; histories from before failed the agent."""

TEXT_REPLY_PATCH = "llm-text-reply-outcome"
"""``AgentWorkflow._text_reply``: a prose answer follows the agent's ``on_text_reply``;
histories from before ended such a record with nothing published."""

__all__ = [
    "CALL_CAP_PATCH",
    "CALL_FAILURE_PATCH",
    "EMPTY_REPLY_PATCH",
    "GRAPH_NAME",
    "MAX_MODEL_CALLS_PER_RECORD",
    "TEXT_REPLY_PATCH",
    "build_llm_graph",
    "langgraph_plugin",
]

Route = Literal["tools", "nudge", "give_up", "done"]


async def _after_model(state: LlmGraphState) -> Route:
    """Async on purpose: LangGraph runs sync edge functions on a thread, not allowed here.

    Each new route asks ``workflow.patched`` only where it differs from the old one, so
    histories recorded before replay the way they ran.
    """
    last = state["messages"][-1]
    capped = state.get("model_calls", 0) >= MAX_MODEL_CALLS_PER_RECORD
    if last.get("tool_calls"):
        if not capped:
            return "tools"
        return "give_up" if workflow.patched(CALL_CAP_PATCH) else "done"
    if is_empty_reply(last) and workflow.patched(EMPTY_REPLY_PATCH):
        if state.get("nudges", 0) > 0:
            return "give_up"
        return "give_up" if capped else "nudge"
    return "done"


async def _nudge(state: LlmGraphState) -> dict[str, Any]:
    """The model is told once that it said nothing, and asked again."""
    return {"messages": [{"role": "user", "content": EMPTY_REPLY_NUDGE}], "nudges": 1}


async def _give_up(state: LlmGraphState) -> dict[str, Any]:
    """The record ends unfinished; the workflow dead-letters it with this reason."""
    calls = state.get("model_calls", 0)
    last = state["messages"][-1]
    if not last.get("tool_calls"):
        return {
            "failure": LlmFailure.EMPTY_REPLY.value,
            "failure_detail": f"the model replied with neither content nor tool calls "
            f"{state.get('nudges', 0) + 1} time(s) for this record, after {calls} call(s)",
        }
    detail = (
        f"the model was called {calls} times for this record (the cap is "
        f"{MAX_MODEL_CALLS_PER_RECORD}) without a final answer"
    )
    return {
        "messages": unanswered_calls(state, f"not run: {detail}"),
        "failure": LlmFailure.CALL_CAP.value,
        "failure_detail": detail,
    }


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
    graph.add_node("nudge", _nudge, metadata={"execute_in": "workflow"})
    graph.add_node("give_up", _give_up, metadata={"execute_in": "workflow"})
    graph.add_edge(START, "model")
    graph.add_conditional_edges(
        "model",
        _after_model,
        {"tools": "tools", "nudge": "nudge", "give_up": "give_up", "done": END},
    )
    graph.add_edge("tools", "model")
    graph.add_edge("nudge", "model")
    graph.add_edge("give_up", END)
    return graph


def langgraph_plugin() -> Any:
    """The plugin for workers and replayers (same graphs, so histories replay)."""
    from temporalio.langgraph import LangGraphPlugin

    return LangGraphPlugin(graphs={GRAPH_NAME: build_llm_graph()})
