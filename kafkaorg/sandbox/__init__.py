"""Running code that agents write: one fresh nsjail jail per run.

Public surface: a :class:`SandboxPolicy` (limits), :func:`run_in_sandbox`
(one run → :class:`SandboxResult`), :func:`parse_json_output` (tools speak
JSON on stdin/stdout), :func:`jailed_program` (the same jail for a program
whose stdio the caller drives: a stdio MCP server) and
:func:`detect_capabilities` (what this machine offers a jail). The activity,
the ``kafkaorg sandbox`` commands and the benchmark all run code through
these, so they all get the same jail.
"""

from kafkaorg.sandbox._capabilities import (
    CgroupStatus,
    SandboxCapabilities,
    detect_capabilities,
    host_capabilities,
)
from kafkaorg.sandbox._policy import LimitHit, SandboxPolicy, SandboxResult
from kafkaorg.sandbox._program import JailedProgram, ProgramEnding, jailed_program
from kafkaorg.sandbox._runner import (
    SandboxInputError,
    SandboxUnavailableError,
    ToolOutputError,
    parse_json_output,
    run_in_sandbox,
)

__all__ = [
    "CgroupStatus",
    "JailedProgram",
    "LimitHit",
    "ProgramEnding",
    "SandboxCapabilities",
    "SandboxInputError",
    "SandboxPolicy",
    "SandboxResult",
    "SandboxUnavailableError",
    "ToolOutputError",
    "detect_capabilities",
    "host_capabilities",
    "jailed_program",
    "parse_json_output",
    "run_in_sandbox",
]
