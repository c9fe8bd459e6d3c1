"""``kafkaorg demo --llm``: an llm agent that really thinks, on the local model.

The local stack starts with the local model (``kafkaorg dev install --llm`` built it), an
org with one llm agent answers a few questions, and the demo shows what the agent said,
whether it said it with a ``publish`` tool call or in prose (``on_text_reply: publish``),
the tokens it spent and where to read why it did what it did.
"""

from __future__ import annotations

from rich.table import Table

from kafkaorg import org_queries as queries
from kafkaorg.cli._common import console, run, settings
from kafkaorg.cli.demo import collect_by_correlation
from kafkaorg.cli.org import start_org
from kafkaorg.config import Settings
from kafkaorg.envelope import Record, new_record
from kafkaorg.errors import BadInputError, KafkaorgError
from kafkaorg.examples import demo_llm_spec
from kafkaorg.kafka import Outgoing, create_producer, produce_and_wait
from kafkaorg.llm.failures import LLM_REPLY_TYPE
from kafkaorg.names import agent_workflow_id, kafka_topic

QUESTIONS = [
    "What colour is the sky on a clear day?",
    "Name a planet of our solar system.",
    "What is two plus two?",
]
WAIT_S = 300.0
"""A 135M-parameter model on two cores: a few seconds per call, two calls per question."""


def _said(record: Record) -> tuple[str, str]:
    """What the agent said and how: a tool call's payload or a prose answer."""
    if record.type == LLM_REPLY_TYPE:
        return str(record.payload.get("text", "")), "plain-text reply"
    payload = record.payload
    text = payload.get("answer") if isinstance(payload, dict) else None
    return (str(text) if text is not None else str(payload)), f"publish tool call ({record.type})"


def demo_llm() -> None:
    """Start the stack with the local model, ask the llm agent, show its answers."""
    from kafkaorg.devstack import DevStack

    stack = DevStack(settings(), console=console)
    stack.install()
    stack.up(workers=True, llm=True)
    cfg = Settings()  # read again: the local model now announces itself as the endpoint
    spec = demo_llm_spec()
    agent = spec.agents[0].name
    try:
        run(start_org(spec, cfg))
        console.print(
            f"[green]org {spec.org!r} started[/] (llm agent {agent!r} on {cfg.llm_model} at "
            f"{cfg.llm_base_url})",
            highlight=False,
        )
    except BadInputError:
        console.print(f"org {spec.org!r} is already running; using it")

    sent = [
        new_record(org=spec.org, type="question", source="user:demo", payload={"question": q})
        for q in QUESTIONS
    ]
    produce_and_wait(
        create_producer(cfg), (Outgoing(kafka_topic(spec.org, "questions"), r) for r in sent)
    )
    answers_topic = kafka_topic(spec.org, "answers")
    console.print(f"asked {len(sent)} questions on {kafka_topic(spec.org, 'questions')}")
    with console.status(f"Waiting for {agent!r} to think (answers on {answers_topic}) …"):
        found = collect_by_correlation(cfg, answers_topic, {r.correlation_id for r in sent}, WAIT_S)

    table = Table("question", "what the agent said", "how", title=f"Answers on {answers_topic}")
    for record in sent:
        out = found.get(record.correlation_id)
        said, how = _said(out) if out else ("[red]no answer[/]", "-")
        table.add_row(str(record.payload["question"]), said, how)
    console.print(table)
    usage = queries.org_usage(cfg, spec.org)
    spent = usage.agents.get(agent)
    if spent is not None:
        console.print(
            f"tokens used by {agent!r}: {spent.total_tokens} ({spent.prompt_tokens} prompt, "
            f"{spent.completion_tokens} completion)",
            highlight=False,
        )
    workflow = agent_workflow_id(spec.org, agent)
    console.print(
        f"Its decisions, call by call (Temporal Web UI): {cfg.temporal_ui_workflow_url(workflow)}",
        soft_wrap=True,
    )
    console.print(
        f"Why it did what it did (console): {cfg.console_url}/orgs/{spec.org}/agents/{agent}",
        soft_wrap=True,
    )
    console.print("Stop everything with: kafkaorg dev down")
    if len(found) != len(sent):
        raise KafkaorgError(
            f"only {len(found)} of {len(sent)} questions were answered within {WAIT_S:.0f} s; "
            f"see `kafkaorg dlq list {spec.org}` and logs under {cfg.state_dir / 'logs'}"
        )
