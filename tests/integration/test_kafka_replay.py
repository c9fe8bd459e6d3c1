"""``kafkaorg replay``: deliberate re-delivery of a topic range to one agent, end to end.

Real bridge, worker, Kafka and Temporal: records go through an echo agent once
by the bridge, then again by replay runs, each run marked with its own id.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from kafkaorg.envelope import Record
from kafkaorg.names import kafka_topic
from tests.support import Platform, assert_one_clear_line, raw_messages, task, unique_org
from tests.support import run_cli_async as kafkaorg

pytestmark = pytest.mark.integration


def _spec(org: str) -> dict[str, Any]:
    return {
        "org": org,
        "topics": [
            {"name": "inbox", "class": "work", "partitions": 1},
            {"name": "outbox", "class": "work", "partitions": 1},
            {"name": "side", "class": "work", "partitions": 1},
        ],
        "agents": [
            {"name": "echo", "kind": "echo", "subscribes": ["inbox"], "publishes": ["outbox"]},
            {"name": "spare", "kind": "echo", "subscribes": ["side"], "publishes": ["outbox"]},
        ],
    }


async def _outbox(platform: Platform, org: str, count: int) -> list[tuple[Record, str | None]]:
    """``count`` records of the outbox with their ``kafkaorg.mark`` header (None if absent)."""
    messages = await asyncio.to_thread(
        raw_messages, platform.settings, kafka_topic(org, "outbox"), count, 90.0
    )
    out = []
    for m in messages:
        headers = dict(m.headers() or [])
        mark = headers.get("kafkaorg.mark")
        out.append((Record.from_kafka_value(m.value()), mark.decode() if mark else None))
    assert len(out) == count, f"expected {count} outputs, got {len(out)}"
    return out


async def _replay(*args: str) -> dict[str, Any]:
    result = await kafkaorg("replay", *args, "--json")
    assert result.returncode == 0, result.stderr + result.stdout
    outcome: dict[str, Any] = json.loads(result.stdout)
    return outcome


async def test_replay_redelivers_a_range_once_per_run_with_marked_outputs(
    platform: Platform,
) -> None:
    org = unique_org("rp")
    await platform.start_org(_spec(org))
    originals = [task(org, n) for n in range(3)]
    await platform.send(org, "inbox", originals)
    first = await _outbox(platform, org, 3)
    assert all(mark is None for _, mark in first)
    cause = {r.causation_id for r, _ in first}
    assert cause == {r.id for r in originals}

    # A replay from offset 0: every record once more, outputs new, marked with the run.
    one = await _replay(org, "inbox", "--to", "echo", "--from-offset", "0")
    assert one["records"] == 3 and one["signals"] == 1 and one["mark"] == f"replay:{one['run_id']}"
    after_one = await _outbox(platform, org, 6)
    replayed = [(r, m) for r, m in after_one[3:]]
    assert {m for _, m in replayed} == {f"replay:{one['run_id']}"}
    assert {r.causation_id for r, _ in replayed} == cause, "same causes as the originals"
    assert not {r.id for r, _ in replayed} & {r.id for r, _ in first}, "outputs get new ids"

    # The same range again is a second, deliberate replay: a fresh run id, a third set.
    two = await _replay(org, "inbox", "--to", "echo", "--from-offset", "0")
    assert two["run_id"] != one["run_id"] and two["records"] == 3
    after_two = await _outbox(platform, org, 9)
    assert {m for _, m in after_two[6:]} == {f"replay:{two['run_id']}"}
    assert len({r.id for r, _ in after_two}) == 9
    assert sorted(r.causation_id or "" for r, _ in after_two[6:]) == sorted(c or "" for c in cause)

    # --since (relative) with --until as an offset: the first two records only.
    three = await _replay(org, "inbox", "--to", "echo", "--since", "1h", "--until", "2")
    assert three["records"] == 2
    assert three["ranges"] == [{"partition": 0, "start": 0, "end": 2}]
    after_three = await _outbox(platform, org, 11)
    assert {m for _, m in after_three[9:]} == {f"replay:{three['run_id']}"}
    assert {r.causation_id for r, _ in after_three[9:]} == {originals[0].id, originals[1].id}

    # --since in ISO-8601, later than every record: nothing to replay, exit 0.
    future = await kafkaorg(
        "replay", org, "inbox", "--to", "echo", "--since", "2999-01-01T00:00:00Z"
    )
    assert future.returncode == 0, future.stderr
    assert "nothing to replay" in future.stdout
    past_end = await kafkaorg("replay", org, "inbox", "--to", "echo", "--from-offset", "1000")
    assert past_end.returncode == 0 and "nothing to replay" in past_end.stdout

    # A plain redelivery of an original (same id, no replay) is still absorbed by dedup.
    await platform.send(org, "inbox", [originals[0]])
    sentinel = task(org, 99)
    await platform.send(org, "inbox", [sentinel])
    final = await _outbox(platform, org, 12)
    assert final[11][0].causation_id == sentinel.id, "the redelivered original made no output"
    assert sum(r.causation_id == originals[0].id for r, _ in final) == 4  # 1 + three replays


async def test_replay_text_output_and_unsubscribed_agent_warning(platform: Platform) -> None:
    org = unique_org("rp")
    await platform.start_org(_spec(org))
    await platform.send(org, "inbox", [task(org, 1)])
    await _outbox(platform, org, 1)

    text = await kafkaorg("replay", org, "inbox", "--to", "echo", "--from-offset", "0")
    assert text.returncode == 0, text.stderr
    run_line = text.stdout.splitlines()[0]  # one line each, whatever the width
    assert run_line.startswith("replay ") and "mark replay:" in run_line
    assert "replayed 1 record(s) to echo in 1 signal(s)" in text.stdout
    await _outbox(platform, org, 2)

    # Feeding an agent a topic it does not subscribe to is allowed (a backfill), with a warning.
    warned = await kafkaorg("replay", org, "inbox", "--to", "spare", "--from-offset", "5")
    assert warned.returncode == 0, warned.stderr
    assert "warning: agent 'spare' does not subscribe to 'inbox'" in warned.stderr
    assert "nothing to replay" in warned.stdout


async def test_replay_refuses_bad_input(platform: Platform) -> None:
    org = unique_org("rp")
    await platform.start_org(_spec(org))
    retired = await kafkaorg("agent", "stop", org, "spare")
    assert retired.returncode == 0, retired.stderr + retired.stdout

    cases: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
        (("no-such-org-r1", "inbox", "--to", "echo", "--from-offset", "0"), ("unknown org",)),
        ((org, "nope", "--to", "echo", "--from-offset", "0"), ("unknown topic 'nope'",)),
        ((org, "inbox", "--to", "ghost", "--from-offset", "0"), ("unknown agent 'ghost'",)),
        ((org, "inbox", "--to", "spare", "--from-offset", "0"), ("'spare'", "retired")),
        ((org, "inbox", "--to", "echo"), ("--from-offset N or --since TIME",)),
        (
            (org, "inbox", "--to", "echo", "--from-offset", "0", "--since", "1h"),
            ("--from-offset N or --since TIME",),
        ),
        ((org, "inbox", "--to", "echo", "--since", "yesterday"), ("'yesterday' is not a time",)),
        ((org, "sys.dlq", "--to", "echo", "--from-offset", "0"), ("sys topics cannot",)),
        (
            (org, "inbox", "--to", "echo", "--from-offset", "0", "--partition", "7"),
            ("has no partition 7",),
        ),
        (("Bad_Org", "inbox", "--to", "echo", "--from-offset", "0"), ("not valid",)),
    ]
    for args, needles in cases:
        assert_one_clear_line(await kafkaorg("replay", *args), 2, *needles)
