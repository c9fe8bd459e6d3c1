"""An org through Kafka's SASL listener: the local stack's SASL_PLAINTEXT port, where a
client must log in (SCRAM or PLAIN) before it may do anything.

The session's worker and bridge are replaced, for the test, by ones pointed at that
port with the secured settings: a client that ignored them would speak plaintext to a
SASL listener and never connect, so the org's records only flow if every Kafka client
of both processes logs in.
"""

from __future__ import annotations

import pytest

from kafkaorg.config import Settings
from kafkaorg.devstack._kafka import DEV_SASL_PASSWORD, DEV_SASL_USER
from kafkaorg.errors import ServiceUnavailableError
from kafkaorg.kafka import check_kafka
from tests.support import Platform, assert_one_clear_line, run_cli, task, unique_org

pytestmark = pytest.mark.integration


def _sasl_env(settings: Settings, mechanism: str, password: str) -> dict[str, str]:
    host = settings.kafka_bootstrap.rsplit(":", 1)[0]
    return {
        "KAFKAORG_KAFKA_BOOTSTRAP": f"{host}:{settings.kafka_dev_sasl_port}",
        "KAFKAORG_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKAORG_KAFKA_SASL_MECHANISM": mechanism,
        "KAFKAORG_KAFKA_SASL_USERNAME": DEV_SASL_USER,
        "KAFKAORG_KAFKA_SASL_PASSWORD": password,
    }


def _sasl_settings(settings: Settings, mechanism: str, password: str) -> Settings:
    return Settings.model_validate(
        {
            **settings.model_dump(),
            "kafka_bootstrap": _sasl_env(settings, mechanism, password)["KAFKAORG_KAFKA_BOOTSTRAP"],
            "kafka_security_protocol": "SASL_PLAINTEXT",
            "kafka_sasl_mechanism": mechanism,
            "kafka_sasl_username": DEV_SASL_USER,
            "kafka_sasl_password": password,
        }
    )


async def test_an_org_runs_with_its_worker_and_bridge_logged_in_with_scram(
    platform: Platform,
) -> None:
    org = unique_org("sasl")
    env = _sasl_env(platform.settings, "SCRAM-SHA-256", DEV_SASL_PASSWORD)
    with platform.replaced(platform.worker, **env), platform.replaced(platform.bridge, **env):
        await platform.start_org(
            {
                "org": org,
                "topics": [{"name": "tasks", "partitions": 2}, {"name": "results"}],
                "agents": [
                    {
                        "name": "echoer",
                        "kind": "echo",
                        "subscribes": ["tasks"],
                        "publishes": ["results"],
                    }
                ],
            }
        )
        sent = [task(org, i) for i in range(20)]
        await platform.send(org, "tasks", sent)
        echoed = await platform.collect(org, "results", len(sent), timeout=90)
    assert sorted(c.record.causation_id or "" for c in echoed) == sorted(r.id for r in sent)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_each_mechanism_logs_in_and_a_wrong_password_is_refused(
    stack: Settings, mechanism: str
) -> None:
    check_kafka(_sasl_settings(stack, mechanism, DEV_SASL_PASSWORD), timeout=15)
    with pytest.raises(ServiceUnavailableError) as caught:
        check_kafka(_sasl_settings(stack, mechanism, "not-the-password"), timeout=15)
    assert f"refused the connection ({mechanism}, user {DEV_SASL_USER})" in str(caught.value)


def test_a_wrong_password_is_one_clear_line_and_exit_1(stack: Settings) -> None:
    env = _sasl_env(stack, "SCRAM-SHA-256", "not-the-password")
    result = run_cli("send", "acme", "tasks", "--type", "task.request", env=env, timeout=60)
    assert_one_clear_line(
        result,
        1,
        f"Kafka at {env['KAFKAORG_KAFKA_BOOTSTRAP']} refused the connection "
        f"(SCRAM-SHA-256, user {DEV_SASL_USER})",
        "Authentication failed",
    )
    assert "not-the-password" not in result.stderr


def test_secured_settings_that_cannot_work_are_one_line_and_exit_2(stack: Settings) -> None:
    result = run_cli(
        "send",
        "acme",
        "tasks",
        "--type",
        "task.request",
        env={"KAFKAORG_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
    )
    assert_one_clear_line(result, 2, "KAFKAORG_KAFKA_SASL_MECHANISM")
