"""Kafka client factories and a produce-and-confirm helper shared by activities, bridge and CLI."""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from kafkaorg import faults, tracing
from kafkaorg.config import Settings
from kafkaorg.envelope import Record
from kafkaorg.errors import ServiceUnavailableError
from kafkaorg.faults import FaultPoint
from kafkaorg.names import PLATFORM_DLQ_TOPIC
from kafkaorg.spec import TOPIC_CLASS_CONFIGS, TopicClass

LIBRDKAFKA_LOG = logging.getLogger("kafkaorg.librdkafka")
LIBRDKAFKA_LOG.addHandler(logging.NullHandler())
"""librdkafka's own log lines go here: shown by worker and bridge, never on a CLI's stderr."""


def client_config(settings: Settings, **extra: object) -> dict[str, object]:
    """Settings every Kafka client of ours shares: where the brokers are, and how to
    reach them on a secured cluster."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "logger": LIBRDKAFKA_LOG,
        **security_config(settings),
        **extra,
    }


def security_config(settings: Settings) -> dict[str, str]:
    """librdkafka's security properties from the ``KAFKAORG_KAFKA_SSL_*``/``_SASL_*`` settings."""
    config: dict[str, str] = {"security.protocol": settings.kafka_security_protocol}
    if settings.kafka_sasl_mechanism is not None:
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
    if settings.kafka_sasl_username is not None:
        config["sasl.username"] = settings.kafka_sasl_username
    if settings.kafka_sasl_password is not None:
        config["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_sasl_mechanism == "OAUTHBEARER":
        config["sasl.oauthbearer.method"] = "oidc"
        config["sasl.oauthbearer.token.endpoint.url"] = str(
            settings.kafka_sasl_oauthbearer_token_endpoint_url
        )
        config["sasl.oauthbearer.client.id"] = str(settings.kafka_sasl_oauthbearer_client_id)
        if settings.kafka_sasl_oauthbearer_client_secret is not None:
            config["sasl.oauthbearer.client.secret"] = (
                settings.kafka_sasl_oauthbearer_client_secret.get_secret_value()
            )
        if settings.kafka_sasl_oauthbearer_scope:
            config["sasl.oauthbearer.scope"] = settings.kafka_sasl_oauthbearer_scope
    for key, path in (
        ("ssl.ca.location", settings.kafka_ssl_ca_location),
        ("ssl.certificate.location", settings.kafka_ssl_certificate_location),
        ("ssl.key.location", settings.kafka_ssl_key_location),
    ):
        if path is not None:
            config[key] = str(path)
    if settings.kafka_ssl_key_password is not None:
        config["ssl.key.password"] = settings.kafka_ssl_key_password.get_secret_value()
    return config


def new_topic(
    settings: Settings,
    name: str,
    partitions: int,
    configs: Mapping[str, str],
    topic_class: str | None = None,
) -> NewTopic:
    """A topic as the platform creates every one: its class's configs and replication
    (``KAFKAORG_KAFKA_CLASS_REPLICATION``, else ``_REPLICATION_FACTOR`` and
    ``_MIN_INSYNC_REPLICAS``)."""
    config = dict(configs)
    replication = settings.replication_for(topic_class)
    if replication.min_insync is not None:
        config["min.insync.replicas"] = str(replication.min_insync)
    return NewTopic(
        name, num_partitions=partitions, replication_factor=replication.factor, config=config
    )


def producer_config(settings: Settings) -> dict[str, object]:
    """Idempotent, acks=all: a retried send never duplicates or reorders within a partition."""
    return client_config(
        settings,
        **{
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
            "message.max.bytes": max(settings.max_record_bytes * 8, 1_048_576),
            "client.id": "kafkaorg",
        },
    )


def create_producer(settings: Settings) -> Producer:
    return Producer(producer_config(settings))


def create_admin(settings: Settings) -> AdminClient:
    return AdminClient(client_config(settings))  # type: ignore[arg-type]


def create_missing_topics(admin: AdminClient, topics: Sequence[NewTopic]) -> list[str]:
    """Create those of ``topics`` Kafka lacks; returns the names created. Idempotent: one
    created meanwhile (a retry after success, another process) counts as existing."""
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = [t for t in topics if t.topic not in existing]
    created: list[str] = []
    if not wanted:
        return created
    for name, future in admin.create_topics(wanted, operation_timeout=30).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
    return created


def ensure_platform_topics(settings: Settings) -> None:
    """The platform-wide DLQ, for dead letters that have no org DLQ to go to."""
    create_missing_topics(
        create_admin(settings),
        [
            new_topic(
                settings, PLATFORM_DLQ_TOPIC, 1, TOPIC_CLASS_CONFIGS[TopicClass.DLQ], TopicClass.DLQ
            )
        ],
    )


def check_kafka(settings: Settings, timeout: float = 5.0) -> None:
    """Raise a one-line error when the broker does not answer, or refuses our credentials
    or our TLS (librdkafka would only retry them, quietly, for ever)."""
    refused: list[KafkaError] = []

    def on_error(error: KafkaError) -> None:
        if error.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL):
            refused.append(error)

    admin = AdminClient(client_config(settings, error_cb=on_error))  # type: ignore[arg-type]
    try:
        admin.list_topics(timeout=timeout)
    except KafkaException:
        admin.poll(0)  # error callbacks are served here, not while list_topics waits
        if refused:
            how = settings.kafka_sasl_mechanism or settings.kafka_security_protocol
            user = f", user {settings.kafka_sasl_username}" if settings.kafka_sasl_username else ""
            raise ServiceUnavailableError(
                f"Kafka at {settings.kafka_bootstrap} refused the connection ({how}{user}): "
                f"{_short_reason(refused[0])}"
            ) from None
        raise ServiceUnavailableError(
            f"Kafka is not reachable at {settings.kafka_bootstrap} "
            "(start it with `kafkaorg dev up`, or set KAFKAORG_KAFKA_BOOTSTRAP)"
        ) from None


def _short_reason(error: KafkaError) -> str:
    """librdkafka's reason without the broker address it starts with."""
    text = error.str()
    return (
        text.split(": ", 1)[1]
        if text.startswith(("sasl_", "ssl://", "SASL")) and ": " in text
        else text
    )


@dataclass(frozen=True)
class Outgoing:
    """One record bound for one Kafka topic."""

    kafka_topic: str
    record: Record
    extra_headers: tuple[tuple[str, str | bytes | None], ...] = ()
    trace: Mapping[str, str] | None = field(default=None, compare=False, hash=False)
    """W3C carrier of the span this record is produced under (the record it answers);
    None: the current span, if recorded; ``tracing.NOT_SAMPLED``: no span and no trace
    header. Only read when tracing is on (kafkaorg/tracing.py)."""

    @cached_property
    def value(self) -> bytes:
        """The serialized envelope, made once (size checks and produce share it)."""
        return self.record.kafka_value()


def _traced(items: Iterable[Outgoing], spans: list[tracing.Span | None]) -> Iterator[Outgoing]:
    """Each item under a ``kafka.produce`` span whose context goes into its headers, so the
    consumer's work joins the trace (the item's own trace headers, if any, are replaced)."""
    for item in items:
        span = tracing.start_span(
            f"kafka.produce {item.kafka_topic}",
            parent=item.trace,
            kind=tracing.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.destination.name": item.kafka_topic,
                "kafkaorg.record.id": item.record.id,
                "kafkaorg.record.type": item.record.type,
                "kafkaorg.record.source": item.record.source,
                "kafkaorg.correlation_id": item.record.correlation_id,
            },
        )
        spans.append(span)
        if span is None:
            yield item
            continue
        kept = tuple(h for h in item.extra_headers if h[0] not in tracing.TRACE_HEADERS)
        traced = dataclasses.replace(
            item, extra_headers=kept + tracing.header_pairs(tracing.carrier_of(span))
        )
        if "value" in item.__dict__:  # serialized once, not again
            traced.__dict__["value"] = item.__dict__["value"]
        yield traced


DELIVERY_POLL_S = 0.005
"""How often a call waiting for its records' acks looks again (another thread's poll may
have served its delivery reports)."""


@dataclass
class _Deliveries:
    """The delivery reports of one call's records. The call waits for its own records
    only: ``Producer.flush`` waits until the shared producer has nothing in flight, which
    under steady load from other threads (a burst of flow runs) can take many times one
    record's round trip."""

    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    reported: int = 0
    expected: int | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def callback(self, err: KafkaError | None, msg: Message) -> None:
        with self.lock:
            self.reported += 1
            if err is not None:
                self.errors.append(f"{msg.topic()}: {err.str()}")
            self._check()

    def expect(self, count: int) -> None:
        with self.lock:
            self.expected = count
            self._check()

    def _check(self) -> None:
        if self.expected is not None and self.reported >= self.expected:
            self.done.set()

    def wait(self, producer: Producer, timeout: float) -> int:
        """Serve delivery reports until this call's are all in; returns how many are not."""
        deadline = time.monotonic() + timeout
        while not self.done.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            producer.poll(min(left, DELIVERY_POLL_S))
        with self.lock:
            return (self.expected or 0) - self.reported


def _produce_one(producer: Producer, item: Outgoing, deliveries: _Deliveries) -> None:
    while True:
        try:
            producer.produce(
                item.kafka_topic,
                key=item.record.kafka_key(),
                value=item.value,
                headers=[*item.record.kafka_headers(), *item.extra_headers],
                on_delivery=deliveries.callback,
            )
            return
        except BufferError:
            producer.poll(0.1)  # local queue full: let deliveries drain


def produce_and_wait(producer: Producer, items: Iterable[Outgoing], timeout: float = 30.0) -> int:
    """Produce records and return once the broker acknowledged every one (or raise)."""
    if not tracing.enabled():
        return _produce_and_wait(producer, items, timeout)
    spans: list[tracing.Span | None] = []
    try:
        count = _produce_and_wait(producer, _traced(items, spans), timeout)
    except BaseException as exc:
        tracing.end_spans(spans, exc)
        raise
    tracing.end_spans(spans)
    return count


def _produce_and_wait(producer: Producer, items: Iterable[Outgoing], timeout: float) -> int:
    deliveries = _Deliveries()
    count = 0
    for item in items:
        _produce_one(producer, item, deliveries)
        count += 1
    deliveries.expect(count)
    remaining = deliveries.wait(producer, timeout)
    if remaining > 0:
        raise KafkaException(f"{remaining} record(s) not acknowledged within {timeout}s")
    if deliveries.errors:
        raise KafkaException(f"{len(deliveries.errors)} record(s) failed: {deliveries.errors[0]}")
    return count


class TransactionalProducers:
    """A few transactional producers, each running one transaction at a time.

    Activities run on a thread pool and a transactional producer cannot interleave
    transactions, so each produce takes a producer from the pool. Transactional ids
    are stable per worker (``<prefix>-<slot>``): a worker restarted after a crash
    fences its predecessor at once, aborting whatever transaction it left open, so
    read-committed consumers are not held back until the transaction times out.
    """

    def __init__(self, settings: Settings, prefix: str, size: int = 4) -> None:
        self._settings = settings
        self._prefix = prefix
        self._free: queue.Queue[tuple[int, Producer | None]] = queue.Queue()
        for slot in range(size):
            self._free.put((slot, None))

    def _create(self, slot: int, timeout: float) -> Producer:
        config = producer_config(self._settings)
        config.update(
            {
                "transactional.id": f"{self._prefix}-{slot}",
                "transaction.timeout.ms": 15_000,
                "client.id": f"kafkaorg-txn-{slot}",
            }
        )
        producer = Producer(config)
        producer.init_transactions(timeout)
        return producer

    def fence_all(self, timeout: float = 30.0) -> None:
        """Initialise every slot now: aborts transactions a killed predecessor left open."""
        taken = [self._free.get() for _ in range(self._free.qsize())]
        try:
            for i, (slot, producer) in enumerate(taken):
                if producer is None:
                    try:
                        taken[i] = (slot, self._create(slot, timeout))
                    except KafkaException as exc:  # retried when the slot is first used
                        LIBRDKAFKA_LOG.warning("transactional producer %d: %s", slot, exc)
        finally:
            for item in taken:
                self._free.put(item)

    def produce(self, items: list[Outgoing], timeout: float = 30.0) -> int:
        """Produce ``items`` atomically: read-committed consumers see all of them or none.

        Any failure aborts what this call began and raises ``KafkaException`` (retryable:
        the activity is retried with the same record ids). A fatal error (this producer
        fenced, or its state lost) discards the producer; the slot's next use creates a
        fresh one under the same transactional id, which also finishes whatever the old
        one left open.
        """
        if not tracing.enabled():
            return self._produce(items, timeout)
        spans: list[tracing.Span | None] = []
        try:
            count = self._produce(list(_traced(items, spans)), timeout)
        except BaseException as exc:
            tracing.end_spans(spans, exc)
            raise
        tracing.end_spans(spans)
        return count

    def _produce(self, items: list[Outgoing], timeout: float) -> int:
        slot, producer = self._free.get()
        try:
            if producer is None:
                producer = self._create(slot, timeout)
            producer.begin_transaction()
            deliveries = _Deliveries()
            for item in items:
                _produce_one(producer, item, deliveries)
            if faults.armed(FaultPoint.TRANSACTION_BEFORE_COMMIT):
                producer.flush(timeout)  # on the broker, so the open transaction is real
                faults.inject(FaultPoint.TRANSACTION_BEFORE_COMMIT)
            self._commit(producer, timeout)
            if deliveries.errors:  # commit succeeds only if every record did; belt and braces
                raise KafkaException(f"{len(deliveries.errors)} record(s) failed")
            return len(items)
        except KafkaException as exc:
            producer = self._recover(slot, producer, exc, timeout)
            raise
        except BaseException:
            if producer is not None:
                producer = self._recover(slot, producer, None, timeout)
            raise
        finally:
            self._free.put((slot, producer))

    @staticmethod
    def _commit(producer: Producer, timeout: float, attempts: int = 3) -> None:
        """librdkafka lets a commit that timed out (retriable) be called again."""
        for attempt in range(attempts):
            try:
                producer.commit_transaction(timeout)
                return
            except KafkaException as exc:
                error = _kafka_error(exc)
                if error is None or not error.retriable() or attempt == attempts - 1:
                    raise

    def _recover(
        self, slot: int, producer: Producer | None, exc: KafkaException | None, timeout: float
    ) -> Producer | None:
        """Abort the failed transaction; the producer to keep for the slot (None: a new one)."""
        if producer is None:
            return None
        error = _kafka_error(exc) if exc is not None else None
        if error is not None and error.fatal():
            if error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED):
                LIBRDKAFKA_LOG.warning(
                    "transactional id %s-%d was fenced: a newer producer uses it (is another "
                    "worker running with the same KAFKAORG_WORKER_ID?)",
                    self._prefix,
                    slot,
                )
            return None
        try:
            producer.abort_transaction(timeout)
            return producer
        except KafkaException:  # not even abortable: start the slot afresh
            return None


def _kafka_error(exc: KafkaException | None) -> KafkaError | None:
    if exc is not None and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None
