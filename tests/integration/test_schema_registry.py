"""The schema registry end to end: specs, the CLI, the record path, llm agents, Confluent clients.

Every check runs against the real bridge, workers, Kafka and PostgreSQL; the one
stand-in is the scripted model of the llm test.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from kafkaorg.config import Settings
from kafkaorg.kafka import client_config
from kafkaorg.names import audit_topic, dlq_topic, kafka_topic
from kafkaorg.schema_registry import store
from tests.browser import start_console
from tests.llm_server import ScriptedLLM, ScriptedReply, tool_call, tool_results
from tests.support import Platform, assert_one_clear_line, raw_messages, run_cli, task, unique_org
from tests.support import run_cli_async as kafkaorg

pytestmark = pytest.mark.integration

CONSOLE_PORT = 18243

ORDER_V1: dict[str, Any] = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}},
    "required": ["id"],
}
ORDER_V2 = {**ORDER_V1, "properties": {**ORDER_V1["properties"], "note": {"type": "string"}}}
ORDER_BREAKING = {
    "type": "object",
    "properties": {"id": {"type": "integer"}, "sku": {"type": "string"}},
    "required": ["id", "sku"],
}
SEEN: dict[str, Any] = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "qty": {"type": "integer"}},
    "required": ["id", "qty"],
    "additionalProperties": False,
}


def _shop(org: str, **extra: Any) -> dict[str, Any]:
    return {
        "org": org,
        "schemas": [
            {"type": "order.created", "schema": ORDER_V1},
            {"type": "order.seen", "schema": SEEN},
        ],
        "topics": [
            {"name": "orders", "partitions": 1, "types": ["order.created"]},
            {"name": "seen", "partitions": 1},
        ],
        "agents": [
            {
                "name": "relay",
                "kind": "rule",
                "subscribes": ["orders"],
                "publishes": ["seen"],
                "rules": [
                    {
                        "on": "order.created",
                        "emit": "order.seen",
                        "to": "seen",
                        "map": {"id": "$.payload.id", "qty": "$.payload.qty"},
                    }
                ],
            }
        ],
        **extra,
    }


def _order(org: str, payload: dict[str, Any], type_: str = "order.created") -> Any:
    record = task(org, 0, type_=type_)
    return record.model_copy(update={"payload": payload})


def _dlq(settings: Settings, org: str, count: int) -> list[dict[str, Any]]:
    """The org's DLQ entries as (reason, error, agent, payload) dicts, in order."""
    out = []
    for m in raw_messages(settings, dlq_topic(org), count, timeout=60):
        headers = {k: (v or b"").decode() for k, v in m.headers() or []}
        value = json.loads(m.value())
        reason = headers.get("dlq.reason")
        out.append(
            {
                "reason": reason,
                "error": headers.get("dlq.error"),
                "agent": headers.get("dlq.agent", ""),
                "type": value["type"],
                "payload": value["payload"],
                "intended": headers.get("dlq.intended_topic"),
            }
        )
    return out


async def _settle_caches(settings: Settings) -> None:
    """Workers refresh their copy of the schemas at most this often (the bridge sooner)."""
    await asyncio.sleep(settings.schema_cache_ttl_s + 0.5)


async def test_spec_schemas_guard_the_record_path(platform: Platform) -> None:
    org = unique_org("sch")
    await platform.start_org(_shop(org))
    await _settle_caches(platform.settings)
    good = _order(org, {"id": "a1", "qty": 2})
    wrong_field = _order(org, {"id": 7})
    wrong_type = _order(org, {"id": "x"}, type_="order.other")
    output_breaks = _order(org, {"id": "a2"})  # the rule maps a missing qty: null
    await platform.send(org, "orders", [good, wrong_field, wrong_type, output_breaks])

    seen = await platform.collect(org, "seen", 1, settle=2.0)
    entries = await asyncio.to_thread(_dlq, platform.settings, org, 3)

    assert [(c.record.type, c.record.payload) for c in seen] == [
        ("order.seen", {"id": "a1", "qty": 2})
    ]
    assert seen[0].record.schema_version == 1  # stamped with the version it was checked by
    assert sorted((e["reason"], e["agent"]) for e in entries) == [
        ("schema-invalid", ""),  # the bridge: a payload its type's schema refuses
        ("schema-invalid", "relay"),  # the agent: an output its type's schema refuses
        ("schema-wrong-topic", ""),
    ]
    refused_input = next(e for e in entries if e["reason"] == "schema-invalid" and not e["agent"])
    assert refused_input["type"] == "kafkaorg.dead-letter"
    assert refused_input["payload"]["error"] == (
        "order.created v1: payload $.id: 7 is not of type 'string'"
    )
    assert refused_input["payload"]["topic"] == kafka_topic(org, "orders")
    wrong_topic = next(e for e in entries if e["reason"] == "schema-wrong-topic")
    assert wrong_topic["payload"]["error"] == (
        "topic 'orders' carries order.created, not 'order.other'"
    )
    output = next(e for e in entries if e["agent"] == "relay")
    assert output["reason"] == "schema-invalid"
    assert output["error"] == "order.seen v1: payload $.qty: None is not of type 'integer'"
    assert output["type"] == "order.seen" and output["intended"] == kafka_topic(org, "seen")

    listed = await kafkaorg("schema", "list", org, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(t["record_type"], t["latest_version"]) for t in json.loads(listed.stdout)] == [
        ("order.created", 1),
        ("order.seen", 1),
    ]


async def test_schema_cli_registers_checks_and_reports_what_breaks(
    platform: Platform, tmp_path: Path
) -> None:
    org = unique_org("sch")
    await platform.start_org(_shop(org))
    files = {}
    for name, doc in (("v2", ORDER_V2), ("breaking", ORDER_BREAKING), ("v1", ORDER_V1)):
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(doc))
    (tmp_path / "invalid.json").write_text('{"type": "text"}')

    ok = await kafkaorg("schema", "check", org, "order.created", str(files["v2"]))
    assert ok.returncode == 0 and "BACKWARD compatible with version 1" in ok.stdout, ok.stderr
    refused = await kafkaorg("schema", "check", org, "order.created", str(files["breaking"]))
    assert refused.returncode == 2, refused.stderr
    assert refused.stdout.splitlines()[1:] == [
        "  backward: $.sku: field made required (records without it were valid)",
        "  backward: $.id: type narrowed from string to integer (string values would be refused)",
    ]
    report = await kafkaorg(
        "schema", "check", org, "order.created", str(files["breaking"]), "--json"
    )
    assert report.returncode == 2
    assert [b["path"] for b in json.loads(report.stdout)["breakages"]] == ["$.sku", "$.id"]
    forced = await kafkaorg("schema", "register", org, "order.created", str(files["breaking"]))
    assert forced.returncode == 2 and "field made required" in forced.stderr
    assert "Traceback" not in forced.stderr

    registered = await kafkaorg(
        "schema", "register", org, "order.created", str(files["v2"]), "--json"
    )
    assert registered.returncode == 0, registered.stderr
    body = json.loads(registered.stdout)
    assert (body["created"], body["version"]["version"]) == (True, 2)
    again = await kafkaorg("schema", "register", org, "order.created", str(files["v1"]))
    assert again.returncode == 0 and "v1: unchanged" in again.stdout, again.stdout
    shown = await kafkaorg("schema", "show", org, "order.created", "--version", "1", "--json")
    assert json.loads(shown.stdout)["json_schema"] == ORDER_V1
    none_mode = await kafkaorg(
        "schema", "register", org, "order.created", str(files["breaking"]),
        "--compatibility", "none",
    )  # fmt: skip
    assert none_mode.returncode == 0 and "v3: registered" in none_mode.stdout, none_mode.stderr

    # Bad input: one clear line each, exit 2.
    assert_one_clear_line(
        await kafkaorg("schema", "register", org, "order.created", str(tmp_path / "invalid.json")),
        2,
        "not a valid JSON Schema",
    )
    assert_one_clear_line(
        await kafkaorg("schema", "show", org, "order.created", "--version", "9"), 2, "no version 9"
    )
    assert_one_clear_line(await kafkaorg("schema", "list", unique_org("none")), 2, "does not exist")
    assert_one_clear_line(
        await kafkaorg("schema", "show", org, "Bad Type"), 2, "record type 'Bad Type'"
    )

    announced = await asyncio.to_thread(raw_messages, platform.settings, audit_topic(org), 200, 10)
    registrations = [
        json.loads(m.value())["payload"]
        for m in announced
        if json.loads(m.value())["type"] == store.SCHEMA_REGISTERED_RECORD_TYPE
    ]
    # A repeated registration announces its version again, under the same record id.
    assert [(r["record_type"], r["version"], r["created"]) for r in registrations] == [
        ("order.created", 1, True),
        ("order.seen", 1, True),
        ("order.created", 2, True),
        ("order.created", 1, False),
        ("order.created", 3, True),
    ]
    ids = [json.loads(m.value())["id"] for m in announced if b"schema.registered" in m.value()]
    assert ids[0] == ids[3] and len(set(ids)) == 4


async def test_concurrent_registrations_queue_up_and_never_share_a_version(
    platform: Platform,
) -> None:
    org = unique_org("sch")
    await platform.start_org(_shop(org))
    settings = platform.settings
    # Eight different optional fields at once, and the same new schema eight times.
    variants = [
        {**ORDER_V1, "properties": {**ORDER_V1["properties"], f"f{i}": {"type": "string"}}}
        for i in range(8)
    ]
    same = {**SEEN, "properties": {**SEEN["properties"], "note": {"type": "string"}}}

    results = await asyncio.gather(
        *(asyncio.to_thread(store.register, settings, org, "order.created", v) for v in variants),
        *(asyncio.to_thread(store.register, settings, org, "order.seen", same) for _ in range(8)),
        return_exceptions=True,
    )

    # Each variant adds one optional field and leaves out the others' (read as additional
    # properties of an open object): BACKWARD accepts every one, in whatever order.
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, failures
    created = [r for r in results if isinstance(r, store.Registered)]
    versions = sorted(r.version.version for r in created[:8])
    assert versions == list(range(2, 10))
    same_versions = {r.version.version for r in created[8:]}
    assert same_versions == {2} and sum(r.created for r in created[8:]) == 1
    listed = store.list_types(settings, org)
    assert [(t.record_type, t.versions) for t in listed] == [
        ("order.created", 9),
        ("order.seen", 2),
    ]


async def test_apply_refuses_a_breaking_schema_before_changing_anything(
    platform: Platform, tmp_path: Path
) -> None:
    org = unique_org("sch")
    await platform.start_org(_shop(org))
    breaking = _shop(org)
    breaking["schemas"][0]["schema"] = ORDER_BREAKING
    breaking["topics"].append({"name": "extra"})
    spec_file = tmp_path / "org.json"
    spec_file.write_text(json.dumps(breaking))

    planned = await kafkaorg("org", "plan", str(spec_file))
    assert planned.returncode == 0, planned.stderr
    assert "! schema order.created: not BACKWARD compatible with version 1:" in planned.stdout
    assert "extra" in planned.stdout  # the topic the spec adds

    refused = await kafkaorg("org", "apply", str(spec_file))

    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "not BACKWARD compatible with version 1" in refused.stderr
    assert "$.sku: field made required" in refused.stderr
    topics = await kafkaorg("topic", "list", org, "--json")
    assert "extra" not in topics.stdout  # nothing was applied
    assert [t.versions for t in store.list_types(platform.settings, org)] == [1, 1]

    evolved = _shop(org)
    evolved["schemas"][0]["schema"] = ORDER_V2
    spec_file.write_text(json.dumps(evolved))
    planned = await kafkaorg("org", "plan", str(spec_file), "--json")
    (report,) = json.loads(planned.stdout)["schemas"]
    assert (report["record_type"], report["compatible"]) == ("order.created", True)
    applied = await kafkaorg("org", "apply", str(spec_file))
    assert applied.returncode == 0, applied.stderr
    assert "schema order.created: version 2 registered" in applied.stdout


async def test_a_strict_org_dead_letters_unregistered_types(platform: Platform) -> None:
    org = unique_org("sch")
    spec = _shop(org, policy={"unregistered_types": "reject"})
    spec["topics"][0]["types"] = []
    await platform.start_org(spec)
    await _settle_caches(platform.settings)
    await platform.send(
        org, "orders", [_order(org, {"id": "a1", "qty": 1}), _order(org, {}, "mystery.type")]
    )

    seen = await platform.collect(org, "seen", 1, settle=1.0)
    (entry,) = await asyncio.to_thread(_dlq, platform.settings, org, 1)

    assert [c.record.payload["id"] for c in seen] == ["a1"]
    assert entry["payload"]["reason"] == "schema-unregistered"
    assert "type 'mystery.type' has no registered schema" in entry["payload"]["error"]


async def test_an_llm_agents_invalid_publish_is_refused_to_the_model(
    platform: Platform, scripted_llm: ScriptedLLM
) -> None:
    org, agent = unique_org("sch"), "clerk-s"
    spec = _shop(org)
    spec["agents"] = [
        {
            "name": agent,
            "kind": "llm",
            "instructions": "Acknowledge each order on seen.",
            "subscribes": ["orders"],
            "publishes": ["seen"],
        }
    ]

    def corrected(messages: list[dict[str, Any]]) -> ScriptedReply:
        assert "record not published" in json.dumps(tool_results(messages)[-1])
        return tool_call("publish", topic="seen", type="order.seen", payload={"id": "a1", "qty": 1})

    invalid = tool_call("publish", topic="seen", type="order.seen", payload={"id": "a1"})
    lookup = tool_call("find_schemas", topic="orders")
    scripted_llm.script(agent, [lookup, invalid, corrected, ScriptedReply(content="done")])
    await platform.start_org(spec)
    await _settle_caches(platform.settings)
    await platform.send(org, "orders", [_order(org, {"id": "a1", "qty": 1})])

    seen = await platform.collect(org, "seen", 1, settle=1.0)
    requests = await scripted_llm.wait_for_requests(agent, 3, timeout=30)

    assert [c.record.payload for c in seen] == [{"id": "a1", "qty": 1}]
    # The prompt carries the schemas of the types it reads and writes (the record's, and
    # what its topics declare); find_schemas gives them on request.
    system = requests[0]["messages"][0]["content"]
    assert f"- order.created v1: {json.dumps(ORDER_V1, sort_keys=True)}" in system
    (found,) = tool_results(requests[1]["messages"])[-1]["schemas"]
    assert (found["record_type"], found["json_schema"], found["topics"]) == (
        "order.created",
        ORDER_V1,
        ["orders"],
    )
    refusal = tool_results(requests[2]["messages"])[-1]
    assert refusal["ok"] is False
    assert "order.seen v1: payload $: 'qty' is a required property" in refusal["error"]


@pytest.fixture(scope="module")
def registry_url(stack: Settings, log_dir: Path) -> Iterator[str]:
    handle = start_console(log_dir, CONSOLE_PORT, name="schema-console")
    yield f"http://127.0.0.1:{CONSOLE_PORT}/schema-registry"
    handle.stop()


async def test_confluent_clients_use_the_registry_and_framed_records_flow(
    platform: Platform, registry_url: str
) -> None:
    org = unique_org("sch")
    await platform.start_org(_shop(org))
    client = SchemaRegistryClient({"url": registry_url})
    subject = f"{org}.order.created"
    ctx = SerializationContext(kafka_topic(org, "orders"), MessageField.VALUE)

    assert {subject, f"{org}.order.seen"} <= set(client.get_subjects())
    assert client.get_versions(subject) == [1]
    assert client.get_compatibility(subject) == "BACKWARD"
    assert client.test_compatibility(subject, Schema(json.dumps(ORDER_V2), "JSON"))
    assert not client.test_compatibility(subject, Schema(json.dumps(ORDER_BREAKING), "JSON"))
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(subject, Schema(json.dumps(ORDER_BREAKING), "JSON"))
    assert refused.value.http_status_code == 409
    with pytest.raises(SchemaRegistryError) as missing:
        client.get_latest_version(f"{org}.no.such")
    assert missing.value.error_code == 40401

    # A Kafka user's own producer: auto-registers v2 through the REST API, frames values.
    serializer = JSONSerializer(
        json.dumps(ORDER_V2), client, conf={"subject.name.strategy": lambda *_: subject}
    )
    framed = serializer({"id": "c1", "qty": 3, "note": "gift"}, ctx)
    assert client.get_versions(subject) == [1, 2]
    assert store.show(platform.settings, org, "order.created").version == 2
    deserializer = JSONDeserializer(None, schema_registry_client=client)
    assert deserializer(framed, ctx) == {"id": "c1", "qty": 3, "note": "gift"}

    producer = Producer(client_config(platform.settings))
    producer.produce(kafka_topic(org, "orders"), framed)
    unknown_id = b"\x00" + (2**31 - 1).to_bytes(4, "big") + b'{"id": "z"}'
    producer.produce(kafka_topic(org, "orders"), unknown_id)
    producer.flush(10)

    seen = await platform.collect(org, "seen", 1, settle=1.0)
    (entry,) = await asyncio.to_thread(_dlq, platform.settings, org, 1)

    assert [(c.record.type, c.record.payload) for c in seen] == [
        ("order.seen", {"id": "c1", "qty": 3})
    ]
    assert entry["payload"]["reason"] == "schema-id-unknown"
    assert f"schema id {2**31 - 1}" in entry["payload"]["error"]


def test_the_cli_refuses_a_schema_file_that_is_not_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = run_cli("schema", "check", "shop", "order.created", str(bad))
    assert_one_clear_line(result, 2, "bad.json", "not valid YAML/JSON")
    missing = run_cli("schema", "check", "shop", "order.created", str(tmp_path / "none.json"))
    assert_one_clear_line(missing, 2, "none.json", "cannot read file")
