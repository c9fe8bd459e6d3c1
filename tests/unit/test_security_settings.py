"""Secured clusters' settings: what every Kafka and Temporal client gets, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.service import TLSConfig

from kafkaorg.config import Settings, get_settings
from kafkaorg.errors import ConfigError
from kafkaorg.kafka import client_config, new_topic, producer_config
from kafkaorg.temporal import tls_config


def test_a_plain_cluster_gets_plaintext_and_nothing_else() -> None:
    config = client_config(Settings())
    assert config["security.protocol"] == "PLAINTEXT"
    assert not [k for k in config if k.startswith(("sasl.", "ssl."))]


def test_scram_over_tls_reaches_every_client(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here")
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="agents",
        kafka_sasl_password="s3cret",
        kafka_ssl_ca_location=ca,
    )
    for config in (client_config(settings), producer_config(settings)):
        assert config["security.protocol"] == "SASL_SSL"
        assert config["sasl.mechanism"] == "SCRAM-SHA-512"
        assert (config["sasl.username"], config["sasl.password"]) == ("agents", "s3cret")
        assert config["ssl.ca.location"] == str(ca)
    assert "s3cret" not in repr(settings), "the password stays out of logs and reprs"


def test_oauthbearer_uses_oidc_client_credentials() -> None:
    config = client_config(
        Settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="OAUTHBEARER",
            kafka_sasl_oauthbearer_token_endpoint_url="https://idp.example/token",
            kafka_sasl_oauthbearer_client_id="kafkaorg",
            kafka_sasl_oauthbearer_client_secret="xyz",
            kafka_sasl_oauthbearer_scope="kafka",
        )
    )
    assert config["sasl.oauthbearer.method"] == "oidc"
    assert config["sasl.oauthbearer.token.endpoint.url"] == "https://idp.example/token"
    assert (config["sasl.oauthbearer.client.id"], config["sasl.oauthbearer.client.secret"]) == (
        "kafkaorg",
        "xyz",
    )
    assert config["sasl.oauthbearer.scope"] == "kafka"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        (
            {"KAFKAORG_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            "KAFKAORG_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKAORG_KAFKA_SASL_MECHANISM",
        ),
        (
            {"KAFKAORG_KAFKA_SASL_MECHANISM": "PLAIN"},
            "KAFKAORG_KAFKA_SASL_MECHANISM=PLAIN needs KAFKAORG_KAFKA_SECURITY_PROTOCOL=SASL_SSL",
        ),
        (
            {
                "KAFKAORG_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKAORG_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
                "KAFKAORG_KAFKA_SASL_USERNAME": "agents",
            },
            "SASL SCRAM-SHA-256 needs KAFKAORG_KAFKA_SASL_USERNAME and KAFKAORG_KAFKA_SASL_PASS",
        ),
        (
            {
                "KAFKAORG_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKAORG_KAFKA_SASL_MECHANISM": "OAUTHBEARER",
            },
            "OAUTHBEARER needs KAFKAORG_KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL",
        ),
        (
            {"KAFKAORG_KAFKA_SSL_CA_LOCATION": "/nonexistent/ca.pem"},
            "KAFKAORG_KAFKA_SSL_CA_LOCATION=/nonexistent/ca.pem: no such file",
        ),
        (
            {"KAFKAORG_KAFKA_SECURITY_PROTOCOL": "TLS"},
            "KAFKAORG_KAFKA_SECURITY_PROTOCOL: Input should be 'PLAINTEXT', 'SSL'",
        ),
        (
            {"KAFKAORG_KAFKA_MIN_INSYNC_REPLICAS": "2"},
            "MIN_INSYNC_REPLICAS=2 is more than KAFKAORG_KAFKA_REPLICATION_FACTOR=1",
        ),
    ],
)
def test_settings_that_cannot_work_are_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], needle: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()  # read the environment again, as a new process would
    with pytest.raises(ConfigError) as caught:
        get_settings()
    assert needle in str(caught.value)
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == 2


def test_a_client_certificate_needs_its_key(tmp_path: Path) -> None:
    cert = tmp_path / "client.pem"
    cert.write_text("x")
    with pytest.raises(ValueError, match="KAFKAORG_TEMPORAL_TLS: a client certificate needs"):
        Settings(temporal_tls_cert=cert)


def test_topics_take_the_clusters_replication() -> None:
    local = new_topic(Settings(), "acme.tasks", 3, {"retention.ms": "1000"})
    assert local.replication_factor == 1
    assert local.config == {"retention.ms": "1000"}
    cluster = new_topic(
        Settings(kafka_replication_factor=3, kafka_min_insync_replicas=2),
        "acme.tasks",
        3,
        {"retention.ms": "1000"},
    )
    assert cluster.replication_factor == 3 and cluster.num_partitions == 3
    assert cluster.config == {"retention.ms": "1000", "min.insync.replicas": "2"}


def test_temporal_tls_from_an_api_key_or_certificates(tmp_path: Path) -> None:
    assert tls_config(Settings()) is False
    assert tls_config(Settings(temporal_tls=True)) is True
    assert tls_config(Settings(temporal_api_key="k")) is True
    ca, cert, key = (tmp_path / n for n in ("ca.pem", "client.pem", "client.key"))
    for path in (ca, cert, key):
        path.write_bytes(path.name.encode())
    mtls = tls_config(
        Settings(
            temporal_tls_ca=ca,
            temporal_tls_cert=cert,
            temporal_tls_key=key,
            temporal_tls_server_name="ns.tmprl.cloud",
        )
    )
    assert isinstance(mtls, TLSConfig)
    assert (mtls.server_root_ca_cert, mtls.client_cert, mtls.client_private_key) == (
        b"ca.pem",
        b"client.pem",
        b"client.key",
    )
    assert mtls.domain == "ns.tmprl.cloud"


def test_each_retention_class_may_have_its_own_replication() -> None:
    settings = Settings(
        kafka_replication_factor=2,
        kafka_class_replication={"audit": {"factor": 3, "min_insync": 2}},
    )
    audit = new_topic(settings, "acme.sys.audit", 1, {}, "audit")
    work = new_topic(settings, "acme.tasks", 3, {}, "work")
    assert (audit.replication_factor, audit.config) == (3, {"min.insync.replicas": "2"})
    assert (work.replication_factor, work.config) == (2, {})


def test_class_replication_is_read_from_json_and_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKAORG_KAFKA_CLASS_REPLICATION", '{"state": {"factor": 3}}')
    assert Settings().replication_for("state").factor == 3
    with pytest.raises(ValueError, match="class 'dlq' has min_insync 3 over its factor 2"):
        Settings(kafka_class_replication={"dlq": {"factor": 2, "min_insync": 3}})
    with pytest.raises(ValueError, match="kafka_class_replication"):
        Settings(kafka_class_replication={"scratch": {"factor": 2}})


def test_class_replication_that_is_not_json_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKAORG_KAFKA_CLASS_REPLICATION", "audit=3")
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigError) as caught:
            get_settings()
        assert str(caught.value) == "KAFKAORG_KAFKA_CLASS_REPLICATION: not valid JSON"
    finally:
        get_settings.cache_clear()
