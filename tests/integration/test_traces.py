"""One record through the demo's rule → tool → echo chain is one trace in Phoenix; a
record from outside is sampled once, where it enters, and every hop follows that decision.

Everything real: Phoenix from its own virtualenv (started here if it is not up), the
worker, bridge and sandbox worker restarted with ``KAFKAORG_OTLP_ENDPOINT`` pointing at it,
the record sent by ``kafkaorg send`` or a plain Kafka producer; traces are read back from
Phoenix's REST API. The model is the scripted stand-in.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kafkaorg.config import Settings
from kafkaorg.devstack._phoenix import PhoenixService, phoenix_venv
from kafkaorg.envelope import Record, new_record
from kafkaorg.examples import demo_spec
from kafkaorg.kafka import Outgoing, create_producer, produce_and_wait
from kafkaorg.names import agent_workflow_id, kafka_topic
from kafkaorg.tracing import TraceSpan, carrier_from_headers, read_trace, trace_id_of, trace_url
from tests.browser import start_console
from tests.llm_server import ScriptedLLM, ScriptedReply, ScriptedToolCall
from tests.support import Platform, ProcessHandle, raw_messages, run_cli, unique_org

AGENTS = ("triage", "scorer", "recorder")


@pytest.fixture(scope="session")
def phoenix(stack: Settings) -> Iterator[PhoenixService]:
    """The trace backend; started (and afterwards stopped) here when it is not running."""
    service = PhoenixService(stack)
    if service.healthy():
        yield service
        return
    if not service.installed():
        pytest.fail(
            f"Phoenix is not installed: {phoenix_venv(stack)} is missing "
            "(scripts/install.sh creates it)"
        )
    service.launch()
    deadline = time.monotonic() + service.timeout_s
    while not service.healthy():
        if service.our_pid() is None:
            pytest.fail(f"Phoenix exited while starting; see {service.log_file}")
        if time.monotonic() > deadline:
            pytest.fail(f"Phoenix did not answer within {service.timeout_s:.0f} s")
        time.sleep(0.5)
    yield service
    service.stop()


@pytest.fixture
def traced(
    platform: Platform,
    phoenix: PhoenixService,
    worker: ProcessHandle,
    bridge: ProcessHandle,
    sandbox_worker: ProcessHandle,
) -> Iterator[dict[str, str]]:
    """The platform's three processes replaced, for one test, by ones exporting traces
    (every record from outside sampled, so a test can tell a decision from chance)."""
    env = {"KAFKAORG_OTLP_ENDPOINT": phoenix.otlp_endpoint, "KAFKAORG_TRACE_SAMPLE_RATIO": "1.0"}
    with (
        platform.replaced(worker, **env) as traced_worker,
        platform.replaced(bridge, **env) as traced_bridge,
        platform.replaced(sandbox_worker, **env) as traced_sandbox,
    ):
        yield env
        for handle in (traced_worker, traced_bridge, traced_sandbox):
            handle.ensure_alive()


async def _wait_for_trace(
    settings: Settings, trace_id: str, complete: Any, timeout: float = 60.0
) -> list[TraceSpan]:
    """The trace's spans once ``complete(spans)`` holds (exports are batched: a few s)."""
    deadline = time.monotonic() + timeout
    spans: list[TraceSpan] = []
    while time.monotonic() < deadline:
        spans = await asyncio.to_thread(read_trace, settings, trace_id)
        if complete(spans):
            return spans
        await asyncio.sleep(1.0)
    return spans


def _named(spans: list[TraceSpan], name: str) -> list[TraceSpan]:
    return [s for s in spans if s.name == name]


async def test_one_record_through_the_demo_chain_is_one_trace(
    platform: Platform, traced: dict[str, str], log_dir: Path
) -> None:
    org = unique_org("trace")
    await platform.start_org({**demo_spec().model_dump(mode="json", by_alias=True), "org": org})
    payload = {"title": "security outage in prod", "priority": "high"}
    sent = await asyncio.to_thread(
        run_cli,
        "send", org, "tasks", "--type", "task.request", "--payload", json.dumps(payload),
        env=traced,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr

    # The CLI's record and the last agent's output name the same trace in their headers.
    (task_message,) = await asyncio.to_thread(
        raw_messages, platform.settings, kafka_topic(org, "tasks"), 1
    )
    trace_id = trace_id_of(carrier_from_headers(task_message.headers()))
    assert trace_id is not None, task_message.headers()
    (result,) = await platform.collect(org, "results", 1)
    (result_message,) = await asyncio.to_thread(
        raw_messages, platform.settings, kafka_topic(org, "results"), 1
    )
    assert trace_id_of(carrier_from_headers(result_message.headers())) == trace_id
    assert result.record.payload.get("score") is not None

    topics = {t: kafka_topic(org, t) for t in ("tasks", "triaged", "scored", "results")}
    produce_names = {f"kafka.produce {name}" for name in topics.values()}
    wanted = {
        *produce_names,
        "sandbox.run",
        *(f"bridge.signal {agent}" for agent in AGENTS),
        *(f"agent.step {agent}" for agent in AGENTS),
    }
    spans = await _wait_for_trace(
        platform.settings, trace_id, lambda spans: wanted <= {s.name for s in spans}
    )
    names = Counter(s.name for s in spans)
    assert wanted <= set(names), f"missing {sorted(wanted - set(names))}; got {sorted(names)}"
    assert {s.trace_id for s in spans} == {trace_id}

    # One tree: a single root (the CLI's produce), every parent inside the trace.
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if s.parent_id is None]
    assert [(r.name, r.service) for r in roots] == [
        (f"kafka.produce {topics['tasks']}", "kafkaorg-cli")
    ]
    orphans = [(s.name, s.parent_id) for s in spans if s.parent_id and s.parent_id not in ids]
    assert not orphans, orphans
    by_id = {s.span_id: s for s in spans}

    def ancestors(span: TraceSpan) -> list[str]:
        chain = []
        while span.parent_id is not None:
            span = by_id[span.parent_id]
            chain.append(span.name)
        return chain

    # Each hop: the bridge consumed the record under its producer's span ...
    for topic in ("tasks", "triaged", "scored"):
        (consume,) = _named(spans, f"bridge.consume {topics[topic]}")
        assert consume.service == "kafkaorg-bridge"
        assert by_id[consume.parent_id or ""].name == f"kafka.produce {topics[topic]}"
    # ... and each agent's workflow got the signal (the interceptor's spans, on both sides),
    # ran its step and produced its output under it.
    for agent in AGENTS:
        workflow_id = agent_workflow_id(org, agent)
        of_workflow = [s for s in spans if s.attributes.get("temporalWorkflowID") == workflow_id]
        kinds = {s.name for s in of_workflow}
        assert "SignalWithStartWorkflow:AgentWorkflow" in kinds, (agent, kinds)
        assert "HandleSignal:deliver" in kinds, (agent, kinds)
        (step,) = _named(spans, f"agent.step {agent}")
        assert step.attributes.get("kafkaorg.workflow_id") == workflow_id
        assert step.service == "kafkaorg-worker"
        assert f"RunActivity:{'publish_emissions' if agent == 'scorer' else 'run_agent_step'}" in (
            ancestors(step)
        )
    for name in produce_names - {f"kafka.produce {topics['tasks']}"}:
        (produce,) = _named(spans, name)
        assert produce.service == "kafkaorg-worker"
        assert any(a.startswith("agent.step ") for a in ancestors(produce)), ancestors(produce)

    # The tool's sandbox run, in the sandbox worker, with its outcome.
    (run,) = _named(spans, "sandbox.run")
    assert run.service == "kafkaorg-sandbox-worker"
    assert run.attributes.get("kafkaorg.sandbox.outcome") == "ok"
    assert run.attributes.get("kafkaorg.sandbox.limit_hit") == "none"
    assert "RunActivity:run_code" in ancestors(run)
    assert f"bridge.consume {topics['triaged']}" in ancestors(run)

    # The console's record page links the record to its trace in Phoenix.
    url = trace_url(platform.settings, trace_id)
    assert url.endswith(f"/redirects/traces/{trace_id}")
    console = start_console(log_dir, 18245, name="traces-console")
    try:
        position = f"tasks/{task_message.partition()}/{task_message.offset()}"
        async with httpx.AsyncClient(base_url="http://127.0.0.1:18245") as client:
            page = await client.get(f"/orgs/{org}/records/{position}")
        assert page.status_code == 200, page.text
        assert f'href="{url}"' in page.text
    finally:
        console.stop()


UNSAMPLED_TRACE = "5a1e0000000000000000000000000001"


async def test_a_record_from_outside_is_sampled_where_it_enters_and_every_hop_follows(
    platform: Platform, traced: dict[str, str], scripted_llm: ScriptedLLM
) -> None:
    """An llm agent answers, an echo agent relays. A plain producer's record without trace
    context starts a trace at the bridge, and its path is one tree down to the model call;
    one whose producer chose not to sample carries that choice through every hop: no
    ``traceparent`` on what the agents produce, and no span in Phoenix, although this
    bridge samples every record that starts a trace."""
    org = unique_org("sampling")
    await platform.start_org(
        {
            "org": org,
            "topics": [{"name": n, "partitions": 1} for n in ("tasks", "answers", "out")],
            "agents": [
                {
                    "name": "thinker",
                    "kind": "llm",
                    "instructions": "Answer each task on answers.",
                    "subscribes": ["tasks"],
                    "publishes": ["answers"],
                },
                {"name": "relay", "kind": "echo", "subscribes": ["answers"], "publishes": ["out"]},
            ],
        }
    )

    def answer(messages: list[dict[str, Any]]) -> ScriptedReply:
        if messages and messages[-1].get("role") == "tool":  # published: the turn ends
            return ScriptedReply(content="answered")
        call = ScriptedToolCall(
            name="publish", arguments={"topic": "answers", "type": "task.answer", "payload": {}}
        )
        return ScriptedReply(tool_calls=[call])

    scripted_llm.add_rule("thinker", lambda _: True, answer, times=None)
    sampled = new_record(org=org, type="task.request", source="external", payload={"n": 1})
    unsampled = new_record(org=org, type="task.request", source="external", payload={"n": 2})
    not_sampled = f"00-{UNSAMPLED_TRACE}-00000000000000a1-00".encode()
    await asyncio.to_thread(
        produce_and_wait,
        create_producer(platform.settings),
        [
            Outgoing(kafka_topic(org, "tasks"), sampled),
            Outgoing(kafka_topic(org, "tasks"), unsampled, (("traceparent", not_sampled),)),
        ],
    )

    def by_input(topic: str, count: int) -> dict[str, tuple[Record, str | None]]:
        """Each output by the task it descends from, with the trace id in its headers."""
        messages = raw_messages(platform.settings, kafka_topic(org, topic), count)
        out = {}
        for message in messages:
            record = Record.model_validate_json(message.value())
            out[record.causation_id or ""] = (
                record,
                trace_id_of(carrier_from_headers(message.headers())),
            )
        return out

    await platform.collect(org, "out", 2)
    answers = await asyncio.to_thread(by_input, "answers", 2)
    outs = await asyncio.to_thread(by_input, "out", 2)
    (answer_of_sampled, trace_id) = answers[sampled.id]
    (answer_of_unsampled, no_trace) = answers[unsampled.id]
    assert trace_id is not None and no_trace is None
    assert outs[answer_of_sampled.id][1] == trace_id
    assert outs[answer_of_unsampled.id][1] is None, "the relay hop started no trace"

    # The sampled path: rooted at the bridge's consume, the model call inside it.
    topics = {t: kafka_topic(org, t) for t in ("tasks", "answers", "out")}
    wanted = {
        f"bridge.consume {topics['tasks']}",
        "llm.call",
        f"kafka.produce {topics['answers']}",
        f"bridge.consume {topics['answers']}",
        "agent.step relay",
        f"kafka.produce {topics['out']}",
    }
    spans = await _wait_for_trace(
        platform.settings, trace_id, lambda spans: wanted <= {s.name for s in spans}
    )
    names = {s.name for s in spans}
    assert wanted <= names, f"missing {sorted(wanted - names)}; got {sorted(names)}"
    roots = [s for s in spans if s.parent_id is None]
    assert [(r.name, r.service) for r in roots] == [
        (f"bridge.consume {topics['tasks']}", "kafkaorg-bridge")
    ]
    ids = {s.span_id for s in spans}
    assert not [s.name for s in spans if s.parent_id and s.parent_id not in ids]
    calls = _named(spans, "llm.call")
    assert len(calls) == 2  # the publish, then the reply that ends the turn
    assert {c.service for c in calls} == {"kafkaorg-worker"}
    assert all(c.kind == "LLM" for c in calls), [(c.kind, c.attributes) for c in calls]
    assert all(c.attributes.get("llm.token_count.total") == 18 for c in calls), [
        c.attributes for c in calls
    ]
    # The unsampled task's chain exported nothing under the trace id its producer chose.
    assert await asyncio.to_thread(read_trace, platform.settings, UNSAMPLED_TRACE) == []
