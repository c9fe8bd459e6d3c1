"""``kafkaorg dev``: the local stack (Kafka, Temporal + Web UI, PostgreSQL, worker, bridge)."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from kafkaorg.config import get_settings
from kafkaorg.devstack import DevStack, ServiceStatus, StackError

dev_app = typer.Typer(
    help="The local stack: Kafka, Temporal (+Web UI), PostgreSQL, worker, bridge.",
    no_args_is_help=True,
)

_out = Console()
_err = Console(stderr=True)


def _stack() -> DevStack:
    return DevStack(get_settings(), console=_err)


def _fail(exc: StackError) -> None:
    _err.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
    sys.exit(1)


def _table(statuses: list[ServiceStatus]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("service", "state", "address", "pid", "metrics", "detail"):
        table.add_column(column)
    for s in statuses:
        state = "[green]up[/]" if s.healthy else "[red]down[/]"
        metrics = s.metrics_url or "-"
        table.add_row(s.name, state, s.address, str(s.pid or "-"), metrics, s.detail)
    return table


@dev_app.command()
def install(
    llm: Annotated[
        bool,
        typer.Option(
            "--llm",
            help="Also build the local model server (llama-cpp-python, ~5 min on 2 cores, once).",
        ),
    ] = False,
) -> None:
    """Fetch Kafka's jars from Maven Central into the cache (once); ``--llm``: the local model."""
    try:
        _stack().install()
        if llm:
            _install_local_model()
    except StackError as exc:
        _fail(exc)


def _install_local_model() -> None:
    from kafkaorg.devstack import (
        LLAMA_CPP_VERSION,
        install_local_model,
        llm_venv,
        model_file,
        server_installed,
    )

    settings = get_settings()
    venv = llm_venv(settings)
    if server_installed(settings) and model_file(settings) is not None:
        _err.print(f"[green]✓[/] local model present in {venv}", highlight=False)
        return
    started = time.monotonic()
    what = f"Building llama-cpp-python {LLAMA_CPP_VERSION} (llama.cpp from source) into {venv}"
    said_at = started
    if not _err.is_terminal:  # CI logs: no spinner there, so a line now and then
        _err.print(what + " …", highlight=False)
    with _err.status(what + " …") as status:

        def progress(line: str) -> None:
            nonlocal said_at
            now = time.monotonic()
            elapsed = f"{(now - started) // 60:.0f}:{(now - started) % 60:02.0f}"
            status.update(f"{what} … {elapsed}  [dim]{line[:80]}[/]")
            if not _err.is_terminal and now - said_at >= 30:
                said_at = now
                _err.print(f"  … {elapsed} elapsed: {line[:100]}", highlight=False)

        took = install_local_model(settings, progress)
    _err.print(
        f"[green]✓[/] local model installed in {took // 60:.0f} min {took % 60:.0f} s: "
        f"SmolLM2-135M-Instruct ({model_file(settings)}); start it with kafkaorg dev up --llm",
        highlight=False,
    )


@dev_app.command()
def up(
    workers: Annotated[
        bool, typer.Option("--workers", help="Also start `kafkaorg worker` and `kafkaorg bridge`.")
    ] = False,
    llm: Annotated[
        bool,
        typer.Option(
            "--llm",
            help="Also serve the local model (kafkaorg dev install --llm) and point llm agents"
            " at it when KAFKAORG_LLM_BASE_URL is unset.",
        ),
    ] = False,
) -> None:
    """Start whatever is not running yet and wait until it answers."""
    started = time.monotonic()
    try:
        statuses = _stack().up(workers=workers, llm=llm)
    except StackError as exc:
        _fail(exc)
    _out.print(_table(statuses))
    _err.print(f"Stack up in {time.monotonic() - started:.1f} s.", highlight=False)


@dev_app.command()
def down() -> None:
    """Stop what `kafkaorg dev up` started (data is kept for the next up)."""
    try:
        _stack().down()
    except StackError as exc:
        _fail(exc)


@dev_app.command()
def status(
    json_: Annotated[bool, typer.Option("--json", help="One JSON list on stdout.")] = False,
) -> None:
    """Show each service, checked with a real client, and every process's metrics URL.

    ``--json``: one object per service; worker, bridge and sandbox worker carry
    ``metrics_url`` and ``sdk_metrics_url`` (their Temporal SDK metrics) while they run.
    """
    from kafkaorg.metrics import metrics_endpoints

    settings = get_settings()
    statuses = DevStack(settings).status()
    if json_:
        sys.stdout.write("[" + ",\n ".join(s.model_dump_json() for s in statuses) + "]\n")
        return
    _out.print(_table(statuses))
    endpoints = metrics_endpoints(settings)
    if endpoints:
        table = Table(box=None, pad_edge=False, title="metrics endpoints", title_justify="left")
        for column in ("process", "pid", "url"):
            table.add_column(column)
        for e in endpoints:
            table.add_row(e.process, str(e.pid), e.url)
        _out.print(table)
