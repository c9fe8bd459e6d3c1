"""Large payloads by reference: a 20 MB payload through rule → echo, byte-identical at the end.

Kafka's record limit (1 MiB) stays as it is; the payload is stored once in PostgreSQL
and every record carries its hash and size. Workflow histories stay small.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import JsonValue
from sqlalchemy import func, select

from kafkaorg.db.models import Org, PayloadBlob
from kafkaorg.names import agent_workflow_id, dlq_topic
from kafkaorg.payloads import longest_retention, payload_bytes, resolve
from kafkaorg.records import send_records
from tests.support import (
    Platform,
    assert_one_clear_line,
    db_sessions,
    raw_messages,
    unique_org,
)
from tests.support import run_cli_async as kafkaorg

pytestmark = pytest.mark.integration

PAYLOAD_MB = 20


def _spec(org: str) -> dict[str, Any]:
    return {
        "org": org,
        "topics": [{"name": "inbox"}, {"name": "middle"}, {"name": "outbox"}],
        "agents": [
            {
                "name": "copier",
                "kind": "rule",
                "subscribes": ["inbox"],
                "publishes": ["middle"],
                "rules": [{"on": "bulk", "emit": "bulk.copied", "to": "middle"}],
            },
            {"name": "echo", "kind": "echo", "subscribes": ["middle"], "publishes": ["outbox"]},
        ],
    }


async def test_a_20_mb_payload_goes_through_rule_and_echo_byte_identical(
    platform: Platform, tmp_path: Path
) -> None:
    org = unique_org("big")
    await platform.start_org(_spec(org))
    # Not repetitive, so nothing on the way could shrink it by accident.
    chunk = hashlib.sha256(org.encode()).hexdigest()
    payload = {
        "blob": "".join(
            hashlib.sha256(f"{chunk}{i}".encode()).hexdigest()
            for i in range(PAYLOAD_MB * 1024 * 1024 // 64)
        ),
        "n": 7,
    }
    source = tmp_path / "payload.json"
    source.write_text(json.dumps(payload))

    sent = await kafkaorg("send", org, "inbox", "--type", "bulk", "--payload", f"@{source}")
    assert sent.returncode == 0, sent.stderr

    outputs = await platform.collect(org, "outbox", 1, timeout=120, settle=1.0)
    (out,) = [c.record for c in outputs]
    assert out.type == "bulk.copied" and out.source == "agent:echo" and out.hops == 2
    assert out.payload == {} and out.payload_ref is not None
    assert out.payload_ref.size > PAYLOAD_MB * 1024 * 1024
    with db_sessions(platform.settings)() as session:
        resolved = resolve(session, out)
        blobs = session.scalar(
            select(func.count())
            .select_from(PayloadBlob)
            .join(Org, PayloadBlob.org_id == Org.id)
            .where(Org.name == org)
        )
    expected = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    assert payload_bytes(resolved) == expected  # byte for byte
    assert blobs == 1  # sent, copied and echoed: one stored payload

    for agent in ("copier", "echo"):
        handle = platform.client.get_workflow_handle(agent_workflow_id(org, agent))
        history = await handle.fetch_history()
        size = sum(e.ByteSize() for e in history.events)
        assert size < 200_000, f"{agent}'s history is {size} bytes"

    # tail shows the payload as it was sent.
    tailed = await kafkaorg("tail", org, "outbox", "--from-beginning", "--json")
    assert tailed.returncode == 0, tailed.stderr
    assert json.loads(tailed.stdout.splitlines()[0])["payload"] == payload


async def test_a_payload_file_that_cannot_be_read_is_one_clear_line(tmp_path: Path) -> None:
    missing = await kafkaorg("send", "any-org", "inbox", "--type", "x", "--payload", "@/nope.json")
    assert_one_clear_line(missing, 2, "--payload @/nope.json", "cannot read")
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": ')
    result = await kafkaorg("send", "any-org", "inbox", "--type", "x", "--payload", f"@{bad}")
    assert_one_clear_line(result, 2, f"--payload @{bad} is not JSON")


async def test_payloads_unreferenced_past_retention_are_collected(platform: Platform) -> None:
    org = unique_org("big")
    await platform.start_org(_spec(org))
    with db_sessions(platform.settings)() as session:
        org_id = session.scalar(select(Org.id).where(Org.name == org))
        old = datetime.now(UTC) - longest_retention() - timedelta(days=1)
        for digest, when in (("a" * 64, old), ("b" * 64, datetime.now(UTC))):
            session.add(
                PayloadBlob(org_id=org_id, sha256=digest, size=2, data=b"{}", referenced_at=when)
            )
        session.commit()

    result = await kafkaorg("db", "collect-payloads")

    assert result.returncode == 0, result.stderr
    assert "deleted" in result.stdout
    with db_sessions(platform.settings)() as session:
        left = session.scalars(select(PayloadBlob.sha256).where(PayloadBlob.org_id == org_id))
        assert list(left) == ["b" * 64]


async def test_a_tool_agent_runs_on_a_payload_stored_by_reference(platform: Platform) -> None:
    org = unique_org("big")
    code = "def run(args):\n    return {'keys': len(args), 'blob': len(args.get('blob', ''))}\n"
    await platform.start_org(
        {
            "org": org,
            "tools": [{"name": "size", "code": code}],
            "topics": [{"name": "inbox"}, {"name": "outbox"}],
            "agents": [
                {
                    "name": "sizer",
                    "kind": "tool",
                    "tool": "size",
                    "subscribes": ["inbox"],
                    "publishes": ["outbox"],
                }
            ],
        }
    )
    size = platform.settings.payload_ref_bytes + 1
    big: dict[str, JsonValue] = {"blob": "z" * size}
    (sent,) = await asyncio.to_thread(
        send_records, platform.settings, org, "inbox", type="bulk", payload=big
    )
    assert sent.payload_ref is not None, "the input travels by reference"
    await asyncio.to_thread(
        send_records, platform.settings, org, "inbox", type="bulk", payload={"a": 1, "b": 2}
    )

    outputs = await platform.collect(org, "outbox", 2, settle=1.0)
    # The jail read the whole payload from PostgreSQL, not an empty object.
    assert sorted((c.record.payload["keys"], c.record.payload["blob"]) for c in outputs) == [
        (1, size),
        (2, 0),
    ]
    assert not await asyncio.to_thread(raw_messages, platform.settings, dlq_topic(org), 1, 3.0)
