"""Kafka 4.1.1 in KRaft mode, one JVM that is broker and controller, jars from Maven Central."""

from __future__ import annotations

import base64
import logging
import shutil
import subprocess
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from kafkaorg.config import Settings

from ._base import Port, Service
from ._models import StackError
from ._processes import find_binary, port_open, spawn, split_host_port

KAFKA_VERSION = "4.1.1"
DEV_SASL_USER = "kafkaorg"
DEV_SASL_PASSWORD = "kafkaorg-dev"
"""The local stack's SASL listener (``KAFKAORG_KAFKA_DEV_SASL_PORT``): a known local login,
for trying secured settings on one machine, never for a real cluster."""
MAX_MESSAGE_BYTES = 8_388_608
"""Above the bridge's own limit, so oversized records reach the bridge and go to the DLQ."""

_INSTALL_HINT = "run scripts/install.sh"

# librdkafka reports every refused connection; while we poll for health that is noise.
_quiet = logging.getLogger("kafkaorg.devstack.librdkafka")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


def _cluster_id() -> str:
    """A random cluster id in Kafka's own format (url-safe base64 of a UUID, no '-' first)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


class KafkaService(Service):
    name = "kafka"
    title = f"Kafka {KAFKA_VERSION} (KRaft)"
    timeout_s = 90.0
    marker = "kafka.Kafka"
    stop_timeout_s = 45.0

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.host, self.port = split_host_port(settings.kafka_bootstrap)
        self.home = settings.state_dir / "kafka"
        self.data_dir = self.home / "data"
        self.runtime_dir = settings.cache_dir / f"kafka-{KAFKA_VERSION}"
        self.libs_dir = self.runtime_dir / "libs"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # -- install ---------------------------------------------------------------------------

    def installed(self) -> bool:
        return (self.runtime_dir / ".complete").is_file()

    def install(self) -> None:
        """Fetch Kafka's jars with Maven into the cache (skipped when already there)."""
        if self.installed():
            return
        mvn = find_binary("mvn")
        if mvn is None:
            raise StackError(
                f"mvn (Maven) is not installed, needed to fetch Kafka: {_INSTALL_HINT}"
            )
        self._java()
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        pom = self.runtime_dir / "pom.xml"
        pom.write_bytes(resources.files("kafkaorg.devstack").joinpath("kafka-pom.xml").read_bytes())
        staging = self.runtime_dir / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        mvn_log = self.runtime_dir / "mvn.log"
        with mvn_log.open("wb") as log:
            result = subprocess.run(
                [
                    str(mvn), "-B", "-q", "-Dstyle.color=never", "-f", str(pom),
                    "dependency:copy-dependencies",
                    f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
                ],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, check=False,
            )  # fmt: skip
        if result.returncode != 0 or not (staging / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file():
            raise StackError(
                f"fetching Kafka {KAFKA_VERSION} jars with Maven failed (exit {result.returncode});"
                f" see {mvn_log}"
            )
        shutil.rmtree(self.libs_dir, ignore_errors=True)
        staging.rename(self.libs_dir)
        (self.runtime_dir / ".complete").write_text(KAFKA_VERSION + "\n")

    # -- run -------------------------------------------------------------------------------

    def _java(self) -> Path:
        java = find_binary("java")
        if java is None:
            raise StackError(
                f"java (JDK 17) is not installed, needed to run Kafka: {_INSTALL_HINT}"
            )
        return java

    def preflight(self) -> None:
        self._java()
        if not self.installed():
            raise StackError(
                f"Kafka's jars are missing from {self.libs_dir}: run kafkaorg dev install"
            )

    def ports(self) -> list[Port]:
        return [
            Port(self.host, self.port, "Kafka", "KAFKAORG_KAFKA_BOOTSTRAP"),
            Port(
                self.host,
                self.settings.kafka_dev_sasl_port,
                "Kafka's SASL listener",
                "KAFKAORG_KAFKA_DEV_SASL_PORT",
            ),
            Port(
                self.host,
                self.settings.kafka_controller_port,
                "the Kafka controller",
                "KAFKAORG_KAFKA_CONTROLLER_PORT",
            ),
        ]

    def after_healthy(self) -> None:
        """The dev SASL listener's SCRAM user (idempotent: an upsert)."""
        config: dict[str, Any] = {"bootstrap.servers": self.address, "logger": _quiet}
        admin = AdminClient(config)
        try:
            # One request per mechanism: a request may not alter one user twice.
            for mechanism in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512):
                upsert: list[UserScramCredentialAlteration] = [
                    UserScramCredentialUpsertion(
                        DEV_SASL_USER,
                        ScramCredentialInfo(mechanism, 4096),
                        DEV_SASL_PASSWORD.encode(),
                    )
                ]
                for future in admin.alter_user_scram_credentials(upsert).values():
                    future.result(timeout=30)
        except KafkaException as exc:
            raise StackError(f"adding the dev SASL user to Kafka failed: {exc}") from None

    def healthy(self) -> bool:
        if not port_open(self.host, self.port):
            return False
        config: dict[str, Any] = {"bootstrap.servers": self.address, "logger": _quiet}
        admin = AdminClient(config)
        try:
            metadata = admin.list_topics(timeout=3)
        except KafkaException:
            return False
        return bool(metadata.brokers)

    def _write_config(self) -> Path:
        controller = self.settings.kafka_controller_port
        sasl = f"SASL_PLAINTEXT://{self.host}:{self.settings.kafka_dev_sasl_port}"
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{controller}",
            "listeners": f"PLAINTEXT://{self.address},{sasl},CONTROLLER://{self.host}:{controller}",
            "advertised.listeners": f"PLAINTEXT://{self.address},{sasl}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": (
                "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
            ),
            # A secured listener to try KAFKAORG_KAFKA_SASL_* against (docs/deploy.md): SCRAM
            # users live in the cluster's metadata (after_healthy adds one), PLAIN's here.
            "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN",
            "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config": scram,
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": scram,
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": (
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'user_{DEV_SASL_USER}="{DEV_SASL_PASSWORD}";'
            ),
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            # Expired segments go within seconds (default: 5 minutes), so a short
            # retention.ms can be seen to work (the archive's tests).
            "log.retention.check.interval.ms": "5000",
            "message.max.bytes": str(MAX_MESSAGE_BYTES),
            "replica.fetch.max.bytes": str(MAX_MESSAGE_BYTES),
        }
        self.home.mkdir(parents=True, exist_ok=True)
        path = self.home / "server.properties"
        header = "# Written by kafkaorg dev up on every start; edit kafkaorg/devstack/_kafka.py.\n"
        path.write_text(header + "".join(f"{k}={v}\n" for k, v in props.items()))
        log4j = self.home / "log4j2.properties"
        log4j.write_text(
            "status = warn\n"
            "appender.file.type = File\n"
            "appender.file.name = file\n"
            f"appender.file.fileName = {self.log_file}\n"
            "appender.file.append = true\n"
            "appender.file.layout.type = PatternLayout\n"
            "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = WARN\n"
            "rootLogger.appenderRef.file.ref = file\n"
            # Keep the lines that say the broker started and stopped.
            "logger.server.name = kafka.server.KafkaRaftServer\n"
            "logger.server.level = INFO\n"
            "logger.broker.name = kafka.server.BrokerServer\n"
            "logger.broker.level = INFO\n"
        )
        return path

    def _jvm(self) -> list[str]:
        return [
            str(self._java()),
            "-Xmx768m",
            "-Xms256m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            "-cp",
            f"{self.libs_dir}/*",
        ]

    def _format_storage(self, config: Path) -> None:
        """Format the KRaft log dir once; a formatted dir keeps its cluster id and topics."""
        if (self.data_dir / "meta.properties").is_file():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            result = subprocess.run(
                [*self._jvm(), "kafka.tools.StorageTool", "format",
                 "-t", _cluster_id(), "-c", str(config), "--ignore-formatted"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, check=False,
            )  # fmt: skip
        if result.returncode != 0:
            raise StackError(f"formatting Kafka's storage failed; see {self.log_file}")

    def launch(self) -> None:
        config = self._write_config()
        self._format_storage(config)
        spawn(
            [*self._jvm(), "kafka.Kafka", str(config)],
            log_file=self.log_file,
            pid_file=self.pid_file,
            cwd=self.home,
        )
