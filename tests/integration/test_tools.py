"""Tools without a model: registered, tested in the sandbox, called by a ``tool`` agent.

Everything is real: the OrgWorkflow tests each tool version in nsjail through the
sandbox worker, PostgreSQL holds the versions, the tool agent runs the current one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from kafkaorg.db import Org
from kafkaorg.db.models import Tool, ToolVersion
from kafkaorg.names import dlq_topic
from kafkaorg.spec import load_spec
from tests.support import Platform, db_sessions, raw_messages, run_cli, task, unique_org

pytestmark = pytest.mark.integration

CODE_V1 = """\
def run(args):
    mode = args.get("mode")
    if mode == "set":
        return {"bad": {1, 2}}  # not JSON
    if mode == "spin":
        while True:
            pass
    return {"double": args["n"] * 2}
"""
TESTS = """\
assert run({"n": 2})["double"] == 4

def test_zero():
    assert run({"n": 0})["double"] == 0
"""
CODE_V2 = CODE_V1.replace('{"double": args["n"] * 2}', '{"double": args["n"] * 2, "v": 2}')


def _spec(org: str, code: str = CODE_V1, tests: str = TESTS, approval: str = "auto") -> Any:
    return {
        "org": org,
        "topics": [{"name": "in", "partitions": 1}, {"name": "out", "partitions": 1}],
        "policy": {"tool_approval": approval},
        "tools": [{"name": "calc", "description": "doubles n", "code": code, "tests": tests}],
        "agents": [
            {
                "name": "runner",
                "kind": "tool",
                "tool": "calc",
                "subscribes": ["in"],
                "publishes": ["out"],
            }
        ],
    }


def _versions(platform: Platform, org: str) -> tuple[int | None, list[ToolVersion]]:
    with db_sessions(platform.settings)() as session:
        tool = session.scalars(
            select(Tool).join(Org).where(Org.name == org, Tool.name == "calc")
        ).one()
        rows = session.scalars(
            select(ToolVersion).where(ToolVersion.tool_id == tool.id).order_by(ToolVersion.version)
        ).all()
        return tool.current_version, list(rows)


def _dlq(platform: Platform, org: str, count: int) -> list[dict[str, str]]:
    messages = raw_messages(platform.settings, dlq_topic(org), count, timeout=60)
    out = []
    for m in messages:
        headers = {k: (v or b"").decode() for k, v in (m.headers() or [])}
        headers["id"] = json.loads(m.value())["id"]
        out.append(headers)
    return out


async def _audit(platform: Platform, org: str, type_: str, count: int = 1) -> list[Any]:
    found = await platform.collect(org, "sys.audit", 100, timeout=15)
    matching = [c.record for c in found if c.record.type == type_]
    assert len(matching) >= count, [c.record.type for c in found]
    return matching


async def test_a_tested_tool_is_registered_called_and_versioned(
    platform: Platform, tmp_path: Path
) -> None:
    org = unique_org()
    await platform.start_org(_spec(org))
    current, versions = _versions(platform, org)
    assert current == 1
    assert [(v.version, v.status) for v in versions] == [(1, "active")]
    assert versions[0].test_result and versions[0].test_result["passed"] is True
    assert versions[0].test_result["tests"] == 2
    registered = await _audit(platform, org, "tool.registered")
    assert registered[0].payload["version"] == 1

    good = [task(org, 1), task(org, 5)]
    await platform.send(org, "in", good)
    out = await platform.collect(org, "out", 2)
    by_cause = {c.record.causation_id: c.record for c in out}
    assert set(by_cause) == {r.id for r in good}
    assert by_cause[good[1].id].payload == {"double": 10}
    assert by_cause[good[1].id].type == "task.request.result"
    assert by_cause[good[1].id].source == "agent:runner"

    # Bad inputs go to the DLQ with the sandbox's reason; the agent keeps working.
    not_json = task(org, 7)
    not_json.payload["mode"] = "set"
    spin = task(org, 8)
    spin.payload["mode"] = "spin"
    await platform.send(org, "in", [not_json, spin])
    dead = {d["id"]: d for d in _dlq(platform, org, 2)}
    assert set(dead) == {not_json.id, spin.id}
    assert dead[not_json.id]["dlq.reason"] == "tool-call-failed"
    assert "exit status 1" in dead[not_json.id]["dlq.error"]
    assert "not JSON serializable" in dead[not_json.id]["dlq.error"]
    assert any(f"limit {name}" in dead[spin.id]["dlq.error"] for name in ("wall_time", "cpu_time"))

    # A changed tool is a new version, current once its tests pass; version 1 is untouched.
    spec_file = tmp_path / "org.yaml"
    spec_file.write_text(yaml.safe_dump(_spec(org, code=CODE_V2)))
    applied = run_cli("org", "apply", str(spec_file), "--json")
    assert applied.returncode == 0, applied.stderr
    assert "+ tool calc v2 (active)" in json.loads(applied.stdout)["summary"]
    current, versions = _versions(platform, org)
    assert current == 2
    assert [(v.version, v.status) for v in versions] == [(1, "active"), (2, "active")]
    assert versions[0].code == CODE_V1 and versions[1].code == CODE_V2
    again = run_cli("org", "apply", str(spec_file), "--json")
    assert json.loads(again.stdout)["changed"] is False
    assert len(_versions(platform, org)[1]) == 2

    later = task(org, 3)
    await platform.send(org, "in", [later])
    out = await platform.collect(org, "out", 3)
    result = next(c.record for c in out if c.record.causation_id == later.id)
    assert result.payload == {"double": 6, "v": 2}

    listed = run_cli("tool", "list", org, "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == [
        {
            "tool": "calc",
            "current_version": 2,
            "latest_version": 2,
            "latest_status": "active",
            "description": "doubles n",
            "reason": None,
        }
    ]


async def test_a_tool_whose_tests_fail_is_not_current(platform: Platform) -> None:
    org = unique_org()
    await platform.start_org(_spec(org, tests=TESTS + "\nassert run({'n': 1}) == {'double': 3}\n"))
    current, versions = _versions(platform, org)
    assert current is None
    assert [(v.version, v.status) for v in versions] == [(1, "failed")]
    failed = await _audit(platform, org, "tool.failed")
    reason = failed[0].payload["reason"]
    assert "tests.py line 6" in reason and "AssertionError" in reason

    shown = run_cli("tool", "show", org, "calc", "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["current_version"] is None
    assert data["versions"][0]["test_result"]["reason"] == reason
    assert reason in run_cli("tool", "show", org, "calc").stdout

    record = task(org, 1)
    await platform.send(org, "in", [record])
    dead = _dlq(platform, org, 1)
    assert dead[0]["id"] == record.id and dead[0]["dlq.reason"] == "tool-unavailable"
    assert "no active version" in dead[0]["dlq.error"] and "failed" in dead[0]["dlq.error"]


async def test_human_approval_gates_a_tool_until_approved(platform: Platform) -> None:
    org = unique_org()
    await platform.start_org(_spec(org, approval="human"))
    current, versions = _versions(platform, org)
    assert current is None
    assert [(v.version, v.status) for v in versions] == [(1, "pending_approval")]

    waiting = task(org, 1)
    await platform.send(org, "in", [waiting])
    dead = _dlq(platform, org, 1)
    assert dead[0]["id"] == waiting.id
    assert "pending_approval" in dead[0]["dlq.error"]

    wrong = run_cli("tool", "approve", org, "calc", "2")
    assert wrong.returncode == 2 and "no version 2" in wrong.stderr
    approved = run_cli("tool", "approve", org, "calc", "1")
    assert approved.returncode == 0, approved.stderr
    assert "calc v1 is active" in approved.stdout
    assert _versions(platform, org)[0] == 1
    twice = run_cli("tool", "approve", org, "calc", "1")
    assert twice.returncode == 2 and "not pending approval" in twice.stderr
    await _audit(platform, org, "tool.approved")

    record = task(org, 21)
    await platform.send(org, "in", [record])
    out = await platform.collect(org, "out", 1)
    assert out[0].record.causation_id == record.id
    assert out[0].record.payload == {"double": 42}


def test_the_demo_spec_resolves_its_tool_files() -> None:
    root = Path(__file__).resolve().parents[2] / "kafkaorg" / "examples"
    spec = load_spec(root / "demo.yaml")
    assert spec.tools[0].code and spec.tools[0].file is None
