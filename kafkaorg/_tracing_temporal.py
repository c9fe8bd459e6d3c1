"""Temporal's OpenTelemetry interceptor, with an agent's work joined to its records' traces.

Stock ``TracingInterceptor`` puts every span a workflow makes (signals handled, activities
started) in the trace that *started* the workflow, and only links a signal's context. An
AgentWorkflow lives for weeks and is started by ``org start``: its deliveries and steps
would all land in one unrelated, ever-growing trace (or in none, when the start carried
no context). Two changes, both on the workflow side:

- the ``deliver`` signal's ``HandleSignal`` span is a child of the signal's own context
  (the bridge's ``bridge.signal`` span), and links the workflow's context instead;
- an activity started for records (its input has a ``trace`` carrier, or ``traces``: the
  records' carriers, see ``Delivery.traces``) gets its ``StartActivity`` span under the
  first record's context, so the activity's ``RunActivity`` span joins that trace too; an
  agent step for records none of which is sampled gets no span and no context at all
  (stock, it would join the workflow's start trace, and be recorded whenever that was).

And one on the activity side: an activity whose start carried no context makes no
``RunActivity`` span (stock, it would start a trace of its own at the sample ratio).

Imported only when tracing is on (``kafkaorg.tracing.temporal_interceptors``). Spans are
made the interceptor's way (``_completed_span``: zero-duration, never on replay) from data
already in the workflow's state, so workflow code stays deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import temporalio.worker
import temporalio.workflow
from opentelemetry.trace import SpanKind
from temporalio.contrib.opentelemetry import TracingInterceptor, TracingWorkflowInboundInterceptor
from temporalio.contrib.opentelemetry._context import attached_context
from temporalio.contrib.opentelemetry._interceptor import (
    _TracingActivityInboundInterceptor,
    _TracingWorkflowOutboundInterceptor,
)

from kafkaorg.contracts.handlers import AgentSignal


def record_carrier(args: Sequence[Any]) -> dict[str, str] | None:
    """The first record's trace carrier in an activity's input, if it has one."""
    for arg in args:
        if isinstance(arg, Mapping):
            found = arg.get("trace")
            candidates: list[Any] = [found]
        else:
            traces = getattr(arg, "traces", None)
            if isinstance(traces, Mapping):
                traces = list(traces.values())
            candidates = [getattr(arg, "trace", None), *(traces or [])]
        for carrier in candidates:
            if isinstance(carrier, Mapping) and carrier.get("traceparent"):
                return dict(carrier)
    return None


def unsampled_step(args: Sequence[Any]) -> bool:
    """An agent step's input (its ``traces`` parallel to its records) with no sampled record."""
    for arg in args:
        traces = getattr(arg, "traces", None)
        if isinstance(traces, list):
            return not any(isinstance(c, Mapping) and c.get("traceparent") for c in traces)
    return False


class _WorkflowOutbound(_TracingWorkflowOutboundInterceptor):
    def start_activity(
        self, input: temporalio.worker.StartActivityInput
    ) -> temporalio.workflow.ActivityHandle[Any]:
        carrier = record_carrier(input.args)
        if carrier is None:
            if unsampled_step(input.args):  # past the stock span: nothing to record
                return temporalio.worker.WorkflowOutboundInterceptor.start_activity(self, input)
            return super().start_activity(input)
        context = self.root._set_on_context(self.root.text_map_propagator.extract(carrier))
        with attached_context(context):
            return super().start_activity(input)


class _WorkflowInbound(TracingWorkflowInboundInterceptor):
    def init(self, outbound: temporalio.worker.WorkflowOutboundInterceptor) -> None:
        temporalio.worker.WorkflowInboundInterceptor.init(self, _WorkflowOutbound(outbound, self))

    async def handle_signal(self, input: temporalio.worker.HandleSignalInput) -> None:
        header = input.headers.get(self.header_key)
        if input.signal != AgentSignal.DELIVER or not header:
            await super().handle_signal(input)
            return
        carrier = self.payload_converter.from_payloads([header])[0]
        context = self._set_on_context(self.text_map_propagator.extract(carrier))
        with attached_context(context):
            self._completed_span(
                f"HandleSignal:{input.signal}",
                link_context_carrier=self._load_workflow_context_carrier(),
                kind=SpanKind.SERVER,
            )
            # Past the stock handler (it would make a second span, in the start's trace).
            await temporalio.worker.WorkflowInboundInterceptor.handle_signal(self, input)


class _ActivityInbound(_TracingActivityInboundInterceptor):
    async def execute_activity(self, input: temporalio.worker.ExecuteActivityInput) -> Any:
        if not input.headers.get(self.root.header_key):
            return await temporalio.worker.ActivityInboundInterceptor.execute_activity(self, input)
        return await super().execute_activity(input)


class KafkaorgTracingInterceptor(TracingInterceptor):
    def intercept_activity(
        self, next: temporalio.worker.ActivityInboundInterceptor
    ) -> temporalio.worker.ActivityInboundInterceptor:
        return _ActivityInbound(next, self)

    def workflow_interceptor_class(
        self, input: temporalio.worker.WorkflowInterceptorClassInput
    ) -> type[TracingWorkflowInboundInterceptor]:
        super().workflow_interceptor_class(input)
        return _WorkflowInbound
