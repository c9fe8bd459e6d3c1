"""Crashes and poison: nothing lost, nothing processed twice, bad records in the DLQ."""

from __future__ import annotations

import asyncio
import json

import pytest

from kafkaorg.names import dlq_topic
from tests.support import Platform, echo_spec, raw_messages, task, unique_org

pytestmark = pytest.mark.integration


async def test_worker_and_bridge_killed_mid_stream_lose_nothing(platform: Platform) -> None:
    org = unique_org()
    await platform.start_org(echo_spec(org, partitions=3))
    sent = [task(org, n, correlation_id=f"c{n % 7}") for n in range(300)]
    await platform.send(org, "inbox", sent[:150])
    # Wait until the stream is flowing, then SIGKILL both processes in the middle of it.
    first = await platform.collect(org, "outbox", 20, timeout=60)
    assert len(first) >= 20
    platform.worker.restart_after_kill()
    await platform.send(org, "inbox", sent[150:])
    platform.bridge.restart_after_kill()

    out = await platform.collect(org, "outbox", 300, timeout=180, settle=3.0)

    distinct_inputs = {c.record.causation_id for c in out}
    assert distinct_inputs == {r.id for r in sent}, "every input has an output"
    ids = [c.record.id for c in out]
    # A step retried after the kill may republish, but only with the same deterministic ids.
    assert len(set(ids)) == 300
    duplicates = len(ids) - len(set(ids))
    print(f"restart test: {len(ids)} outputs, {duplicates} republished duplicate(s)")


async def test_poison_records_go_to_dlq_while_good_records_flow(platform: Platform) -> None:
    org = unique_org()
    await platform.start_org(echo_spec(org, partitions=1))
    good_before, good_after = task(org, 1), task(org, 2)
    await platform.send(org, "inbox", [good_before])
    await platform.send_raw(org, "inbox", b"\x00\xffnot json at all")
    bad_envelope = good_before.model_dump(mode="json") | {"id": "x2", "schema_version": "one"}
    await platform.send_raw(org, "inbox", json.dumps(bad_envelope).encode())
    too_large = json.dumps({"blob": "x" * (platform.settings.max_record_bytes + 10)}).encode()
    await platform.send_raw(org, "inbox", too_large)
    wrong_org = task("other-org", 3).model_dump_json().encode()
    await platform.send_raw(org, "inbox", wrong_org)
    await platform.send(org, "inbox", [good_after])

    out = await platform.collect(org, "outbox", 2, settle=2.0)
    dlq = await asyncio.to_thread(raw_messages, platform.settings, dlq_topic(org), 4)

    assert sorted(c.record.causation_id or "" for c in out) == sorted(
        [good_before.id, good_after.id]
    )
    reasons = {}
    for message in dlq:
        headers = dict(message.headers() or [])
        body = json.loads(message.value())
        assert body["payload"]["topic"] == f"{org}.inbox"
        assert headers["dlq.topic"] == f"{org}.inbox".encode()
        reasons[body["payload"]["offset"]] = (
            headers["dlq.reason"].decode(),
            body["payload"]["error"],
        )
    assert [reasons[o][0] for o in sorted(reasons)] == [
        "not-json",
        "bad-envelope",
        "too-large",
        "wrong-org",
    ]
    assert "schema_version" in reasons[2][1]
