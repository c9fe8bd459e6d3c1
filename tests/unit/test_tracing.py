"""Trace context in Kafka headers, without a broker: inject, extract, trace ids, off = nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from activities.agent_step import StepInput
from activities.kafka import PublishInput
from activities.sandbox import SandboxRequest
from kafkaorg import tracing
from kafkaorg._tracing_temporal import record_carrier, unsampled_step
from kafkaorg.config import Settings
from kafkaorg.envelope import new_record
from kafkaorg.kafka import Outgoing, _traced
from kafkaorg.spec import AgentSpec

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    """Tracing on for one test, its spans kept in memory (the real SDK, no collector)."""
    exporter = InMemorySpanExporter()
    assert tracing.configure(Settings(trace_sample_ratio=1.0), "kafkaorg-test", exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.shutdown()


def _record() -> object:
    return new_record(org="acme", type="task.request", source="user:test", payload={})


def test_trace_id_of_reads_the_traceparent_header() -> None:
    assert tracing.trace_id_of({"traceparent": PARENT}) == TRACE_ID
    assert tracing.trace_id_of({"traceparent": PARENT.upper()}) == TRACE_ID
    assert tracing.trace_id_of({}) is None
    assert tracing.trace_id_of(None) is None
    assert tracing.trace_id_of({"traceparent": "garbage"}) is None
    zero = f"00-{'0' * 32}-00f067aa0ba902b7-01"
    assert tracing.trace_id_of({"traceparent": zero}) is None


def test_trace_url_points_at_phoenix_by_trace_id() -> None:
    settings = Settings(phoenix_port=6006)
    assert tracing.trace_url(settings, TRACE_ID) == (
        f"http://127.0.0.1:6006/redirects/traces/{TRACE_ID}"
    )
    other = Settings(trace_ui="http://traces.example:8080/")
    assert tracing.trace_url(other, TRACE_ID).startswith("http://traces.example:8080/redirects/")


def test_otlp_url_gets_the_traces_path() -> None:
    assert tracing.otlp_traces_url("http://127.0.0.1:6006") == "http://127.0.0.1:6006/v1/traces"
    assert tracing.otlp_traces_url("http://h:1/v1/traces") == "http://h:1/v1/traces"


def test_off_costs_nothing_and_adds_nothing() -> None:
    assert not tracing.enabled()
    assert tracing.inject() == {}
    assert tracing.start_span("x") is None
    assert tracing.temporal_interceptors() == []
    with tracing.span("x") as span:
        assert span is None
    item = Outgoing("acme.tasks", _record())  # type: ignore[arg-type]
    spans: list[tracing.Span | None] = []
    assert list(_traced([item], spans)) == [item]
    assert spans == [None]
    assert not tracing.configure(Settings(otlp_endpoint=None), "kafkaorg-test")


def test_carrier_round_trips_through_kafka_headers(exported: InMemorySpanExporter) -> None:
    span = tracing.start_span("parent", new_trace=True)
    assert span is not None
    carrier = tracing.carrier_of(span)
    assert set(carrier) == {"traceparent"}
    pairs = tracing.header_pairs(carrier)
    # confluent-kafka hands headers back as (str, bytes) pairs, among others.
    read = tracing.carrier_from_headers([("type", b"task.request"), *pairs])
    assert read == carrier
    assert tracing.trace_id_of(read) == format(span.get_span_context().trace_id, "032x")
    child = tracing.start_span("child", parent=read)
    assert child is not None
    tracing.end_spans([child, span])
    tracing.force_flush()
    finished = {s.name: s for s in exported.get_finished_spans()}
    assert finished["child"].parent is not None
    assert finished["child"].parent.span_id == span.get_span_context().span_id
    assert finished["child"].context.trace_id == span.get_span_context().trace_id


def test_a_foreign_traceparent_is_continued(exported: InMemorySpanExporter) -> None:
    child = tracing.start_span("consume", parent={"traceparent": PARENT}, current_parent=False)
    assert child is not None
    assert format(child.get_span_context().trace_id, "032x") == TRACE_ID
    child.end()
    root = tracing.start_span("consume", parent={}, current_parent=False, new_trace=True)
    assert root is not None
    assert format(root.get_span_context().trace_id, "032x") != TRACE_ID
    root.end()


def test_produce_injects_its_span_and_replaces_stale_headers(
    exported: InMemorySpanExporter,
) -> None:
    record = new_record(org="acme", type="task.request", source="user:test", payload={})
    stale = (("traceparent", PARENT.encode()), ("kafkaorg.mark", b"replay:1"))
    parent = {"traceparent": PARENT}
    spans: list[tracing.Span | None] = []
    (item,) = _traced([Outgoing("acme.tasks", record, stale, trace=parent)], spans)
    tracing.end_spans(spans)
    headers = dict(item.extra_headers)
    assert headers["kafkaorg.mark"] == b"replay:1"
    assert [k for k, _ in item.extra_headers].count("traceparent") == 1
    traceparent = headers["traceparent"]
    assert isinstance(traceparent, bytes)
    assert tracing.trace_id_of({"traceparent": traceparent.decode()}) == TRACE_ID
    (span,) = [s for s in spans if s is not None]
    assert traceparent.decode().split("-")[2] == format(span.get_span_context().span_id, "016x")
    assert item.value == record.kafka_value()


def test_activity_inputs_name_their_first_records_trace() -> None:
    """What the workflow interceptor parents an activity's span on (plain data, no OTel)."""
    record = new_record(org="acme", type="t", source="user:test", payload={})
    carrier = {"traceparent": PARENT}
    agent = AgentSpec(name="echo", kind="echo")
    step = StepInput(org="acme", workflow_id="w", agent=agent, records=[record], traces=[None])
    assert record_carrier([step]) is None
    step.traces = [None, carrier]
    assert record_carrier([step]) == carrier
    assert record_carrier([SandboxRequest(code="", trace=carrier)]) == carrier
    publish = PublishInput(org="acme", topic="sys.dlq", records=[record])
    assert record_carrier([publish]) is None
    publish.traces = {record.id: carrier}
    assert record_carrier([publish]) == carrier
    assert record_carrier([{"org": "acme", "trace": carrier}]) == carrier
    # An agent step with no sampled record is left alone by the interceptor.
    step.traces = [None, None]
    assert unsampled_step([step])
    step.traces = [None, carrier]
    assert not unsampled_step([step])
    assert not unsampled_step([publish])  # not a step: the stock interceptor's


UNSAMPLED_PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-00"


def test_unsampled_work_gets_no_span_object(exported: InMemorySpanExporter) -> None:
    """The sampling decision is followed at no cost: no span for a record not sampled."""
    from opentelemetry import trace

    assert tracing.is_sampled({"traceparent": PARENT})
    assert not tracing.is_sampled({"traceparent": UNSAMPLED_PARENT})
    assert not tracing.is_sampled(tracing.NOT_SAMPLED)
    assert tracing.start_span("x", parent={"traceparent": UNSAMPLED_PARENT}) is None
    assert tracing.start_span("x", parent=tracing.NOT_SAMPLED) is None
    # A worker's span with no parent and no recorded current span starts no trace.
    assert tracing.start_span("x") is None
    with tracing.unsampled():
        assert tracing.start_span("x") is None
    outer = tracing.start_span("outer", new_trace=True)
    assert outer is not None
    with tracing.span("beside") as beside:
        assert beside is None  # ``outer`` is not current: no parent, so none is made
    with trace.use_span(outer, end_on_exit=True), tracing.span("under") as under:
        assert under is not None
    tracing.force_flush()
    assert sorted(s.name for s in exported.get_finished_spans()) == ["outer", "under"]


def test_unsampled_context_propagates_not_sampled(exported: InMemorySpanExporter) -> None:
    """What the bridge signals unsampled batches under: the interceptor's span there is not
    recorded, and the header it sends says so (the worker does not start a trace)."""
    from opentelemetry import trace

    with tracing.unsampled():
        carrier = tracing.inject()
        child = tracing.tracer().start_span("SignalWithStartWorkflow")
        assert not child.is_recording()
        child.end()
    assert carrier["traceparent"].endswith("-00")
    assert not tracing.is_sampled(carrier)
    assert not trace.get_current_span().get_span_context().is_valid  # detached again


def test_a_sampled_records_outputs_join_it_and_an_unsampled_ones_carry_nothing(
    exported: InMemorySpanExporter,
) -> None:
    record = new_record(org="acme", type="task.request", source="agent:a", payload={})
    spans: list[tracing.Span | None] = []
    traced, untraced = _traced(
        [
            Outgoing("acme.tasks", record, trace={"traceparent": PARENT}),
            Outgoing("acme.tasks", record, trace=tracing.NOT_SAMPLED),
        ],
        spans,
    )
    tracing.end_spans(spans)
    assert tracing.trace_id_of(tracing.carrier_from_headers(traced.extra_headers)) == TRACE_ID
    assert tracing.carrier_from_headers(untraced.extra_headers) == {}
    assert spans[1] is None


def test_step_spans_never_lend_a_sampled_records_trace_to_another(
    exported: InMemorySpanExporter,
) -> None:
    from activities.agent_step import _StepSpans

    activity_span = tracing.start_span("RunActivity", parent={"traceparent": PARENT})
    assert activity_span is not None
    from opentelemetry import context, trace

    token = context.attach(trace.set_span_in_context(activity_span))
    try:
        step = _StepSpans("acme", "echo", "echo", "agent:acme:echo")
        sampled = step.carrier_for("r1", {"traceparent": PARENT})
        unsampled = step.carrier_for("r2", None)
        step.end()
    finally:
        context.detach(token)
        activity_span.end()
    assert sampled is not None and tracing.trace_id_of(sampled) == TRACE_ID
    assert unsampled is tracing.NOT_SAMPLED
    tracing.force_flush()
    assert [s.name for s in exported.get_finished_spans()].count("agent.step echo") == 1


def test_people_s_processes_record_every_trace_they_start() -> None:
    exporter = InMemorySpanExporter()
    assert tracing.configure(
        Settings(trace_sample_ratio=0.0), tracing.SERVICE_CLI, exporter=exporter
    )
    try:
        span = tracing.start_span("kafka.produce acme.tasks")  # no parent: a new trace
        assert span is not None and span.is_recording()
        span.end()
    finally:
        tracing.shutdown()
    assert tracing.configure(Settings(trace_sample_ratio=0.0), "kafkaorg-bridge", exporter=exporter)
    try:
        assert tracing.start_span("bridge.consume", new_trace=True) is None  # ratio 0
    finally:
        tracing.shutdown()


def test_roots_the_interceptor_makes_are_sampled_at_the_ratio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A root ``start_span`` decided is recorded (the SDK does not draw again); a root the
    Temporal interceptor starts on its own (a bridge's query) follows the ratio."""
    exporter = InMemorySpanExporter()
    assert tracing.configure(Settings(trace_sample_ratio=0.0), "kafkaorg-bridge", exporter=exporter)
    try:
        assert not tracing.tracer().start_span("QueryWorkflow:status").is_recording()
        monkeypatch.setattr(tracing, "_root_ratio", 1.0)  # as if the draw said yes
        span = tracing.start_span("bridge.consume", new_trace=True)
        assert span is not None and span.is_recording()
        span.end()
    finally:
        tracing.shutdown()
    assert [s.name for s in exporter.get_finished_spans()] == ["bridge.consume"]
