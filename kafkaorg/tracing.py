"""OpenTelemetry traces: one trace per record, from its produce through every agent it reaches.

Off unless ``KAFKAORG_OTLP_ENDPOINT`` is set. Off means no tracer provider is installed,
no span is started, no header is added and no Temporal interceptor is registered: every
helper here checks :func:`enabled` first and returns at once.

On, each process (``kafkaorg-worker``, ``kafkaorg-bridge``, ``kafkaorg-sandbox-worker``,
``kafkaorg-cli``) exports over OTLP/HTTP with a batch processor, flushed at clean exit.

**How a record's path stays one trace.** A record carries W3C trace context in its Kafka
headers (``traceparent``, ``tracestate``): the context of the ``kafka.produce`` span that
wrote it. The bridge starts a ``bridge.consume`` span per record as a child of that
context. Records are batched twice, and a span has one parent, so the joins are:

- *Bridge → workflow*: one signal carries a batch of records for one agent. Its
  ``bridge.signal`` span is a child of the *first* record's ``bridge.consume`` span and
  links to the others'; the Temporal interceptor's ``SignalWithStartWorkflow`` span and the
  workflow's ``HandleSignal:deliver`` span are its children (the workflow side is our
  subclass of the interceptor: stock, a signal's span joins the trace that started the
  workflow, which for a long-lived agent is an unrelated one). Every record of the batch
  also travels with its own carrier (``Delivery.traces``: the context of its
  ``bridge.consume`` span), kept beside the inbox in the workflow state.
- *Workflow → activities*: an agent step may take several records. Workflow code only
  passes each record's carrier dict along (deterministic, no OTel call); the activity
  starts one span per record (``agent.step``, ``sandbox.run``) with that record's carrier as
  parent and a link to the activity's own ``RunActivity`` span (which the interceptor puts
  in the workflow's trace). A record's outputs are produced under its span, so their
  ``traceparent`` continues the record's trace at the next agent.

So a single record's path, CLI to last agent, is one trace whatever the batching; a
batch's shared work (the signal, the transaction) appears in the first record's trace and
is linked from the others.

**Sampling costs nothing for the records it leaves out.** A trace is decided where a
record enters the org (``KAFKAORG_TRACE_SAMPLE_RATIO``, parent-based after that; records
a person sends with the CLI are always traced). Only a sampled record has a carrier: an
unsampled one gets no span object anywhere, no context in the workflow and no header on
its outputs, and a record an agent produced without a ``traceparent`` is known to be
unsampled (it does not start a trace of its own at the next agent). Work done for records
(an agent step and its produce) never falls back to the workflow's or the activity's
context: the interceptor leaves unsampled record work alone (``_tracing_temporal.py``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import re
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import BaseModel

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from kafkaorg.config import Settings

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
TRACE_HEADERS = (TRACEPARENT, TRACESTATE)
"""Kafka headers that carry W3C trace context (never copied from one record to the next)."""
PROJECT_NAME = "kafkaorg"
"""Phoenix groups spans into projects by the ``openinference.project.name`` resource."""
SERVICE_WORKER = "kafkaorg-worker"
SERVICE_BRIDGE = "kafkaorg-bridge"
SERVICE_SANDBOX_WORKER = "kafkaorg-sandbox-worker"
SERVICE_CONSOLE = "kafkaorg-console"
SERVICE_CLI = "kafkaorg-cli"

_TRACEPARENT_RE = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_PROPAGATOR = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None
_tracer: trace.Tracer | None = None
_content = False
_entry = False
_root_ratio = 1.0

Carrier = dict[str, str]
HeaderPairs = Sequence[tuple[str, str | bytes | None]]


def enabled() -> bool:
    """Whether this process exports traces (``configure`` installed a provider)."""
    return _provider is not None


def llm_content() -> bool:
    """Whether model prompts and replies may go into spans (``KAFKAORG_TRACE_LLM_CONTENT``)."""
    return _content


def otlp_traces_url(endpoint: str) -> str:
    """``KAFKAORG_OTLP_ENDPOINT`` is the collector's base URL; ``/v1/traces`` is added."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces"


ENTRY_SERVICES = frozenset({SERVICE_CLI, SERVICE_CONSOLE})
"""Where people act: their processes start traces (a span with no parent is a new trace,
and every one is recorded: a record a person sends by hand is the one they want to follow,
whatever the ratio for the org's traffic). Elsewhere only the bridge starts traces, for
records from outside the platform; other work with no sampled parent is not traced."""
NOT_SAMPLED: Mapping[str, str] = MappingProxyType({})
"""An ``Outgoing.trace`` (or a ``start_span`` parent) that says: the record this work is
for is not sampled, so no span, whatever the current context."""


def configure(settings: Settings, service_name: str, exporter: Any = None) -> bool:
    """Install the exporting provider once per process; a later call is a no-op.

    Returns whether tracing is on. Without ``otlp_endpoint`` (or an ``exporter``: the unit
    tests' in-memory one) nothing is imported beyond the API and nothing is installed. The
    provider is this module's own, not OpenTelemetry's global one: nothing else in the
    process starts exporting because kafkaorg does.
    """
    global _provider, _tracer, _content, _entry, _root_ratio
    if _provider is not None:
        return True
    if not settings.otlp_endpoint and exporter is None:
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # kafkaorg's roots are decided in ``start_span`` before any span object exists;
    # children follow their parent's decision (parent-based).
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": service_name, "openinference.project.name": PROJECT_NAME}
        ),
        sampler=_sampler(1.0 if service_name in ENTRY_SERVICES else settings.trace_sample_ratio),
    )
    provider.add_span_processor(_service_attribute(service_name))
    if exporter is None:
        assert settings.otlp_endpoint
        exporter = OTLPSpanExporter(endpoint=otlp_traces_url(settings.otlp_endpoint))
        log.info("traces of %s go to %s", service_name, otlp_traces_url(settings.otlp_endpoint))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    _provider, _content = provider, settings.trace_llm_content
    _entry = service_name in ENTRY_SERVICES
    _root_ratio = 1.0 if _entry else settings.trace_sample_ratio
    _tracer = provider.get_tracer("kafkaorg")  # once: get_tracer builds a new one per call
    return True


ROOT_DECIDED = "kafkaorg.trace.root"
"""Attribute of a root span ``start_span`` already sampled (the SDK does not decide again)."""


def _sampler(ratio: float) -> Any:
    """Parent-based; a root is recorded if ``start_span`` decided so, else (the Temporal
    interceptor's own roots: a query, a client call outside any record's work) at
    ``ratio``."""
    from opentelemetry.sdk.trace.sampling import (
        ALWAYS_ON,
        Decision,
        ParentBased,
        Sampler,
        SamplingResult,
        TraceIdRatioBased,
    )

    if ratio >= 1.0:
        return ParentBased(ALWAYS_ON)
    by_ratio = TraceIdRatioBased(ratio)

    class Root(Sampler):
        def should_sample(
            self,
            parent_context: Context | None,
            trace_id: int,
            name: str,
            kind: SpanKind | None = None,
            attributes: Any = None,
            links: Any = None,
            trace_state: Any = None,
        ) -> SamplingResult:
            if attributes and attributes.get(ROOT_DECIDED):
                return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
            return by_ratio.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )

        def get_description(self) -> str:
            return f"KafkaorgRoot{{{by_ratio.get_description()}}}"

    return ParentBased(Root())


def _service_attribute(service_name: str) -> Any:
    """A processor that puts ``service.name`` on every span too: Phoenix keeps span
    attributes, not the resource's, and one trace crosses four processes."""
    from opentelemetry.sdk.trace import SpanProcessor

    class ServiceAttribute(SpanProcessor):
        def on_start(self, span: Any, parent_context: Context | None = None) -> None:
            span.set_attribute("service.name", service_name)

    return ServiceAttribute()


def shutdown() -> None:
    """Flush what the batch processor holds and stop it (at a clean exit)."""
    global _provider, _tracer
    if _provider is not None:
        try:
            _provider.force_flush(10_000)
            _provider.shutdown()
        except Exception as exc:  # never fail an exit for the traces
            log.warning("traces not flushed: %s", exc)
        _provider, _tracer = None, None


@contextlib.contextmanager
def process_tracing(settings: Settings, service_name: str) -> Iterator[bool]:
    """``configure`` for a process's lifetime: flushed when the block ends."""
    was_on = enabled()
    on = configure(settings, service_name)
    try:
        yield on
    finally:
        if on and not was_on:
            shutdown()


def tracer() -> trace.Tracer:
    """kafkaorg's tracer (a no-op one when tracing is off)."""
    return _tracer if _tracer is not None else trace.NoOpTracer()


def force_flush() -> None:
    if _provider is not None:
        _provider.force_flush(10_000)


def temporal_interceptors() -> list[Any]:
    """The Temporal client's (and so its workers') interceptors: tracing, when it is on."""
    if not enabled():
        return []
    return [_temporal_interceptor()]


# -- carriers and Kafka headers -------------------------------------------------------------


def inject(ctx: Context | None = None) -> Carrier:
    """The W3C carrier of ``ctx`` (default: the current context); {} when off."""
    if not enabled():
        return {}
    carrier: Carrier = {}
    _PROPAGATOR.inject(carrier, context=ctx)
    return carrier


def carrier_of(span: Span) -> Carrier:
    return inject(trace.set_span_in_context(span))


def sampled_carrier(span: Span | None) -> Carrier | None:
    """The carrier to pass on for work done under ``span``: None unless it is recorded."""
    if span is None or not span.get_span_context().trace_flags.sampled:
        return None
    return carrier_of(span)


def is_sampled(carrier: Mapping[str, str] | None) -> bool:
    """Whether a carrier names a recorded trace (its ``traceparent`` flags say sampled)."""
    value = (carrier or {}).get(TRACEPARENT)
    if not value or _TRACEPARENT_RE.match(value) is None:
        return False
    return bool(int(value[-2:], 16) & 0x01)


@contextlib.contextmanager
def unsampled() -> Iterator[None]:
    """Run the block under a valid, not-sampled context: spans made in it (the Temporal
    interceptor's) are not recorded, and what they propagate says so, instead of starting
    traces of their own at the sample ratio."""
    if not enabled():
        yield
        return
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    ids = random.getrandbits(192)
    parent = NonRecordingSpan(
        SpanContext(
            trace_id=(ids >> 64) or 1,
            span_id=(ids & 0xFFFF_FFFF_FFFF_FFFF) or 1,
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.DEFAULT),
        )
    )
    token = otel_context.attach(trace.set_span_in_context(parent, Context()))
    try:
        yield
    finally:
        otel_context.detach(token)


def extract(carrier: Mapping[str, str] | None) -> Context | None:
    """The context a carrier names; None for an empty or missing one."""
    if not carrier or TRACEPARENT not in carrier:
        return None
    return _PROPAGATOR.extract(dict(carrier))


def carrier_from_headers(headers: HeaderPairs | Mapping[str, Any] | None) -> Carrier:
    """The trace headers of a Kafka record (confluent-kafka's list of pairs, or a dict)."""
    pairs = headers.items() if isinstance(headers, Mapping) else (headers or ())
    out: Carrier = {}
    for key, value in pairs:
        if key in TRACE_HEADERS and value is not None:
            text = value if isinstance(value, str) else bytes(value).decode("ascii", "replace")
            out[key] = text
    return out


def header_pairs(carrier: Mapping[str, str]) -> tuple[tuple[str, bytes], ...]:
    return tuple((k, v.encode()) for k, v in carrier.items())


def trace_id_of(headers: Mapping[str, str] | None) -> str | None:
    """The 32-hex trace id a record's ``traceparent`` header names, or None."""
    value = (headers or {}).get(TRACEPARENT)
    if not value:
        return None
    match = _TRACEPARENT_RE.match(value.strip().lower())
    if match is None or match.group(1) == "0" * 32:
        return None
    return match.group(1)


def trace_url(settings: Settings, trace_id: str) -> str:
    """Where the trace backend shows a trace (Phoenix's trace redirect by OTel trace id)."""
    return f"{settings.trace_ui_url}/redirects/traces/{trace_id}"


class TraceSpan(BaseModel):
    """One span of a trace as the trace backend stores it (flattened attributes)."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str = ""
    status: str = ""
    attributes: dict[str, Any] = {}

    @property
    def service(self) -> str | None:
        value = self.attributes.get("service.name")
        return str(value) if value is not None else None


def read_trace(settings: Settings, trace_id: str, timeout: float = 10.0) -> list[TraceSpan]:
    """Every span of one trace from Phoenix's REST API (``GET /v1/projects/<project>/spans``,
    filtered by trace id, paged by cursor); [] when it has none (yet).

    Raises ``OSError`` when the backend does not answer.
    """
    base = f"{settings.trace_ui_url}/v1/projects/{PROJECT_NAME}/spans"
    spans: list[TraceSpan] = []
    cursor: str | None = None
    while True:
        query = {"trace_id": trace_id, "limit": "1000", **({"cursor": cursor} if cursor else {})}
        try:
            with urllib.request.urlopen(f"{base}?{urlencode(query)}", timeout=timeout) as reply:
                body = json.load(reply)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:  # no span of the project arrived yet: no project
                return []
            raise
        for item in body.get("data") or []:
            spans.append(
                TraceSpan(
                    trace_id=item["context"]["trace_id"],
                    span_id=item["context"]["span_id"],
                    parent_id=item.get("parent_id"),
                    name=item["name"],
                    kind=item.get("span_kind", ""),
                    status=item.get("status_code", ""),
                    attributes=item.get("attributes") or {},
                )
            )
        cursor = body.get("next_cursor")
        if not cursor:
            return spans


# -- spans ----------------------------------------------------------------------------------


def start_span(
    name: str,
    *,
    parent: Mapping[str, str] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    links: Iterable[Span | None] = (),
    current_parent: bool = True,
    nest: bool = False,
    new_trace: bool | None = None,
) -> Span | None:
    """A started, recorded span (the caller ends it), or None: tracing off, or nothing to
    record. No span object is made for work that is not sampled.

    ``parent``: a carrier. A not-sampled one (or ``NOT_SAMPLED``) means no span. Without
    one the current span is the parent if it is recorded (and ``current_parent``);
    failing that the span starts a trace only if ``new_trace`` (default: in the processes
    where people act, ``ENTRY_SERVICES``), at the sample ratio. ``links``: spans to link to
    (None entries and the parent are skipped). ``nest``: when the current span is already
    in the carrier's trace (the interceptor's ``RunActivity`` of a record's activity), the
    new span goes under it instead.
    """
    if not enabled():
        return None
    if parent is not None and (parent or parent is NOT_SAMPLED):
        if not is_sampled(parent):
            return None
        ctx: Context | None = _PROPAGATOR.extract(dict(parent))
        if nest and _same_trace(ctx, trace.get_current_span()):
            ctx = None  # already inside that trace (e.g. the interceptor's span): nest under it
    else:
        current = trace.get_current_span()
        if current_parent and current.is_recording():
            ctx = None
        elif (new_trace if new_trace is not None else _entry) and (
            _root_ratio >= 1.0 or random.random() < _root_ratio
        ):
            ctx = Context()
            attributes = {**(attributes or {}), ROOT_DECIDED: True}
        else:
            return None
    parent_span = trace.get_current_span(ctx)
    link_list = [
        Link(s.get_span_context())
        for s in links
        if s is not None and s.get_span_context().is_valid and s is not parent_span
    ]
    started = tracer().start_span(
        name, context=ctx, kind=kind, attributes=dict(attributes or {}), links=link_list
    )
    return started if started.is_recording() else None


def _same_trace(ctx: Context | None, current: Span) -> bool:
    here = current.get_span_context()
    return (
        here.is_valid and trace.get_current_span(ctx).get_span_context().trace_id == here.trace_id
    )


def current_span_for_link() -> Span | None:
    """The current span (e.g. the interceptor's ``RunActivity``), to link a record's span to."""
    if not enabled():
        return None
    span = trace.get_current_span()
    return span if span.get_span_context().is_valid else None


def fail_span(span: Span | None, exc: BaseException) -> None:
    if span is not None:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


def end_spans(spans: Iterable[Span | None], exc: BaseException | None = None) -> None:
    for span in spans:
        if span is None:
            continue
        if exc is not None:
            fail_span(span, exc)
        span.end()


@contextlib.contextmanager
def span(
    name: str,
    *,
    parent: Mapping[str, str] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    links: Iterable[Span | None] = (),
    nest: bool = False,
) -> Iterator[Span | None]:
    """A span made current for the block (None, and nothing done, when tracing is off)."""
    started = start_span(
        name, parent=parent, kind=kind, attributes=attributes, links=links, nest=nest
    )
    if started is None:
        yield None
        return
    token = otel_context.attach(trace.set_span_in_context(started))
    try:
        yield started
    except BaseException as exc:
        fail_span(started, exc)
        raise
    finally:
        otel_context.detach(token)
        started.end()


__all__ = [
    "ENTRY_SERVICES",
    "NOT_SAMPLED",
    "TRACE_HEADERS",
    "Carrier",
    "Span",
    "SpanKind",
    "Status",
    "StatusCode",
    "TraceSpan",
    "carrier_from_headers",
    "carrier_of",
    "configure",
    "enabled",
    "end_spans",
    "extract",
    "header_pairs",
    "inject",
    "is_sampled",
    "process_tracing",
    "read_trace",
    "sampled_carrier",
    "shutdown",
    "span",
    "start_span",
    "temporal_interceptors",
    "trace_id_of",
    "trace_url",
    "unsampled",
]


def _temporal_interceptor() -> Any:
    """Temporal's ``TracingInterceptor``, with a workflow side that parents the
    ``deliver`` signal's span on the signal's own context (see the module docstring)."""
    from kafkaorg._tracing_temporal import KafkaorgTracingInterceptor

    return KafkaorgTracingInterceptor(tracer())
