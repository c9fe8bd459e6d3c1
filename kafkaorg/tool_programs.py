"""Tools: the programs the sandbox runs for agents, and the harnesses around them (pure).

A tool is Python code defining ``def run(args: dict) -> dict``. Its tests are
Python code with plain ``assert``s calling ``run(...)``: top-level statements,
``test_*`` functions, or both. The sandbox never sees a tool alone: a *call*
runs the code plus a harness that reads JSON args on stdin and prints
``json.dumps(run(args))``; a *test run* runs code plus tests plus a harness that
prints a one-line JSON summary. Anything the tool itself prints goes to stderr,
so stdout carries only the harness's JSON.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, Field

from kafkaorg.sandbox import SandboxResult, ToolOutputError, parse_json_output

SUMMARY_MARKER = "KAFKAORG-TEST-SUMMARY "
"""Prefix of the test harness's summary line on stdout."""

_CALL_HARNESS = """\
import contextlib as _k_contextlib
import json as _k_json
import sys as _k_sys

_k_ns = {{"__name__": "kafkaorg_tool"}}
with _k_contextlib.redirect_stdout(_k_sys.stderr):
    exec(compile({code!r}, "tool.py", "exec"), _k_ns)
    _k_args = _k_json.loads(_k_sys.stdin.read() or "{{}}")
    if not isinstance(_k_args, dict):
        raise SystemExit("tool args must be a JSON object")
    _k_out = _k_ns["run"](_k_args)
if not isinstance(_k_out, dict):
    raise SystemExit(f"run() must return a dict, not {{type(_k_out).__name__}}")
_k_sys.stdout.write(_k_json.dumps(_k_out))
"""

_TEST_HARNESS = """\
import contextlib as _k_contextlib
import json as _k_json
import sys as _k_sys
import traceback as _k_traceback

def _k_failure(where, exc):
    frames = _k_traceback.extract_tb(exc.__traceback__)
    line = next((f.lineno for f in reversed(frames) if f.filename in ("tool.py", "tests.py")), None)
    text = f"{{type(exc).__name__}}: {{exc}}".rstrip(": ")
    return {{"test": where, "line": line, "error": text[:300]}}

_k_summary = {{"passed": False, "tests": 0, "failures": [], "error": None}}
_k_ns = {{"__name__": "kafkaorg_tool_tests"}}
with _k_contextlib.redirect_stdout(_k_sys.stderr):
    try:
        exec(compile({code!r}, "tool.py", "exec"), _k_ns)
        if not callable(_k_ns.get("run")):
            raise NameError("the tool defines no run(args) function")
    except BaseException as exc:
        _k_summary["error"] = "tool code: " + _k_failure("tool", exc)["error"]
    else:
        try:
            _k_summary["tests"] += 1
            exec(compile({tests!r}, "tests.py", "exec"), _k_ns)
        except BaseException as exc:
            _k_summary["failures"].append(_k_failure("tests.py", exc))
        for _k_name, _k_fn in list(_k_ns.items()):
            if _k_name.startswith("test_") and callable(_k_fn):
                _k_summary["tests"] += 1
                try:
                    _k_fn()
                except BaseException as exc:
                    _k_summary["failures"].append(_k_failure(_k_name, exc))
        _k_summary["passed"] = not _k_summary["failures"]
_k_sys.stdout.write({marker!r} + _k_json.dumps(_k_summary) + "\\n")
"""


def call_program(code: str) -> str:
    """The program the sandbox runs for one call: JSON args on stdin, JSON result on stdout."""
    return _CALL_HARNESS.format(code=code)


def program_for_tests(code: str, tests: str) -> str:
    """The program the sandbox runs to test a tool; it prints one summary line."""
    return _TEST_HARNESS.format(code=code, tests=tests, marker=SUMMARY_MARKER)


def tool_digest(code: str, tests: str) -> str:
    """Identifies a tool version's content: the same code and tests are the same version."""
    return hashlib.sha256(f"{code}\x00{tests}".encode()).hexdigest()


class TestOutcome(BaseModel):
    """What testing a tool version found; stored with the version as its ``test_result``."""

    __test__ = False  # not a pytest test class

    passed: bool
    tests: int = 0
    failures: list[dict[str, Any]] = Field(default_factory=list)
    reason: str | None = None
    """One line saying why it failed (None when it passed)."""
    duration_s: float = 0.0
    limit_hit: str | None = None


def outcome_of_tests(result: SandboxResult) -> TestOutcome:
    """Read the test harness's summary out of a sandbox run; any other ending is a failure."""
    summary: dict[str, Any] | None = None
    for line in reversed(result.stdout.splitlines()):
        if line.startswith(SUMMARY_MARKER):
            try:
                summary = json.loads(line.removeprefix(SUMMARY_MARKER))
            except json.JSONDecodeError:
                summary = None
            break
    limit = result.limit_hit.value if result.limit_hit else None
    if summary is None or not result.ok:
        if limit:
            reason = f"tests hit the sandbox's {limit} limit"
        else:
            tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
            reason = f"tests did not finish (exit status {result.exit_code}): {tail[:200]}"
        return TestOutcome(
            passed=False, reason=reason, duration_s=result.duration_s, limit_hit=limit
        )
    failures = list(summary.get("failures") or [])
    why: str | None = None
    if summary.get("error"):
        why = str(summary["error"])
    elif failures:
        first = failures[0]
        where = first.get("test", "?")
        line = f" line {first['line']}" if first.get("line") else ""
        why = f"{len(failures)} test(s) failed; first: {where}{line}: {first.get('error')}"
    return TestOutcome(
        passed=bool(summary.get("passed")) and why is None,
        tests=int(summary.get("tests") or 0),
        failures=failures,
        reason=why,
        duration_s=result.duration_s,
    )


def call_result(result: SandboxResult) -> dict[str, Any]:
    """The dict a tool call returned.

    Raises:
        ToolOutputError: the run failed, hit a limit (named) or printed no JSON object.
    """
    value = parse_json_output(result)
    if not isinstance(value, dict):
        raise ToolOutputError(f"tool returned {type(value).__name__}, not a JSON object")
    return value
