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
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
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
_content = False

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


def configure(settings: Settings, service_name: str, exporter: Any = None) -> bool:
    """Install the exporting provider once per process; a later call is a no-op.

    Returns whether tracing is on. Without ``otlp_endpoint`` (or an ``exporter``: the unit
    tests' in-memory one) nothing is imported beyond the API and nothing is installed. The
    provider is this module's own, not OpenTelemetry's global one: nothing else in the
    process starts exporting because kafkaorg does.
    """
    global _provider, _content
    if _provider is not None:
        return True
    if not settings.otlp_endpoint and exporter is None:
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": service_name, "openinference.project.name": PROJECT_NAME}
        ),
        sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)),
    )
    provider.add_span_processor(_service_attribute(service_name))
    if exporter is None:
        assert settings.otlp_endpoint
        exporter = OTLPSpanExporter(endpoint=otlp_traces_url(settings.otlp_endpoint))
        log.info("traces of %s go to %s", service_name, otlp_traces_url(settings.otlp_endpoint))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    _provider, _content = provider, settings.trace_llm_content
    return True


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
    global _provider
    if _provider is not None:
        try:
            _provider.force_flush(10_000)
            _provider.shutdown()
        except Exception as exc:  # never fail an exit for the traces
            log.warning("traces not flushed: %s", exc)
        _provider = None


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
    if _provider is None:
        return trace.NoOpTracer()
    return _provider.get_tracer("kafkaorg")


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
) -> Span | None:
    """A started span (the caller ends it), or None when tracing is off.

    ``parent``: a carrier; without one the current context is the parent (or, with
    ``current_parent`` False, the span starts a trace of its own). ``links``: spans to link
    to (None entries and the current span, when it is the parent, are skipped). ``nest``:
    when the current span is already in the carrier's trace (the interceptor's
    ``RunActivity`` of a record's activity), the new span goes under it instead.
    """
    if not enabled():
        return None
    ctx = extract(parent)
    if nest and ctx is not None and _same_trace(ctx, trace.get_current_span()):
        ctx = None  # already inside that trace (e.g. the interceptor's span): nest under it
    if ctx is None and not current_parent:
        ctx = Context()
    parent_span = trace.get_current_span(ctx)
    link_list = [
        Link(s.get_span_context())
        for s in links
        if s is not None and s.get_span_context().is_valid and s is not parent_span
    ]
    return tracer().start_span(
        name, context=ctx, kind=kind, attributes=dict(attributes or {}), links=link_list
    )


def _same_trace(ctx: Context, current: Span) -> bool:
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
    "process_tracing",
    "read_trace",
    "shutdown",
    "span",
    "start_span",
    "temporal_interceptors",
    "trace_id_of",
    "trace_url",
]


def _temporal_interceptor() -> Any:
    """Temporal's ``TracingInterceptor``, with a workflow side that parents the
    ``deliver`` signal's span on the signal's own context (see the module docstring)."""
    from kafkaorg._tracing_temporal import KafkaorgTracingInterceptor

    return KafkaorgTracingInterceptor(tracer())
