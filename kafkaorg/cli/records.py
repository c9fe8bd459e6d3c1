"""``kafkaorg send`` and ``kafkaorg tail``: put records on an org's topic and read them back."""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated

import typer
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, TopicPartition
from pydantic import ValidationError

from kafkaorg.cli._common import (
    check_org_name,
    check_topic_name,
    console,
    settings,
)
from kafkaorg.config import Settings
from kafkaorg.envelope import TYPE_RE, Record, new_record, parse_payload_json
from kafkaorg.errors import BadInputError
from kafkaorg.kafka import (
    Outgoing,
    check_kafka,
    client_config,
    create_admin,
    create_producer,
    produce_and_wait,
)
from kafkaorg.names import kafka_topic


def _require_topic(cfg: Settings, name: str) -> int:
    """Partitions of an existing topic; a missing one is bad input, not a hang."""
    check_kafka(cfg)
    metadata = create_admin(cfg).list_topics(timeout=10)
    topic = metadata.topics.get(name)
    if topic is None or topic.error is not None:
        raise BadInputError(
            f"topic {name!r} does not exist (is the org started? `kafkaorg org start`)"
        )
    return len(topic.partitions)


def send(
    org: Annotated[str, typer.Argument(help="Org name.")],
    topic: Annotated[str, typer.Argument(help="Topic name inside the org.")],
    type_: Annotated[str, typer.Option("--type", help="Record type, e.g. task.request.")],
    payload: Annotated[str, typer.Option(help="Payload as JSON.")] = "{}",
    correlation_id: Annotated[str | None, typer.Option(help="Defaults to the record's id.")] = None,
    source: Annotated[str, typer.Option(help="Sender, user:<name> or system:<name>.")] = "user:cli",
    count: Annotated[int, typer.Option(min=1, help="Send this many records (load tests).")] = 1,
) -> None:
    """Send a record (in the kafkaorg envelope) to an org's topic."""
    check_org_name(org)
    check_topic_name(topic)
    if not TYPE_RE.match(type_):
        raise BadInputError(f"--type {type_!r} is not valid (it must match {TYPE_RE.pattern})")
    try:
        body = parse_payload_json(payload)
    except json.JSONDecodeError as exc:
        raise BadInputError(f"--payload is not JSON: {exc.msg} at column {exc.colno}") from None
    cfg = settings()
    name = kafka_topic(org, topic)
    _require_topic(cfg, name)
    try:
        records = [
            new_record(
                org=org, type=type_, source=source, payload=body, correlation_id=correlation_id
            )
            for _ in range(count)
        ]
    except ValidationError as exc:
        first = exc.errors()[0]
        raise BadInputError(f"--{first['loc'][0]}: {first['msg']}") from None
    produce_and_wait(create_producer(cfg), (Outgoing(name, r) for r in records))
    for record in records[:10]:
        console.print(f"sent {record.id} to {name}")
    if count > 10:
        console.print(f"… and {count - 10} more")


def _format(value: bytes | None, partition: int, offset: int) -> str:
    try:
        record = Record.from_kafka_value(value or b"")
    except ValueError:
        text = (value or b"").decode("utf-8", errors="replace")
        return f"[{partition}@{offset}] (raw) {text[:500]}"
    return (
        f"[{partition}@{offset}] {record.type} from {record.source} id={record.id} "
        f"caused-by={record.causation_id or '-'} hops={record.hops} "
        f"{json.dumps(record.payload)[:500]}"
    )


def tail(
    org: Annotated[str, typer.Argument(help="Org name.")],
    topic: Annotated[
        str, typer.Argument(help="Topic name inside the org (or sys.audit, sys.dlq).")
    ],
    from_beginning: Annotated[bool, typer.Option("--from-beginning")] = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep waiting for records.")
    ] = False,
    max_records: Annotated[int | None, typer.Option("--max", min=1, help="Stop after N.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON value per line.")] = False,
    timeout: Annotated[
        float, typer.Option(help="With --follow: give up after S seconds idle.")
    ] = 0.0,
) -> None:
    """Print records of an org's topic; without --follow, stop at the end of the topic."""
    check_org_name(org)
    check_topic_name(topic)
    cfg = settings()
    name = kafka_topic(org, topic)
    partitions = _require_topic(cfg, name)
    consumer = Consumer(
        {
            **client_config(cfg),
            "group.id": f"kafkaorg-tail-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )
    start = OFFSET_BEGINNING if from_beginning else OFFSET_END
    consumer.assign([TopicPartition(name, p, start) for p in range(partitions)])
    at_end: set[int] = set()
    seen = 0
    idle_since = time.monotonic()
    try:
        while True:
            message = consumer.poll(0.5)
            if message is None:
                if follow and timeout and time.monotonic() - idle_since > timeout:
                    break
                continue
            err = message.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition() or 0)
                    if not follow and len(at_end) >= partitions:
                        break
                    continue
                raise BadInputError(f"cannot read {name}: {err.str()}")
            idle_since = time.monotonic()
            at_end.discard(message.partition() or 0)
            value = message.value()
            if json_output:
                try:
                    typer.echo(json.dumps(json.loads(value or b"null")))
                except ValueError:
                    typer.echo(json.dumps({"raw": (value or b"").decode("utf-8", "replace")}))
            else:
                console.print(
                    _format(value, message.partition() or 0, message.offset() or 0),
                    markup=False,
                    highlight=False,
                )
            seen += 1
            if max_records is not None and seen >= max_records:
                break
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
