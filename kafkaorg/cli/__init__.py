"""The ``kafkaorg`` command line.

Exit status: 0 done, 2 bad input (one line saying what and where), 1 a failure
at run time. No traceback reaches the user unless ``KAFKAORG_DEBUG=1``.
"""

from __future__ import annotations

import logging
import os
import sys

import typer

from kafkaorg.cli._common import err_console
from kafkaorg.cli.agents import agent_app, topic_app
from kafkaorg.cli.approvals import approval_app
from kafkaorg.cli.archive import archive_app
from kafkaorg.cli.db import db_app
from kafkaorg.cli.demo import demo
from kafkaorg.cli.dev import dev_app
from kafkaorg.cli.dlq import dlq_app
from kafkaorg.cli.flows import flow_app
from kafkaorg.cli.org import org_app
from kafkaorg.cli.processes import bridge, console, worker
from kafkaorg.cli.records import send, tail
from kafkaorg.cli.replay import replay
from kafkaorg.cli.sandbox import sandbox_app
from kafkaorg.cli.schemas import schema_app
from kafkaorg.cli.tools import tool_app
from kafkaorg.cli.workflow import workflow_app
from kafkaorg.errors import KafkaorgError
from kafkaorg.spec import SpecError

app = typer.Typer(
    help="kafkaorg: organizations of AI agents on an event log.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(dev_app, name="dev")
app.add_typer(org_app, name="org")
app.add_typer(agent_app, name="agent")
app.add_typer(topic_app, name="topic")
app.add_typer(db_app, name="db")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(workflow_app, name="workflow")
app.add_typer(dlq_app, name="dlq")
app.add_typer(tool_app, name="tool")
app.add_typer(flow_app, name="flow")
app.add_typer(approval_app, name="approval")
app.add_typer(schema_app, name="schema")
app.add_typer(archive_app, name="archive")
app.command()(worker)
app.command()(bridge)
app.command()(console)
app.command()(send)
app.command()(tail)
app.command()(replay)
app.command()(demo)


def _fail(message: str, code: int) -> int:
    err_console.print(f"[red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
    return code


def _service_name(argv: list[str]) -> str:
    """Whose spans these are: the long-running processes by name, any other command the CLI."""
    from kafkaorg import tracing

    command = [a for a in argv[1:3] if not a.startswith("-")]
    if command[:1] == ["worker"]:
        return tracing.SERVICE_WORKER
    if command[:1] == ["bridge"]:
        return tracing.SERVICE_BRIDGE
    if command[:1] == ["console"]:
        return tracing.SERVICE_CONSOLE
    if command == ["sandbox", "worker"]:
        return tracing.SERVICE_SANDBOX_WORKER
    return tracing.SERVICE_CLI


def _tracing() -> None:
    """Traces on when ``KAFKAORG_OTLP_ENDPOINT`` is set (a bad setting is reported later)."""
    from kafkaorg import tracing
    from kafkaorg.config import get_settings

    try:
        settings = get_settings()
    except Exception:
        return
    if settings.otlp_endpoint:
        tracing.configure(settings, _service_name(sys.argv))


def _run() -> int:
    """Run the command; the exit status of DESIGN.md (0 done, 2 bad input, 1 failure)."""
    from kafkaorg import tracing

    _tracing()
    try:
        return _run_app()
    finally:
        tracing.shutdown()  # flushed here: main() skips interpreter teardown


def _run_app() -> int:
    try:
        app()
    except SystemExit as exc:  # typer/click exit with their own status (usage errors: 2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except SpecError as exc:
        if len(exc.problems) == 1:
            return _fail(f"{exc.source}: {exc.problems[0]}", 2)
        err_console.print(
            f"[red]error:[/] {exc.source}: {len(exc.problems)} problems", highlight=False
        )
        for problem in exc.problems:
            err_console.print(f"  - {problem}", markup=False, highlight=False)
        return 2
    except KafkaorgError as exc:
        return _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as exc:
        if os.environ.get("KAFKAORG_DEBUG"):
            raise
        return _fail(f"{type(exc).__name__}: {exc} (set KAFKAORG_DEBUG=1 for a traceback)", 1)
    return 0


def main() -> None:
    code = _run()
    # Skip interpreter teardown: the Temporal client's Rust threads can crash a finalizing
    # interpreter (temporalio/sdk-python#300), turning a clean exit into SIGSEGV/SIGABRT.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
