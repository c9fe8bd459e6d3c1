"""Tool harnesses (run here with a plain interpreter) and tool specs: no services needed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kafkaorg.sandbox import LimitHit, SandboxResult, ToolOutputError
from kafkaorg.spec import SpecError, load_spec, parse_spec_text, spec_to_json, validate_spec
from kafkaorg.tool_programs import call_program, call_result, outcome_of_tests, program_for_tests

TOOL = (
    "def run(args):\n"
    "    print('noise')  # goes to stderr, never into the result\n"
    "    return {'n': args['n'] * 2}\n"
)


def _python(program: str, stdin: str = "") -> SandboxResult:
    done = subprocess.run(
        [sys.executable, "-c", program], input=stdin, capture_output=True, text=True, timeout=30
    )
    return SandboxResult(
        exit_code=done.returncode,
        signal=None,
        duration_s=0.1,
        stdout=done.stdout,
        stderr=done.stderr,
        sandbox="plain python (unit test)",
    )


def test_call_program_reads_json_args_and_prints_only_the_result() -> None:
    result = _python(call_program(TOOL), json.dumps({"n": 21}))
    assert call_result(result) == {"n": 42}
    assert "noise" in result.stderr


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("def run(args):\n    return [1, 2]\n", "must return a dict"),
        ("def run(args):\n    return {'s': {1}}\n", "exit status 1"),
        ("def run(args):\n    raise RuntimeError('boom')\n", "boom"),
    ],
)
def test_a_bad_call_is_a_tool_output_error_with_the_reason(code: str, message: str) -> None:
    with pytest.raises(ToolOutputError, match=message):
        call_result(_python(call_program(code), "{}"))


def test_a_limit_hit_is_named() -> None:
    result = SandboxResult(
        exit_code=None,
        signal=9,
        duration_s=5.0,
        stdout="",
        stderr="",
        limit_hit=LimitHit.WALL_TIME,
        sandbox="x",
    )
    with pytest.raises(ToolOutputError, match="wall_time"):
        call_result(result)
    assert "wall_time" in (outcome_of_tests(result).reason or "")


def test_tests_program_counts_top_level_and_test_functions() -> None:
    tests = (
        "assert run({'n': 1}) == {'n': 2}\n\n"
        "def test_three():\n    assert run({'n': 3})['n'] == 6\n"
    )
    outcome = outcome_of_tests(_python(program_for_tests(TOOL, tests)))
    assert outcome.passed and outcome.tests == 2 and outcome.reason is None


def test_failing_tests_say_which_and_where() -> None:
    tests = (
        "def test_ok():\n    assert run({'n': 1})['n'] == 2\n\n"
        "def test_bad():\n    assert run({'n': 1})['n'] == 3, 'off by one'\n"
    )
    outcome = outcome_of_tests(_python(program_for_tests(TOOL, tests)))
    assert not outcome.passed
    assert outcome.reason and "test_bad" in outcome.reason and "off by one" in outcome.reason
    assert outcome.failures[0]["line"] == 5


def test_a_tool_without_run_fails_its_tests() -> None:
    outcome = outcome_of_tests(_python(program_for_tests("x = 1\n", "")))
    assert not outcome.passed and "run(args)" in (outcome.reason or "")


SPEC = """
org: acme
topics: [{name: in}, {name: out}]
policy: {tool_approval: human}
tools:
  - {name: double, code: "def run(args):\\n    return args\\n", tests: "assert run({}) == {}"}
agents:
  - {name: doubler, kind: tool, tool: double, subscribes: [in], publishes: [out], emit: x.doubled}
"""


def test_a_tool_spec_round_trips_as_json() -> None:
    spec = parse_spec_text(SPEC)
    assert spec.policy.tool_approval == "human"
    assert spec.tools[0].code and spec.agents[0].tool == "double"
    assert parse_spec_text(spec_to_json(spec)) == spec


def test_tool_agents_are_checked_against_declared_tools() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec_text(
            SPEC.replace("tool: double", "tool: triple").replace(
                "publishes: [out]", "publishes: []"
            )
        )
    assert any("unknown tool 'triple'" in p for p in info.value.problems)
    assert any("agents.0.publishes" in p for p in info.value.problems)
    with pytest.raises(SpecError) as info:
        parse_spec_text(SPEC.replace("kind: tool", "kind: echo"))
    assert any("only tool agents take a tool" in p for p in info.value.problems)


def test_a_tool_needs_exactly_one_source() -> None:
    with pytest.raises(SpecError, match="exactly one of 'code'"):
        validate_spec({"org": "acme", "tools": [{"name": "t"}]})
    with pytest.raises(SpecError, match="only read when loading a spec file"):
        validate_spec({"org": "acme", "tools": [{"name": "t", "file": "t.py"}]})


def test_files_are_resolved_relative_to_the_spec(tmp_path: Path) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "t.py").write_text("def run(args):\n    return {}\n")
    (tmp_path / "tools" / "t_tests.py").write_text("assert run({}) == {}\n")
    spec_file = tmp_path / "org.yaml"
    spec_file.write_text(
        "org: acme\ntools: [{name: t, file: tools/t.py, tests_file: tools/t_tests.py}]\n"
    )
    spec = load_spec(spec_file)
    assert spec.tools[0].code == "def run(args):\n    return {}\n"
    assert spec.tools[0].tests == "assert run({}) == {}\n" and spec.tools[0].file is None
    spec_file.write_text("org: acme\ntools: [{name: t, file: tools/missing.py}]\n")
    with pytest.raises(SpecError, match=r"tools\.0\.file: cannot read 'tools/missing\.py'"):
        load_spec(spec_file)


def test_the_demo_ships_a_tool_that_passes_its_tests() -> None:
    from kafkaorg.cli.demo import demo_spec

    spec = demo_spec()
    tool = spec.tools[0]
    assert tool.code and tool.tests
    assert outcome_of_tests(_python(program_for_tests(tool.code, tool.tests))).passed
    assert any(a.kind == "tool" and a.tool == tool.name for a in spec.agents)
