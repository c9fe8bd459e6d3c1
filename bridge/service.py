"""The bridge process: consume org topics, signal agents, then commit.

Offsets are committed only after Temporal accepted every signal of a batch
(at-least-once); each agent gets one signal per poll batch carrying all of its
records (fewer history events than one signal per record). Poison records go to
``<org>.sys.dlq`` and never stop the bridge.

Backpressure (see ``bridge/backpressure.py``): while Temporal does not accept a batch,
every assigned partition is paused and the consumer is still polled (so the bridge
stays in its group) while the batch is retried; partitions feeding an agent whose
inbox is over ``agent_inbox_limit`` are paused until it drains. Paused records wait in
Kafka: the bridge holds at most one poll batch (``bridge_batch_size`` records) in
memory, whatever the outage's length. Its state is written to
``<state_dir>/run/bridge-status/<pid>.json`` for ``kafkaorg dev status``.

Metrics (``kafkaorg/metrics.py``): records accepted per org/topic, records delivered per
topic→agent edge (counted once Temporal accepted the signal, so a retried batch counts
once), DLQ entries by reason, batch sizes, signal latency, lag and inbox sizes.

Traces (``kafkaorg/tracing.py``, when on): a ``bridge.consume`` span per sampled record,
child of the context in its ``traceparent`` header (a record from outside without one
starts a trace at the sample ratio); a ``bridge.signal`` span per signal with a sampled
record, child of the first one's and linked to the others'; each sampled record's own
context goes to the agent in ``Delivery.traces``, and a poison record's dead letter is
produced under it. Unsampled records cost no span.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowQueryFailedError, WorkflowQueryRejectedError
from temporalio.service import RPCError

from bridge import approvals, flows
from bridge.backpressure import TEMPORAL_REASON, AgentKey, InboxGate, PartitionKey, pause_plan
from bridge.loop_guard import RecentRecords, over_hop_limit
from bridge.mapping import (
    SIGNAL_LIMIT_BYTES,
    Accepted,
    Origin,
    Poison,
    chunk_by_size,
    commit_positions,
    dead_letter,
    decode,
    route,
    schema_violation,
)
from bridge.subscriptions import SubscriptionCache
from kafkaorg import client as service
from kafkaorg import metrics, payloads, tracing
from kafkaorg.bridge_status import bridge_status_dir, write_bridge_status
from kafkaorg.config import Settings
from kafkaorg.contracts import Delivery
from kafkaorg.db import create_engine, create_sessionmaker
from kafkaorg.envelope import Record
from kafkaorg.faults import FaultPoint, inject
from kafkaorg.kafka import (
    Outgoing,
    check_kafka,
    client_config,
    create_producer,
    ensure_platform_topics,
    produce_and_wait,
)
from kafkaorg.names import (
    BRIDGE_GROUP_ID,
    BRIDGE_TOPIC_PATTERN,
    PLATFORM_DLQ_TOPIC,
    PLATFORM_ORG,
    agent_workflow_id,
    dlq_topic,
    split_kafka_topic,
)
from kafkaorg.schema_registry.cache import SchemaCache
from kafkaorg.schema_registry.validation import SchemaBook
from kafkaorg.temporal import connect_temporal
from kafkaorg.worker_slots import process_bridge_id

log = logging.getLogger(__name__)

STATUS_QUERY_TIMEOUT = timedelta(seconds=2)
"""A status query that takes longer (no worker) counts as unknown, never as a full inbox."""
STATUS_WRITE_INTERVAL_S = 2.0
MARKER_COMMIT_INTERVAL_S = 1.0


def consumer_config(settings: Settings) -> dict[str, object]:
    membership: dict[str, object] = {}
    if settings.bridge_static_membership:
        # A restarted bridge (same slot, same id) is handed its partitions on joining.
        membership["group.instance.id"] = process_bridge_id(settings)
    return client_config(
        settings,
        **membership,
        **{
            "group.id": BRIDGE_GROUP_ID,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "topic.metadata.refresh.interval.ms": 2000,
            "max.poll.interval.ms": 600_000,
            # A bridge that died is out of the group (its partitions reassigned) this soon.
            "session.timeout.ms": int(settings.bridge_session_timeout_s * 1000),
            "heartbeat.interval.ms": max(500, int(settings.bridge_session_timeout_s * 200)),
            "fetch.max.bytes": 16 * 1024 * 1024,
            "max.partition.fetch.bytes": 8 * 1024 * 1024,
            "client.id": "kafkaorg-bridge",
        },
    )


class BridgeStats:
    def __init__(self) -> None:
        self.records = 0
        self.signals = 0
        self.dead_lettered = 0
        self.batches = 0


class Bridge:
    def __init__(
        self,
        settings: Settings,
        client: Client,
        consumer: Consumer,
        producer: Producer,
        subscriptions: SubscriptionCache,
        flow_triggers: flows.FlowTriggers | None = None,
        schemas: SchemaCache | None = None,
        sessions: sessionmaker[Session] | None = None,
    ) -> None:
        self._settings = settings
        self._schemas = schemas
        self._sessions = sessions
        """For payloads stored by reference, which the schema check needs in full."""
        self._flow_triggers = flow_triggers
        self._client = client
        self._consumer = consumer
        self._producer = producer
        self._subscriptions = subscriptions
        self.stats = BridgeStats()
        self._gate = InboxGate(
            settings.agent_inbox_limit,
            settings.bridge_inbox_check_interval_s,
            byte_limit=settings.agent_inbox_max_bytes,
        )
        self._checking: asyncio.Task[None] | None = None
        self._temporal_down_since: datetime | None = None
        self._paused: dict[PartitionKey, list[str]] = {}
        self._assignment: frozenset[PartitionKey] = frozenset()
        self._carry: list[Message] = []
        """Records a rebalance handed us while all else was paused; first in the next batch."""
        self._last_batch_at: datetime | None = None
        self._committed: dict[PartitionKey, int] = {}
        self._markers_checked_at = 0.0
        self._status_written: tuple[float, object] = (float("-inf"), None)
        self._recent = RecentRecords()
        """Recently seen records, for the chain a ``hop-limit`` dead letter names."""
        self._spans: dict[Origin, tracing.Span] = {}
        """This batch's recorded ``bridge.consume`` spans (sampled records only)."""
        """The batch's ``bridge.consume`` span of each record (empty when tracing is off)."""

    async def run(self, stop: asyncio.Event) -> None:
        self._consumer.subscribe([BRIDGE_TOPIC_PATTERN])
        log.info("bridge consuming %s as group %r", BRIDGE_TOPIC_PATTERN, BRIDGE_GROUP_ID)
        try:
            while not stop.is_set():
                messages = await asyncio.to_thread(self._poll_batch)
                if messages:
                    await self.handle_batch(messages, stop)
                elif time.monotonic() - self._markers_checked_at > MARKER_COMMIT_INTERVAL_S:
                    await asyncio.to_thread(self._commit_past_markers)
                await self._backpressure_tick()
        finally:
            if self._checking is not None:
                self._checking.cancel()
            await asyncio.to_thread(self._consumer.close)
            (bridge_status_dir(self._settings) / f"{os.getpid()}.json").unlink(missing_ok=True)

    def _poll_batch(self) -> list[Message]:
        """Wait for the first record only, then take what is already buffered (no added delay)."""
        carried, self._carry = self._carry, []
        size = self._settings.bridge_batch_size - len(carried)
        first = self._consumer.poll(0 if carried else self._settings.bridge_poll_timeout_s)
        if first is None:
            return carried
        return [*carried, first, *self._consumer.consume(max(0, size - 1), 0)]

    # -- backpressure -------------------------------------------------------------------------

    async def _backpressure_tick(self) -> None:
        """Between batches: start due inbox checks, then pause/resume partitions to match."""
        now = time.monotonic()
        self._gate.forget_idle(now)
        if self._temporal_down_since is None and (self._checking is None or self._checking.done()):
            due = self._gate.due(now)
            if due:
                for key in due:
                    self._gate.query_sent(key, now)
                first_time = any(self._gate.gauges[k].answered is None for k in due)
                self._checking = asyncio.create_task(self._check_inboxes(due))
                if first_time:  # an agent's first figure is awaited: it bounds the first batches
                    await asyncio.shield(self._checking)
        await self._apply_pauses()

    async def _check_inboxes(self, keys: list[AgentKey]) -> None:
        async def one(key: AgentKey) -> None:
            try:
                status = await service.agent_report(
                    self._client, *key, rpc_timeout=STATUS_QUERY_TIMEOUT
                )
            except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError) as exc:
                log.debug("inbox of %s/%s unknown: %s", *key, exc)
                self._gate.answered(key, None)
                return
            self._gate.answered(key, status.inbox, status.inbox_bytes)
            metrics.AGENT_INBOX_RECORDS.labels(*key).set(status.inbox)
            metrics.AGENT_INBOX_BYTES.labels(*key).set(status.inbox_bytes)

        await asyncio.gather(*(one(k) for k in keys))

    async def _apply_pauses(self) -> None:
        """Make the consumer's paused partitions match the plan (and say why in the log)."""
        subscribers = await self._subscriptions.get()
        assignment = frozenset((tp.topic, tp.partition) for tp in self._consumer.assignment())
        plan = pause_plan(
            assignment=assignment,
            temporal_down=self._temporal_down_since is not None,
            held_agents=self._gate.held(),
            subscribers=subscribers,
        )
        rebalanced = assignment != self._assignment
        if rebalanced:
            self._forget_lag(self._assignment - assignment)
        to_pause = [tp for tp in plan if rebalanced or tp not in self._paused]
        to_resume = [tp for tp in (assignment if rebalanced else self._paused) if tp not in plan]
        to_resume = [tp for tp in to_resume if tp in assignment]
        if to_pause:
            self._consumer.pause([TopicPartition(t, p) for t, p in to_pause])
        if to_resume:
            self._consumer.resume([TopicPartition(t, p) for t, p in to_resume])
        newly = sorted(set(plan) - set(self._paused))
        lifted = sorted(set(self._paused) - set(plan))
        if newly:
            reasons = sorted({r for tp in newly for r in plan[tp]})
            log.log(
                logging.WARNING if TEMPORAL_REASON in reasons else logging.INFO,
                "paused %d partition(s) (%s)",
                len(newly),
                ", ".join(reasons),
            )
        if lifted:
            log.info("resumed %d partition(s)", len(lifted))
        self._paused, self._assignment = plan, assignment
        self._write_status()

    def _write_status(self) -> None:
        """The bridge's state for ``kafkaorg dev status``: on change, else every few seconds."""
        view = (sorted(self._paused.items()), self._temporal_down_since, self._gate.held())
        written_at, written = self._status_written
        if view == written and time.monotonic() - written_at < STATUS_WRITE_INTERVAL_S:
            return
        status = {
            "pid": os.getpid(),
            "updated_at": datetime.now(UTC).isoformat(),
            "last_batch_at": _iso(self._last_batch_at),
            "temporal_down_since": _iso(self._temporal_down_since),
            "paused": [
                {"topic": t, "partition": p, "reasons": reasons}
                for (t, p), reasons in sorted(self._paused.items())
            ],
            "held_agents": [f"{org}/{agent}" for org, agent in self._gate.held()],
            "records": self.stats.records,
            "batches": self.stats.batches,
        }
        try:
            write_bridge_status(self._settings, status)
        except OSError as exc:
            log.debug("bridge status not written: %s", exc)
        self._status_written = (time.monotonic(), view)

    async def _service_consumer(self, seconds: float, stop: asyncio.Event) -> None:
        """Poll the (paused) consumer for ``seconds``, so the bridge stays in its group.

        Paused partitions return nothing; a partition a rebalance assigned meanwhile may
        hand over a record before it is paused too: kept for the next batch, not lost.
        """
        deadline = time.monotonic() + seconds
        while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
            message = await asyncio.to_thread(self._consumer.poll, min(0.2, left))
            if message is not None and message.error() is None:
                self._carry.append(message)
            await self._apply_pauses()

    # -- records ------------------------------------------------------------------------------

    def _decode(self, message: Message, book: SchemaBook | None) -> Accepted | Poison | None:
        err = message.error()
        if err is not None:
            if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                log.debug("no org topic exists yet: %s", err)
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("consume error: %s", err)
            return None
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if topic is None or partition is None or offset is None:
            return None
        _, ts = message.timestamp()
        return decode(
            Origin(topic, partition, offset),
            message.value(),
            headers=message.headers(),
            timestamp_ms=ts if ts and ts > 0 else None,
            max_bytes=self._settings.max_record_bytes,
            schema_ids=book.ids if book else None,
        )

    async def handle_batch(self, messages: list[Message], stop: asyncio.Event) -> None:
        if not tracing.enabled():
            await self._handle_batch(messages, stop)
            return
        try:
            await self._handle_batch(messages, stop)
        except BaseException as exc:
            tracing.end_spans(self._spans.values(), exc)
            raise
        else:
            tracing.end_spans(self._spans.values())
        finally:
            self._spans = {}

    def _consume_span(self, message: Message, item: Accepted | Poison) -> tracing.Span | None:
        """The record's ``bridge.consume`` span, a child of its producer's (if it had one),
        or None: not sampled. A record with no ``traceparent`` starts a trace (at the sample
        ratio) only if it comes from outside: an agent's output without one answers a
        record that was not sampled."""
        parent = tracing.carrier_from_headers(message.headers())
        from_agent = isinstance(item, Accepted) and item.record.source.startswith("agent:")
        if not parent and from_agent:
            return None
        origin = item.origin
        attributes: dict[str, str | int] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "receive",
            "messaging.destination.name": origin.kafka_topic,
            "messaging.destination.partition.id": str(origin.partition),
            "messaging.kafka.offset": origin.offset,
            "messaging.consumer.group.name": BRIDGE_GROUP_ID,
        }
        if isinstance(item, Accepted):
            attributes["kafkaorg.record.id"] = item.record.id
            attributes["kafkaorg.record.type"] = item.record.type
        else:
            attributes["kafkaorg.dlq.reason"] = item.reason
        return tracing.start_span(
            f"bridge.consume {origin.kafka_topic}",
            parent=parent,
            kind=tracing.SpanKind.CONSUMER,
            attributes=attributes,
            current_parent=False,
            new_trace=True,
        )

    async def _handle_batch(self, messages: list[Message], stop: asyncio.Event) -> None:
        metrics.BRIDGE_BATCH_SIZE.observe(len(messages))
        newest = _newest_timestamp(messages)
        book = await self._schema_book(newest)
        pairs = [(m, d) for m in messages if (d := self._decode(m, book)) is not None]
        decoded = [d for _, d in pairs]
        if tracing.enabled():
            self._spans = {
                d.origin: span for m, d in pairs if (span := self._consume_span(m, d)) is not None
            }
        subscribers = await self._subscriptions.get(newest_record_at=newest)
        accepted: list[Accepted] = []
        poison = [d for d in decoded if isinstance(d, Poison)]
        for candidate in (d for d in decoded if isinstance(d, Accepted)):
            self._recent.remember(candidate.record, candidate.origin.topic)
            org = candidate.origin.org
            looped = over_hop_limit(candidate, self._subscriptions.hop_limit(org), self._recent)
            rejected = looped or (await self._schema_check(candidate, book) if book else None)
            if rejected is None:
                accepted.append(candidate)
            else:
                poison.append(rejected)
        deliveries = route(accepted, subscribers)

        if poison:
            await self._dead_letter(poison)
        pending = [
            (org, agent, chunk)
            for (org, agent), items in deliveries.items()
            for chunk in chunk_by_size(items, SIGNAL_LIMIT_BYTES)
        ]
        delay = 0.2
        while pending:
            results = await asyncio.gather(
                *(self._signal(org, agent, chunk) for org, agent, chunk in pending),
                return_exceptions=True,
            )
            accepted_now: Counter[AgentKey] = Counter()
            accepted_bytes: Counter[AgentKey] = Counter()
            failed = []
            for item, result in zip(pending, results, strict=True):
                if isinstance(result, BaseException):
                    failed.append((item, result))
                else:
                    accepted_now[(item[0], item[1])] += len(item[2])
                    accepted_bytes[(item[0], item[1])] += sum(a.size for a in item[2])
            self._gate.delivered(accepted_now, time.monotonic(), accepted_bytes)
            if not failed:
                break
            pending = [item for item, _ in failed]
            if self._temporal_down_since is None:
                self._temporal_down_since = datetime.now(UTC)
                log.warning(
                    "Temporal did not accept %d signal(s) (%s); pausing every partition and "
                    "retrying this batch until it does",
                    len(failed),
                    failed[0][1],
                )
            await self._apply_pauses()
            await self._service_consumer(delay, stop)
            if stop.is_set():
                return  # not committed: the records come again after restart
            delay = min(delay * 2, self._settings.bridge_retry_max_s)
        if self._temporal_down_since is not None:
            down_s = (datetime.now(UTC) - self._temporal_down_since).total_seconds()
            log.warning("Temporal accepted the batch after %.1f s; resuming partitions", down_s)
            self._temporal_down_since = None
            await self._apply_pauses()
        if not await flows.route_flows(
            self._client, accepted, stop, self._service_consumer, self._flow_triggers
        ):
            return  # stopped first; not committed: the records come again after restart
        refused = await approvals.decide_from_records(
            self._client, self._settings, accepted, stop, self._service_consumer
        )
        if refused is None:
            return  # stopped first, as above
        if refused:
            await self._dead_letter(refused)
            poison += refused
        inject(FaultPoint.BRIDGE_AFTER_SIGNAL)
        positions = commit_positions(d.origin for d in decoded)
        offsets = [TopicPartition(t, p, off) for (t, p), off in positions.items()]
        await asyncio.to_thread(self._commit, offsets)
        self._last_batch_at = datetime.now(UTC)
        self.stats.batches += 1
        self.stats.records += len(accepted)
        self.stats.dead_lettered += len(poison)
        by_topic = Counter((a.origin.org, a.origin.topic) for a in accepted)
        for (org, topic), n in by_topic.items():
            metrics.BRIDGE_RECORDS.labels(org, topic).inc(n)

    async def _schema_check(self, item: Accepted, book: SchemaBook) -> Poison | None:
        """``schema_violation``, with a payload stored by reference loaded first (the
        record itself travels on with its reference)."""
        record = item.record
        if record.payload_ref is None or record.org not in book.orgs or self._sessions is None:
            return schema_violation(item, book)
        sessions = self._sessions

        def load() -> Record:
            with sessions() as session:
                return payloads.resolve(session, record)

        try:
            resolved = await asyncio.to_thread(load)
        except payloads.PayloadMissingError as exc:
            return Poison(item.origin, "payload-missing", str(exc), record.kafka_value())
        return schema_violation(dataclasses.replace(item, record=resolved), book)

    async def _schema_book(self, newest_record_at: float | None) -> SchemaBook | None:
        """The schemas to judge this batch by (None: no org has any rule to check)."""
        if self._schemas is None:
            return None
        if self._schemas.fresh(newest_record_at):
            book = self._schemas.get()
        else:  # PostgreSQL off the event loop
            book = await asyncio.to_thread(self._schemas.get, newest_record_at=newest_record_at)
        return book if book.orgs else None

    def _commit(self, offsets: list[TopicPartition]) -> None:
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except Exception as exc:  # a revoked partition: its new owner redelivers, dedup absorbs it
            log.warning("offset commit failed (records will be redelivered): %s", exc)
            return
        for tp in offsets:
            self._committed[(tp.topic, tp.partition)] = tp.offset
        self._update_lag([(tp.topic, tp.partition) for tp in offsets])

    def _update_lag(self, partitions: list[PartitionKey]) -> None:
        """``kafkaorg_bridge_lag`` of these partitions: no broker round trip, the high
        watermark is the one the consumer's last fetch of each partition brought."""
        for topic, partition in partitions:
            committed = self._committed.get((topic, partition))
            if committed is None:
                continue
            try:
                _, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), cached=True
                )
                org, local = split_kafka_topic(topic)
            except (KafkaException, ValueError):
                continue
            if high is not None and high >= 0:
                lag = max(0, high - committed)
                metrics.BRIDGE_LAG.labels(org, local, str(partition)).set(lag)

    def _forget_lag(self, partitions: Iterable[PartitionKey]) -> None:
        """A revoked partition's lag is its new owner's to report."""
        for topic, partition in partitions:
            with contextlib.suppress(KeyError, ValueError):
                org, local = split_kafka_topic(topic)
                metrics.BRIDGE_LAG.remove(org, local, str(partition))

    def _commit_past_markers(self) -> None:
        """When idle, commit positions the consumer moved past transaction markers.

        A transaction ends with a commit marker the consumer skips; committing only
        "last record + 1" would leave the group's lag at one per partition forever. Idle,
        every record consumed has been handled, so the position is safe to commit.
        """
        self._markers_checked_at = time.monotonic()
        try:
            positions = self._consumer.position(self._consumer.assignment())
        except KafkaException as exc:
            log.debug("positions unknown: %s", exc)
            return
        ahead = [
            tp
            for tp in positions
            if tp.offset >= 0 and tp.offset > self._committed.get((tp.topic, tp.partition), -1)
        ]
        if ahead and not self._carry:
            self._commit([TopicPartition(tp.topic, tp.partition, tp.offset) for tp in ahead])
        self._update_lag([(tp.topic, tp.partition) for tp in positions])

    async def _signal(self, org: str, agent: str, items: list[Accepted]) -> None:
        delivery = Delivery(
            records=[i.record for i in items],
            origins={
                i.record.id: f"{i.origin.kafka_topic}:{i.origin.partition}:{i.origin.offset}"
                for i in items
            },
            marks={i.record.id: i.mark for i in items if i.mark},
        )
        if tracing.enabled():
            await self._traced_signal(org, agent, items, delivery)
            return
        await self._deliver(org, agent, items, delivery)

    async def _traced_signal(
        self, org: str, agent: str, items: list[Accepted], delivery: Delivery
    ) -> None:
        # Only sampled records have a span and carry their context on: an unsampled one
        # would add bytes to the workflow's history for spans nobody records.
        spans = [self._spans.get(i.origin) for i in items]
        if not any(spans):
            with tracing.unsampled():  # the interceptor's spans: not recorded, and say so
                await self._deliver(org, agent, items, delivery)
            return
        delivery.traces = {
            i.record.id: tracing.carrier_of(span)
            for i, span in zip(items, spans, strict=True)
            if span is not None
        }
        first = next(span for span in spans if span is not None)
        with tracing.span(
            f"bridge.signal {agent}",
            parent=tracing.carrier_of(first),
            kind=tracing.SpanKind.PRODUCER,
            attributes={
                "kafkaorg.org": org,
                "kafkaorg.agent": agent,
                "kafkaorg.workflow_id": agent_workflow_id(org, agent),
                "kafkaorg.signal.records": len(items),
            },
            links=spans[1:],
        ):
            await self._deliver(org, agent, items, delivery)

    async def _deliver(
        self, org: str, agent: str, items: list[Accepted], delivery: Delivery
    ) -> None:
        started = time.perf_counter()
        try:
            await service.deliver(self._client, org, agent, delivery)
        except BaseException:
            metrics.BRIDGE_SIGNAL_ERRORS.labels(org, agent).inc()
            raise
        finally:
            metrics.BRIDGE_SIGNAL_SECONDS.observe(time.perf_counter() - started)
        self.stats.signals += 1
        for topic, n in Counter(i.origin.topic for i in items).items():
            metrics.BRIDGE_SIGNALS.labels(org, topic, agent).inc(n)

    async def _dead_letter(self, poison: list[Poison]) -> None:
        now = datetime.now(UTC)
        outgoing = []
        counted: Counter[tuple[str, str]] = Counter()
        existing = await asyncio.to_thread(self._existing_topics)
        for p in poison:
            target = dlq_topic(p.origin.org)
            if target not in existing:
                # Not its org's (no such org, or one not started by kafkaorg): never
                # committed unrecorded, so the platform's DLQ takes it.
                target = PLATFORM_DLQ_TOPIC
            record, headers = dead_letter(p, now)
            span = self._spans.get(p.origin)
            trace = tracing.carrier_of(span) if span is not None else tracing.NOT_SAMPLED
            outgoing.append(Outgoing(target, record, tuple(headers), trace=trace))
            counted[(PLATFORM_ORG if target == PLATFORM_DLQ_TOPIC else p.origin.org, p.reason)] += 1
            log.info(
                "dead-lettered %s[%d]@%d to %s: %s",
                p.origin.kafka_topic,
                p.origin.partition,
                p.origin.offset,
                target,
                p.reason,
            )
        await asyncio.to_thread(produce_and_wait, self._producer, outgoing)
        for (org, reason), n in counted.items():
            metrics.DLQ_RECORDS.labels(org, reason).inc(n)

    def _existing_topics(self) -> set[str]:
        return set(self._consumer.list_topics(timeout=10).topics)


def _newest_timestamp(messages: list[Message]) -> float | None:
    """The newest record's Kafka timestamp in epoch seconds; now, if one has none."""
    newest = None
    for message in messages:
        kind, millis = message.timestamp()
        at = millis / 1000 if kind != TIMESTAMP_NOT_AVAILABLE and millis >= 0 else time.time()
        newest = at if newest is None else max(newest, at)
    return newest


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


async def run_bridge(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT; an interrupted batch is simply consumed again next time."""
    check_kafka(settings)
    ensure_platform_topics(settings)
    with (
        tracing.process_tracing(settings, tracing.SERVICE_BRIDGE),
        metrics.process_metrics(settings, "bridge") as runtime,
    ):
        await _serve(settings, await connect_temporal(settings, runtime))


async def _serve(settings: Settings, client: Client) -> None:
    sessions = create_sessionmaker(create_engine(settings.database_url, pool_size=2))
    bridge = Bridge(
        settings,
        client,
        Consumer(consumer_config(settings)),
        create_producer(settings),
        SubscriptionCache(sessions, ttl_s=settings.bridge_subscription_ttl_s),
        flows.FlowTriggers(sessions),
        SchemaCache(sessions, ttl_s=settings.schema_cache_ttl_s),
        sessions,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await bridge.run(stop)
