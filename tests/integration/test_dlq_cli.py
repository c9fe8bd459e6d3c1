"""``kafkaorg dlq list|redrive`` against a live org: real poison, real bridge, real agents."""

from __future__ import annotations

import asyncio
import json

import pytest

from kafkaorg.envelope import Record
from kafkaorg.kafka import Outgoing, produce_and_wait
from kafkaorg.names import dlq_topic, kafka_topic
from tests.support import Platform, assert_one_clear_line, echo_spec, raw_messages, task, unique_org
from tests.support import run_cli_async as kafkaorg

pytestmark = pytest.mark.integration


async def _agent_failed(platform: Platform, org: str, record: Record) -> None:
    """A DLQ entry exactly as AgentWorkflow publishes failed work: the envelope plus headers."""
    headers = (
        ("dlq.reason", b"agent-step-failed"),
        ("dlq.error", b"boom: the step failed"),
        ("dlq.agent", b"echo"),
    )
    await asyncio.to_thread(
        produce_and_wait, platform.producer, [Outgoing(dlq_topic(org), record, headers)]
    )


async def test_dlq_list_shows_poison_with_reasons_and_redrive_has_one_effect(
    platform: Platform,
) -> None:
    org = unique_org()
    await platform.start_org(echo_spec(org, partitions=1))
    processed = task(org, 1)
    await platform.send(org, "inbox", [processed])
    await platform.send_raw(org, "inbox", b"\x00\xffnot json at all")
    bad = processed.model_dump(mode="json") | {"id": "x2", "schema_version": "one"}
    await platform.send_raw(org, "inbox", json.dumps(bad).encode())
    too_large = json.dumps({"blob": "x" * (platform.settings.max_record_bytes + 10)}).encode()
    await platform.send_raw(org, "inbox", too_large)
    await platform.collect(org, "outbox", 1)
    await asyncio.to_thread(raw_messages, platform.settings, dlq_topic(org), 3)
    failed = task(org, 2)  # never processed: its step "failed"
    await _agent_failed(platform, org, failed)
    await _agent_failed(platform, org, processed)  # failed work whose id the agent has seen

    listed = await kafkaorg("dlq", "list", org, "--json")

    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)
    by_reason = {e["reason"]: e for e in entries}
    assert [e["reason"] for e in entries] == [
        "not-json",
        "bad-envelope",
        "too-large",
        "agent-step-failed",
        "agent-step-failed",
    ]
    for reason in ("not-json", "bad-envelope", "too-large"):
        entry = by_reason[reason]
        assert entry["topic"] == kafka_topic(org, "inbox")
        assert entry["partition"] == 0 and entry["offset"] in (1, 2, 3)
        assert entry["redrivable"] is False and entry["not_redrivable_because"]
        assert entry["when"]
    assert "schema_version" in by_reason["bad-envelope"]["error"]
    agent_entry = next(e for e in entries if e["id"] == failed.id)
    assert agent_entry["agent"] == "echo"
    assert agent_entry["error"] == "boom: the step failed"
    assert agent_entry["redrivable"] is True
    newest = await kafkaorg("dlq", "list", org, "--json", "--max", "2")
    assert [e["id"] for e in json.loads(newest.stdout)] == [failed.id, processed.id]

    # Poison cannot be redriven: the DLQ holds only a preview of it.
    refused = await kafkaorg("dlq", "redrive", org, "--id", by_reason["not-json"]["id"])
    assert_one_clear_line(refused, 2, "cannot redrive", "preview", "not-json")

    # Failed work goes back to its topic with its id and a redrive header, once per redrive.
    redriven = await kafkaorg("dlq", "redrive", org, "--id", failed.id)
    assert redriven.returncode == 0, redriven.stderr + redriven.stdout
    assert f"redriven {failed.id} → {org}.inbox" in redriven.stdout
    inbox = await asyncio.to_thread(
        raw_messages, platform.settings, kafka_topic(org, "inbox"), 5, 30.0
    )
    again = inbox[-1]
    assert Record.from_kafka_value(again.value()) == failed
    headers = dict(again.headers() or [])
    assert headers["kafkaorg.redrive"] == failed.id.encode()
    assert headers["kafkaorg.redrive.agents"] == b"echo"
    # A redrive is deliberate: the agent processes the record once more per DLQ entry (the
    # entry's id marks it past the dedup window), and a second redrive of the same entry is
    # dropped, so each entry has exactly one effect.
    twice = await kafkaorg("dlq", "redrive", org, "--id", failed.id, "--id", processed.id)
    assert twice.returncode == 0, twice.stderr + twice.stdout
    out = await platform.collect(org, "outbox", 3, settle=3.0)
    causes = sorted(c.record.causation_id or "" for c in out)
    assert causes == sorted([processed.id, processed.id, failed.id]), "one effect per entry"
    assert len({c.record.id for c in out}) == 3, "a redrive's output is a new record"

    # --all redrives what it can and names what it refuses.
    everything = await kafkaorg("dlq", "redrive", org, "--all", "--json")
    assert everything.returncode == 0, everything.stderr
    outcomes = json.loads(everything.stdout)
    assert sum(o["redriven"] for o in outcomes) == 2
    assert all(o["reason"] for o in outcomes if not o["redriven"])


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("list", "no-such-org-q7"), ("no DLQ topic", "no-such-org-q7.sys.dlq")),
        (("redrive", "no-such-org-q7", "--all"), ("no DLQ topic",)),
        (("list", "Bad_Org"), ("org name 'Bad_Org' is not valid",)),
    ],
)
async def test_unknown_orgs_are_bad_input(
    platform: Platform, args: tuple[str, ...], needles: tuple[str, ...]
) -> None:
    assert_one_clear_line(await kafkaorg("dlq", *args), 2, *needles)


async def test_redrive_needs_ids_or_all_and_known_ids(platform: Platform) -> None:
    org = unique_org()
    await platform.start_org(echo_spec(org, partitions=1))

    assert_one_clear_line(await kafkaorg("dlq", "redrive", org), 2, "--id ID", "--all")
    assert_one_clear_line(
        await kafkaorg("dlq", "redrive", org, "--id", "nope"), 2, "no record with id 'nope'"
    )


CALC = "def run(args):\n    return {'double': args['n'] * 2}\n"
CALC_FIXED = "def run(args):\n    return {'double': args.get('n', 0) * 2}\n"


def _calc_spec(org: str, code: str) -> dict[str, object]:
    return {
        "org": org,
        "topics": [{"name": "in", "partitions": 1}, {"name": "out", "partitions": 1}],
        "tools": [{"name": "calc", "code": code, "tests": "assert run({'n': 2}) == {'double': 4}"}],
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


async def test_work_a_really_failing_agent_dead_lettered_is_redriven_after_the_fix(
    platform: Platform,
) -> None:
    """Not hand-written DLQ entries: the tool agent's own failures, redriven once fixed."""
    from kafkaorg import client as service
    from kafkaorg.envelope import new_record
    from kafkaorg.spec import validate_spec

    org = unique_org()
    await platform.start_org(_calc_spec(org, CALC))
    good = [task(org, n) for n in (1, 2)]
    bad = [new_record(org=org, type="calc", source="user:test", payload={"x": i}) for i in (1, 2)]
    await platform.send(org, "in", [good[0], bad[0], good[1], bad[1]])
    first = await platform.collect(org, "out", 2, timeout=60)
    assert sorted(c.record.causation_id or "" for c in first) == sorted(r.id for r in good)
    dead = await asyncio.to_thread(raw_messages, platform.settings, dlq_topic(org), 2, 60)
    assert {dict(m.headers())["dlq.reason"] for m in dead} == {b"tool-call-failed"}
    assert all(b"tool calc v1" in dict(m.headers())["dlq.error"] for m in dead)
    report = await service.agent_report(platform.client, org, "runner")
    assert report.failed_reason is None, "one bad input does not fail the agent"

    fixed = await service.apply_spec(platform.client, validate_spec(_calc_spec(org, CALC_FIXED)))
    assert any("+ tool calc v2" in line for line in fixed.summary), fixed.summary
    redriven = await kafkaorg("dlq", "redrive", org, "--all", "--json")
    assert redriven.returncode == 0, redriven.stderr
    assert sorted(o["id"] for o in json.loads(redriven.stdout) if o["redriven"]) == sorted(
        r.id for r in bad
    )
    again = await kafkaorg("dlq", "redrive", org, "--all")  # the same entries: no new effect
    assert again.returncode == 0, again.stderr
    out = await platform.collect(org, "out", 4, timeout=60, settle=3.0)
    by_cause = {c.record.causation_id: c.record.payload for c in out}
    assert len(out) == 4, "each DLQ entry has one effect, however often it is redriven"
    assert {by_cause[r.id]["double"] for r in bad} == {0}
