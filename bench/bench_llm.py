"""The platform's overhead per model call: an llm agent on the local model against the same
calls made straight to the model server, side by side in one run.

Each round sends one question to an llm agent and waits for its answer (through the
bridge, the AgentWorkflow, the model activity, the tools node and the produce
activity), then replays that record's model calls, exactly as the agent made them (its
conversation, the system prompt and the tool schemas), straight to the server with the
OpenAI client. Same prompts, same tokens: the difference is the platform. Rounds are
sequential, so the server serves one request at a time either way. llama-cpp-python
reuses the evaluated prefix of the previous request, so a one-token request with an
unrelated prompt goes before every measured call of either path: each pays its whole
prompt. The worker's own ``kafkaorg_llm_call_seconds`` splits the platform's time into
the model call and the rest.

Reported: per record, the platform's end-to-end time and the direct time of its calls
(medians), the overhead per record and per model call, completion tokens per second
both ways, and their ratio.

    python -m bench.bench_llm --rounds 8 --out bench/results/llm.json

Needs the core stack up (``kafkaorg dev up``) and the local model installed (``kafkaorg
dev install --llm``); the model server is started if it is not running. No other
worker or bridge may run: this starts its own, pointed at the local model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import urllib.request
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openai

from bench.echo.harness import BenchError, OutputCollector, Tracker, err
from bench.echo.kafkaorg_path import stop_org
from bench.echo.report import machine
from bench.echo.stack import PlatformProcesses, check_stack, wait_for_own_processes
from kafkaorg import client as service
from kafkaorg.config import Settings, get_settings
from kafkaorg.devstack import LocalModelService
from kafkaorg.envelope import new_record
from kafkaorg.kafka import Outgoing, create_producer, produce_and_wait
from kafkaorg.llm.prompts import first_call_tool_choice, system_prompt, tool_schemas
from kafkaorg.metrics import metrics_endpoints
from kafkaorg.names import kafka_topic
from kafkaorg.spec import validate_spec

QUESTIONS = [
    "What colour is the sky on a clear day?",
    "Name a planet of our solar system.",
    "What is two plus two?",
    "Which animal says moo?",
]
MAX_TOKENS = 96
"""Both paths: a bounded answer, so one long ramble does not decide a median."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_llm")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args(argv)


def _spec(org: str) -> dict[str, Any]:
    return {
        "org": org,
        "topics": [{"name": "questions", "partitions": 1}, {"name": "answers", "partitions": 1}],
        "agents": [
            {
                "name": "assistant",
                "kind": "llm",
                "instructions": "Answer each question in one short sentence: call publish with "
                'topic "answers", type "answer" and payload {"answer": "<sentence>"}.',
                "subscribes": ["questions"],
                "publishes": ["answers"],
                "on_text_reply": "publish",
            }
        ],
    }


def _requests_of(conversation: list[dict[str, Any]], start: int) -> list[list[dict[str, Any]]]:
    """The message lists the agent sent for the turns from ``start`` on: everything before
    each assistant message of that record."""
    return [
        conversation[:n]
        for n in range(start, len(conversation))
        if conversation[n].get("role") == "assistant"
    ]


def _flush(model: openai.OpenAI, name: str) -> None:
    """Evict the server's cached prefix, so the next call evaluates its whole prompt."""
    model.chat.completions.create(
        model=name,
        messages=[{"role": "user", "content": f"Say {uuid.uuid4().hex[:8]}."}],
        max_tokens=1,
    )


def _model_seconds(settings: Settings, worker_pid: int) -> tuple[float, float]:
    """The worker's ``kafkaorg_llm_call_seconds_sum`` and completion tokens (its metrics
    endpoint)."""
    from prometheus_client.parser import text_string_to_metric_families

    for endpoint in metrics_endpoints(settings):
        if endpoint.pid != worker_pid:
            continue
        with urllib.request.urlopen(endpoint.url, timeout=5) as response:
            text = response.read().decode()
        samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
        seconds = sum(s.value for s in samples if s.name == "kafkaorg_llm_call_seconds_sum")
        tokens = sum(
            s.value
            for s in samples
            if s.name == "kafkaorg_llm_tokens_total" and s.labels.get("kind") == "completion"
        )
        return seconds, tokens
    raise BenchError(f"no metrics endpoint of the worker (pid {worker_pid})")


def _direct(
    model: openai.OpenAI,
    name: str,
    system: str,
    tools: list[dict[str, Any]],
    messages: Any,
    tool_choice: str | None,
) -> tuple[float, int]:
    _flush(model, name)
    started = time.perf_counter()
    choice = {"tool_choice": tool_choice} if tool_choice else {}  # as the platform sends it
    reply = model.chat.completions.create(  # type: ignore[call-overload]
        model=name,
        messages=[{"role": "system", "content": system}, *messages],
        tools=tools,
        temperature=0.0,
        max_tokens=MAX_TOKENS,
        **choice,
    )
    took = time.perf_counter() - started
    return took, reply.usage.completion_tokens if reply.usage else 0


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = get_settings()
    client = await check_stack(settings)
    model_server = LocalModelService(settings)
    if not model_server.healthy():
        model_server.preflight()
        model_server.launch()
        deadline = time.monotonic() + model_server.timeout_s
        while not model_server.healthy():
            if time.monotonic() > deadline or model_server.our_pid() is None:
                raise BenchError(f"the local model did not start; see {model_server.log_file}")
            await asyncio.sleep(0.5)
    processes = PlatformProcesses(
        {
            "KAFKAORG_LLM_BASE_URL": model_server.base_url,
            "KAFKAORG_LLM_MODEL": model_server.model_name,
            "KAFKAORG_LLM_MAX_TOKENS": str(MAX_TOKENS),
            "KAFKAORG_LLM_MAX_TOKENS_PARAM": "max_tokens",
            "KAFKAORG_LLM_MAX_RETRIES": "0",
            "KAFKAORG_LLM_TIMEOUT_S": "300",
        }
    )
    processes.start()
    org = f"benchllm-{uuid.uuid4().hex[:6]}"
    rows: list[dict[str, Any]] = []
    try:
        await wait_for_own_processes(client, settings, processes)
        spec = validate_spec(_spec(org))
        await service.launch_org(settings, spec)
        agent = spec.agents[0]
        llm_settings = Settings(
            llm_base_url=model_server.base_url, llm_model=model_server.model_name
        )
        system = system_prompt(org, agent)
        tools = tool_schemas(agent)
        direct_client = openai.OpenAI(base_url=model_server.base_url, api_key="not-needed")
        producer = create_producer(settings)
        collector = OutputCollector(settings, kafka_topic(org, "answers"), 1)
        collector.start()
        seen = 0
        worker_pid = processes.processes["worker"].pid
        for n in range(args.warmup + args.rounds):
            question = QUESTIONS[n % len(QUESTIONS)]
            record = new_record(
                org=org, type="question", source="user:bench", payload={"question": question}
            )
            await asyncio.to_thread(_flush, direct_client, llm_settings.llm_model)
            model_before = await asyncio.to_thread(_model_seconds, settings, worker_pid)
            collector.tracker = tracker = Tracker(1)
            started = tracker.sent[record.id] = time.monotonic()
            produce_and_wait(producer, [Outgoing(kafka_topic(org, "questions"), record)])
            # The record is done when the agent says so (an answer, prose published, or a
            # dead letter: a 135M model's tool call may miss); its last call comes after
            # the answer is out.
            deadline = started + 600
            while (await service.agent_report(client, org, agent.name)).processed < n + 1:
                if time.monotonic() > deadline:
                    raise BenchError(f"{question!r} was not finished within 600 s")
                await asyncio.sleep(0.02)
            platform_s = time.monotonic() - started
            answered = tracker.received.get(record.id)
            answered_s = answered - started if answered is not None else None
            model_after = await asyncio.to_thread(_model_seconds, settings, worker_pid)
            model_s = model_after[0] - model_before[0]
            platform_tokens = model_after[1] - model_before[1]
            conversation = (await service.agent_conversation(client, org, agent.name)).messages
            calls = _requests_of(conversation, seen)
            seen = len(conversation)
            direct = [
                await asyncio.to_thread(
                    _direct,
                    direct_client,
                    llm_settings.llm_model,
                    system,
                    tools,
                    m,
                    first_call_tool_choice(agent, m),
                )
                for m in calls
            ]
            if n < args.warmup:
                continue
            row = {
                "question": question,
                "calls": len(calls),
                "platform_s": platform_s,
                "answered_s": answered_s,
                "platform_model_s": model_s,
                "direct_s": sum(t for t, _ in direct),
                "completion_tokens_direct": sum(k for _, k in direct),
                "completion_tokens_platform": platform_tokens,
            }
            rows.append(row)
            err.print(
                f"round {len(rows)}: {row['calls']} calls, platform {platform_s:.2f} s "
                f"(model calls {model_s:.2f} s, {platform_tokens:.0f} tokens), direct "
                f"{row['direct_s']:.2f} s ({row['completion_tokens_direct']} tokens)"
            )
        collector.stop()
    finally:
        try:
            await asyncio.wait_for(stop_org(client, org), timeout=60)
        except Exception as exc:
            err.print(f"[yellow]could not stop org {org!r}: {exc}[/]")
        processes.stop()
    return _summary(rows)


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    if not rows:
        raise BenchError("no rounds measured")
    platform = statistics.median(r["platform_s"] for r in rows)
    direct = statistics.median(r["direct_s"] for r in rows)
    per_call = [(r["platform_s"] - r["direct_s"]) / r["calls"] for r in rows if r["calls"]]
    tokens = sum(r["completion_tokens_direct"] for r in rows)
    platform_tokens = sum(r["completion_tokens_platform"] for r in rows)
    return {
        "when": datetime.now(UTC).isoformat(),
        "machine": machine(),
        "rounds": rows,
        "median_platform_s_per_record": platform,
        "median_direct_s_per_record": direct,
        "median_overhead_s_per_record": statistics.median(
            r["platform_s"] - r["direct_s"] for r in rows
        ),
        "median_overhead_s_per_call": statistics.median(per_call) if per_call else None,
        "median_platform_model_s_per_record": statistics.median(
            r["platform_model_s"] for r in rows
        ),
        "median_platform_rest_s_per_record": statistics.median(
            r["platform_s"] - r["platform_model_s"] for r in rows
        ),
        "median_calls_per_record": statistics.median(r["calls"] for r in rows),
        "completion_tokens_platform": platform_tokens,
        "completion_tokens_direct": tokens,
        "completion_tokens_per_s_platform": platform_tokens
        / sum(r["platform_model_s"] for r in rows),
        "completion_tokens_per_s_direct": tokens / sum(r["direct_s"] for r in rows),
        "direct_over_platform": direct / platform,
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        summary = asyncio.run(run(args))
    except BenchError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise SystemExit(1) from None
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
