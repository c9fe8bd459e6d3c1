"""Rolling a tool back: an earlier tested version is current again; versions never change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.integration.test_tools import CODE_V2, TESTS, _audit, _spec, _versions
from tests.support import Platform, assert_one_clear_line, run_cli, task, unique_org

pytestmark = pytest.mark.integration

BROKEN_V3_TESTS = TESTS + "\nassert run({'n': 1}) == {'double': 3}\n"


async def test_rollback_makes_an_earlier_version_current_and_refuses_untested_ones(
    platform: Platform, tmp_path: Path
) -> None:
    org = unique_org()
    await platform.start_org(_spec(org))
    spec_file = tmp_path / "org.yaml"
    spec_file.write_text(yaml.safe_dump(_spec(org, code=CODE_V2)))
    assert run_cli("org", "apply", str(spec_file)).returncode == 0
    spec_file.write_text(
        yaml.safe_dump(_spec(org, code=CODE_V2 + "\n# v3\n", tests=BROKEN_V3_TESTS))
    )
    assert run_cli("org", "apply", str(spec_file)).returncode == 0
    current, versions = _versions(platform, org)
    assert current == 2
    assert [(v.version, v.status) for v in versions] == [
        (1, "active"),
        (2, "active"),
        (3, "failed"),
    ]

    rolled = run_cli("tool", "rollback", org, "calc", "1", "--json")
    assert rolled.returncode == 0, rolled.stderr
    assert json.loads(rolled.stdout) == {
        "changed": True,
        "summary": ["tool calc is at v1 (was v2)"],
        "pending_approval": None,
    }
    assert _versions(platform, org)[0] == 1
    audit = await _audit(platform, org, "tool.rolled_back")
    assert audit[0].payload == {
        "tool": "calc",
        "version": 1,
        "previous_version": 2,
        "by": "user:cli",
    }

    # The tool agent now runs version 1's code (no "v" field in its answer).
    record = task(org, 4)
    await platform.send(org, "in", [record])
    out = await platform.collect(org, "out", 1)
    assert out[0].record.causation_id == record.id
    assert out[0].record.payload == {"double": 8}

    # A version that failed its tests, or one that does not exist, cannot be current.
    assert_one_clear_line(run_cli("tool", "rollback", org, "calc", "3"), 2, "failed")
    assert_one_clear_line(run_cli("tool", "rollback", org, "calc", "9"), 2, "no version 9")
    assert _versions(platform, org)[0] == 1
    # Rolling forward again is a rollback too.
    forward = run_cli("tool", "rollback", org, "calc", "2", "--json")
    assert json.loads(forward.stdout)["summary"] == ["tool calc is at v2 (was v1)"]
    assert _versions(platform, org)[0] == 2
    # Asking for the version that is already current changes nothing.
    same = run_cli("tool", "rollback", org, "calc", "2", "--json")
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout) == {
        "changed": False,
        "summary": ["tool calc is at v2 (was v2)"],
        "pending_approval": None,
    }


async def test_an_unapproved_version_cannot_be_rolled_back_to(platform: Platform) -> None:
    org = unique_org()
    await platform.start_org(_spec(org, approval="human"))
    current, versions = _versions(platform, org)
    assert current is None
    assert [(v.version, v.status) for v in versions] == [(1, "pending_approval")]
    assert_one_clear_line(
        run_cli("tool", "rollback", org, "calc", "1"), 2, "pending_approval", "approved"
    )
    assert_one_clear_line(
        run_cli("tool", "rollback", org, "calc", "1", "--as", "agent:planner"), 2, "only people"
    )
    assert _versions(platform, org)[0] is None
    # Once a person approves it, it is a version like any other.
    assert run_cli("tool", "approve", org, "calc", "1").returncode == 0
    assert run_cli("tool", "rollback", org, "calc", "1").returncode == 0
    assert _versions(platform, org)[0] == 1
