"""The bridge's subscription snapshot never routes a record it is older than."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import yaml

from bridge.subscriptions import SubscriptionCache
from kafkaorg.names import agent_workflow_id
from tests.support import Platform, db_sessions, echo_spec, run_cli, task, unique_org
from workflows.agent import AgentWorkflow

pytestmark = pytest.mark.integration


def _agent_file(tmp_path: Path, name: str) -> str:
    path = tmp_path / f"{name}.yaml"
    spec = {"name": name, "kind": "echo", "subscribes": ["inbox"], "publishes": ["outbox"]}
    path.write_text(yaml.safe_dump(spec))
    return str(path)


async def test_a_snapshot_older_than_a_record_is_refreshed_before_routing_it(
    platform: Platform, tmp_path: Path
) -> None:
    org = unique_org()
    await platform.start_org(echo_spec(org))
    sessions = db_sessions(platform.settings)
    cache = SubscriptionCache(sessions, ttl_s=3600)  # never stale by age in this test
    assert (await cache.get())[(org, "inbox")] == ["echo"]

    created = run_cli("agent", "create", org, _agent_file(tmp_path, "late"))
    assert created.returncode == 0, created.stderr
    produced_at = time.time()
    # A record from before the snapshot: it is trusted, no query (so no "late" yet).
    assert (await cache.get(newest_record_at=produced_at - 3600))[(org, "inbox")] == ["echo"]
    # A record produced after the agent was created: the snapshot is refreshed first.
    assert (await cache.get(newest_record_at=produced_at))[(org, "inbox")] == ["echo", "late"]
    sessions.kw["bind"].dispose()


async def test_an_agent_created_just_before_a_record_receives_it(
    platform: Platform, tmp_path: Path
) -> None:
    org = unique_org()
    await platform.start_org(echo_spec(org, partitions=1))
    # Keep the bridge's snapshot of this org fresh, so only a record-time refresh helps.
    warm = task(org, 0)
    await platform.send(org, "inbox", [warm])
    await platform.collect(org, "outbox", 1, timeout=60)
    for n in range(1, 4):
        name = f"late-{n}"
        created = run_cli("agent", "create", org, _agent_file(tmp_path, name))
        assert created.returncode == 0, created.stderr
        await platform.send(org, "inbox", [task(org, n)])
        handle = platform.client.get_workflow_handle_for(
            AgentWorkflow.run, agent_workflow_id(org, name)
        )
        for _ in range(150):
            status = await handle.query(AgentWorkflow.status)
            if status.processed:
                break
            await asyncio.sleep(0.2)
        assert status.processed == 1, f"{name} never got the record sent right after it"
