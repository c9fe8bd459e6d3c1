"""``kafkaorg sandbox``: run a file in the very jail tools run in, host the sandbox worker, check.

``run`` uses the same :class:`SandboxPolicy` defaults and the same runner as
the ``run_code`` activity, so what a user sees here is what an agent's tool
gets. Exit status: 0 when the run happened (even if the program failed or hit
a limit: that is the result), 2 for bad input, 1 when nsjail cannot run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from kafkaorg.cli._common import console, print_json, run, settings
from kafkaorg.errors import BadInputError
from kafkaorg.sandbox import (
    SandboxPolicy,
    SandboxResult,
    SandboxUnavailableError,
    detect_capabilities,
    run_in_sandbox,
)

sandbox_app = typer.Typer(
    help="The nsjail sandbox that agents' tools run in.", no_args_is_help=True
)

_TRIVIAL = "import json, sys\nprint(json.dumps({'ok': True, 'python': sys.version.split()[0]}))\n"


_OPTION_OF = {
    "wall_time_s": "--wall-time",
    "cpu_time_s": "--cpu-time",
    "stdout_max_bytes": "--output-max",
    "stderr_max_bytes": "--output-max",
}


def _policy(overrides: dict[str, float | int | None]) -> SandboxPolicy:
    """The activity's default policy with the options given; bad values are bad input."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return SandboxPolicy.model_validate(given)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        option = _OPTION_OF.get(field, "--" + field.replace("_", "-"))
        raise BadInputError(f"{option}: {first['msg']}") from None


def _print_result(result: SandboxResult) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_row("ok", str(result.ok))
    table.add_row("exit code", str(result.exit_code))
    table.add_row("signal", str(result.signal))
    table.add_row("limit hit", result.limit_hit.value if result.limit_hit else "-")
    table.add_row("duration", f"{result.duration_s:.3f} s (cpu {result.cpu_s:.3f} s)")
    table.add_row("sandbox", result.sandbox)
    console.print(table)
    for name, text, truncated in (
        ("stdout", result.stdout, result.stdout_truncated),
        ("stderr", result.stderr, result.stderr_truncated),
    ):
        note = " (truncated)" if truncated else ""
        console.rule(f"{name}{note}", align="left")
        console.print(text, markup=False, highlight=False, end="" if text.endswith("\n") else "\n")


@sandbox_app.command("run")
def run_file(
    file: Annotated[Path, typer.Argument(help="A Python file to run in the jail.")],
    stdin: Annotated[
        str | None, typer.Option("--stdin", help="JSON given to the program on stdin.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    wall_time: Annotated[float | None, typer.Option("--wall-time", help="Seconds.")] = None,
    cpu_time: Annotated[int | None, typer.Option("--cpu-time", help="Seconds.")] = None,
    memory_mb: Annotated[int | None, typer.Option("--memory-mb")] = None,
    file_size_mb: Annotated[int | None, typer.Option("--file-size-mb")] = None,
    processes: Annotated[int | None, typer.Option("--processes")] = None,
    open_files: Annotated[int | None, typer.Option("--open-files")] = None,
    tmpfs_mb: Annotated[int | None, typer.Option("--tmpfs-mb")] = None,
    output_max: Annotated[
        int | None, typer.Option("--output-max", help="Cap of stdout and of stderr, in bytes.")
    ] = None,
) -> None:
    """Run FILE in the sandbox tools run in, and print what happened."""
    if not file.is_file():
        raise BadInputError(f"{file}: no such file")
    try:
        code = file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{file}: cannot read it as text ({exc})") from None
    stdin_bytes = b""
    if stdin is not None:
        try:
            json.loads(stdin)
        except json.JSONDecodeError as exc:
            raise BadInputError(f"--stdin: not JSON ({exc.msg} at column {exc.colno})") from None
        stdin_bytes = stdin.encode()
    policy = _policy(
        {
            "wall_time_s": wall_time,
            "cpu_time_s": cpu_time,
            "memory_mb": memory_mb,
            "file_size_mb": file_size_mb,
            "processes": processes,
            "open_files": open_files,
            "tmpfs_mb": tmpfs_mb,
            "stdout_max_bytes": output_max,
            "stderr_max_bytes": output_max,
        }
    )
    result = run_in_sandbox(code, stdin_bytes, policy)
    if as_json:
        print_json(result.model_dump(mode="json"))
    else:
        _print_result(result)


@sandbox_app.command()
def check(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Report what this machine offers a jail, then run a trivial program in one."""
    caps = detect_capabilities()
    result: SandboxResult | None = None
    error: str | None = None
    if caps.can_run:
        try:
            result = run_in_sandbox(_TRIVIAL, b"", SandboxPolicy(), capabilities=caps)
        except SandboxUnavailableError as exc:
            error = str(exc)
    else:
        error = "sandbox unavailable: " + "; ".join(caps.problems())
    if result is not None and not result.ok:
        error = f"the trivial program failed in the jail: {result.stderr.strip()[-300:]}"
    if as_json:
        print_json(
            {
                "capabilities": caps.model_dump(mode="json"),
                "trial": result.model_dump(mode="json") if result else None,
                "error": error,
            }
        )
    else:
        table = Table(show_header=False, box=None, pad_edge=False)
        table.add_row("kernel", caps.kernel)
        table.add_row("nsjail", caps.nsjail or "missing")
        table.add_row("interpreter", caps.interpreter_detail)
        table.add_row("user namespaces", caps.user_namespaces_detail)
        table.add_row("cgroups", caps.cgroup_hierarchy)
        for status in (caps.memory, caps.pids):
            table.add_row(
                f"  {status.controller}", ("on: " if status.usable else "off: ") + status.detail
            )
        if result is not None:
            table.add_row(
                "trial run",
                f"{'ok' if result.ok else 'FAILED'} in {result.duration_s * 1000:.0f} ms",
            )
            table.add_row("jail", result.sandbox)
        console.print(table)
    if error is not None:
        raise SandboxUnavailableError(error)


@sandbox_app.command()
def worker() -> None:
    """Run a sandbox worker: hosts the run_code activity on the kafkaorg-sandbox task queue."""
    from kafkaorg.cli.processes import _logging
    from workers.sandbox_worker import run_sandbox_worker

    _logging()
    run(run_sandbox_worker(settings()))
