"""docker-compose.yml agrees with the code that runs inside it.

No Docker engine runs here, so the file is never started in CI: these tests are what
keeps it honest. They read the names and ports from the file itself and compare them
with ``kafkaorg.config.Settings`` and ``kafkaorg.names``, so a renamed setting, a
service renamed on one side only, or a wrong port fails here instead of on a user's
machine.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from kafkaorg import names
from kafkaorg.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"

REQUIRED_SERVICES = (
    "kafka",
    "postgresql",
    "temporal",
    "temporal-ui",
    "kafkaorg-worker",
    "kafkaorg-sandbox-worker",
    "kafkaorg-bridge",
)
KAFKAORG_SERVICES = (
    "kafkaorg-worker",
    "kafkaorg-sandbox-worker",
    "kafkaorg-bridge",
    "kafkaorg-console",
)
# Long-running infrastructure that other services wait for or people look at.
INFRA_SERVICES = ("kafka", "postgresql", "temporal", "temporal-ui")
# What the kafkaorg processes need before they start.
HEALTHY_DEPENDENCIES = ("kafka", "postgresql", "temporal")

# Settings fields that the containers need not set, and why.
NOT_FOR_SERVICES = {
    "state_dir": "where `kafkaorg dev` keeps its local stack; no local stack in compose",
    "cache_dir": "Kafka jars for `kafkaorg dev`; compose runs the Kafka image instead",
    "kafka_controller_port": "port of `kafkaorg dev`'s own controller listener",
    "kafka_dev_sasl_port": "`kafkaorg dev`'s own SASL listener, to try secured settings",
    "agent_lifecycle_concurrency": "tuning knob with a working default (bench_agents)",
    "worker_max_cached_workflows": "tuning knob with a working default (bench_agents)",
    "temporal_dev_sqlite_pragmas": "`kafkaorg dev`'s own Temporal dev server's SQLite",
    "temporal_ui_port": "the UI is its own service here (checked by test_temporal_ui_port)",
    "prometheus_port": "where `kafkaorg dev up` runs its own Prometheus; compose runs none",
    "phoenix_port": "`kafkaorg dev`'s local Phoenix; compose users bring their own collector",
    "phoenix_grpc_port": "`kafkaorg dev`'s local Phoenix",
    "max_record_bytes": "tuning knob; its default is right (see test_kafka_message_max_bytes)",
    "bridge_batch_size": "tuning knob with a working default",
    "bridge_poll_timeout_s": "tuning knob with a working default",
    "bridge_subscription_ttl_s": "tuning knob with a working default (record-time refresh)",
    "schema_cache_ttl_s": "tuning knob with a working default (record-time refresh)",
    "payload_ref_bytes": "tuning knob with a working default (256 kB)",
    "archive_interval_s": "tuning knob with a working default (5 minutes)",
    "archive_segment_records": "tuning knob with a working default (50,000 per file)",
    "agent_inbox_limit": "tuning knob with a working default (backpressure)",
    "agent_inbox_max_bytes": "tuning knob with a working default (backpressure)",
    "bridge_inbox_check_interval_s": "tuning knob with a working default (backpressure)",
    "bridge_retry_max_s": "tuning knob with a working default (backpressure)",
    "worker_id": "defaults to <hostname>-<slot>, unique per worker process (worker_slots.py)",
    "worker_sticky_timeout_s": "tuning knob with a working default (recovery after a kill)",
    "bridge_static_membership": "off by default (new topics after a static leader's rejoin)",
    "bridge_instance_id": "defaults to kafkaorg-bridge-<hostname>-<slot> (worker_slots.py)",
    "bridge_session_timeout_s": "tuning knob with a working default (recovery after a kill)",
    "step_transactions": "on by default; off only to trade atomic steps for throughput",
    "llm_local_port": "`kafkaorg dev up --llm`'s local model; compose users name an endpoint",
    "llm_local_model_file": "`kafkaorg dev up --llm`'s local model",
    "llm_local_threads": "`kafkaorg dev up --llm`'s local model",
}

_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    with COMPOSE_FILE.open(encoding="utf-8") as f:
        data = yaml.safe_load(f)
    assert isinstance(data, dict), f"{COMPOSE_FILE} is not a YAML mapping"
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    svcs = compose.get("services")
    assert isinstance(svcs, dict) and svcs, "docker-compose.yml has no services"
    return svcs


def _interpolate(value: str) -> str:
    """What compose makes of ``${VAR:-default}`` when VAR is not set: the default."""
    return _INTERPOLATION.sub(lambda m: m.group("default") or "", value)


def _environment(service: dict[str, Any]) -> dict[str, str | None]:
    """A service's environment as a dict, whichever of compose's two forms it uses.

    A key without a value (``KEY:`` or ``- KEY``) is passed through from the shell and
    maps to None.
    """
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, None) for item in env)
        env = dict(pairs)
    return {str(k): None if v is None else _interpolate(str(v)).strip() for k, v in env.items()}


def _listening_ports(service: dict[str, Any]) -> set[int]:
    """Container ports a service declares: ``expose`` plus the container side of ``ports``."""
    ports = {int(str(p).split("/")[0]) for p in service.get("expose", [])}
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports.add(int(entry["target"]))
        else:
            ports.add(int(str(entry).split("/")[0].rsplit(":", 1)[-1]))
    return ports


def _published(service: dict[str, Any]) -> dict[int, int]:
    """Host port -> container port for a service's ``ports``."""
    out: dict[int, int] = {}
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            out[int(entry["published"])] = int(entry["target"])
        else:
            parts = str(entry).split("/")[0].split(":")
            assert len(parts) >= 2, f"port {entry!r} is not published on the host"
            out[int(parts[-2])] = int(parts[-1])
    return out


def _host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    assert sep and host and port.isdigit(), f"not host:port: {address!r}"
    return host, int(port)


def _service_env_fields() -> list[str]:
    return [f for f in Settings.model_fields if f not in NOT_FOR_SERVICES]


def _env_name(field: str) -> str:
    prefix = Settings.model_config.get("env_prefix", "")
    return f"{prefix}{field}".upper()


def _kafkaorg_env(services: dict[str, dict[str, Any]], name: str) -> dict[str, str | None]:
    return _environment(services[name])


def _healthy_deps(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):  # short form: started, not healthy
        return {d: "service_started" for d in deps}
    return {k: (v or {}).get("condition", "service_started") for k, v in deps.items()}


def test_required_services_exist(services: dict[str, dict[str, Any]]) -> None:
    missing = [s for s in REQUIRED_SERVICES if s not in services]
    assert not missing, f"docker-compose.yml lacks services {missing}"


def test_every_image_is_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        image = svc.get("image")
        if image is None:
            assert "build" in svc, f"{name}: neither image nor build"
            continue
        image = _interpolate(str(image))
        if "@sha256:" in image:
            continue
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag and tag != "latest", f"{name}: image {image!r} is not pinned"
        assert re.search(r"\d", tag), f"{name}: tag of {image!r} names no version"


def test_infra_services_have_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name in INFRA_SERVICES:
        check = services[name].get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert not check.get("disable"), f"{name}'s healthcheck is disabled"
        test = check.get("test")
        assert test and test != ["NONE"], f"{name}'s healthcheck runs nothing"


def test_healthchecks_use_the_right_tools(services: dict[str, dict[str, Any]]) -> None:
    def text(name: str) -> str:
        test = services[name]["healthcheck"]["test"]
        return test if isinstance(test, str) else " ".join(map(str, test))

    assert re.search(r"kafka-(broker-api-versions|topics)\.sh", text("kafka"))
    assert "pg_isready" in text("postgresql")
    assert re.search(r"(tctl .*cluster health|temporal operator cluster health)", text("temporal"))


@pytest.mark.parametrize("service", KAFKAORG_SERVICES)
def test_kafkaorg_services_set_every_setting(
    services: dict[str, dict[str, Any]], service: str
) -> None:
    env = _kafkaorg_env(services, service)
    expected = {_env_name(f) for f in _service_env_fields()}
    missing = sorted(expected - env.keys())
    assert not missing, f"{service} does not set {missing}"
    # The exclusions must name real fields, or they hide nothing and rot.
    stale = sorted(set(NOT_FOR_SERVICES) - set(Settings.model_fields))
    assert not stale, f"NOT_FOR_SERVICES names fields Settings no longer has: {stale}"


def test_kafkaorg_services_share_one_environment(services: dict[str, dict[str, Any]]) -> None:
    first, *others = (_kafkaorg_env(services, s) for s in KAFKAORG_SERVICES)
    assert all(env == first for env in others)


@pytest.mark.parametrize("service", KAFKAORG_SERVICES)
def test_kafka_bootstrap_points_at_kafka(services: dict[str, dict[str, Any]], service: str) -> None:
    bootstrap = _kafkaorg_env(services, service)[_env_name("kafka_bootstrap")]
    assert bootstrap
    kafka = _environment(services["kafka"])
    advertised = {
        urlsplit(listener).netloc
        for listener in (kafka.get("KAFKA_ADVERTISED_LISTENERS") or "").split(",")
    }
    for address in bootstrap.split(","):
        host, port = _host_port(address.strip())
        assert host in services, f"{service}: bootstrap host {host!r} is no service"
        assert port in _listening_ports(services[host]), f"{host} does not listen on {port}"
        # Clients reconnect to the advertised address: it has to be this same one.
        assert f"{host}:{port}" in advertised, f"{host}:{port} not in {advertised}"


@pytest.mark.parametrize("service", KAFKAORG_SERVICES)
def test_temporal_address_points_at_temporal(
    services: dict[str, dict[str, Any]], service: str
) -> None:
    env = _kafkaorg_env(services, service)
    address = env[_env_name("temporal_address")]
    assert address
    host, port = _host_port(address)
    assert host == "temporal" and host in services
    assert port in _listening_ports(services[host]), f"{host} does not listen on {port}"
    # Temporal's own idea of its address and the UI's must be the same frontend.
    assert _environment(services["temporal"]).get("TEMPORAL_ADDRESS") == address
    assert _environment(services["temporal-ui"]).get("TEMPORAL_ADDRESS") == address
    assert _environment(services["temporal-admin-tools"]).get("TEMPORAL_ADDRESS") == address


@pytest.mark.parametrize("service", KAFKAORG_SERVICES)
def test_temporal_namespace_exists(services: dict[str, dict[str, Any]], service: str) -> None:
    namespace = _kafkaorg_env(services, service)[_env_name("temporal_namespace")]
    assert namespace
    assert _environment(services["temporal"]).get("DEFAULT_NAMESPACE") == namespace
    assert _environment(services["temporal-admin-tools"]).get("TEMPORAL_NAMESPACE") == namespace


@pytest.mark.parametrize("service", KAFKAORG_SERVICES)
def test_database_url_points_at_postgresql(
    services: dict[str, dict[str, Any]], service: str
) -> None:
    url = _kafkaorg_env(services, service)[_env_name("database_url")]
    assert url
    parts = urlsplit(url)
    assert parts.scheme == "postgresql+psycopg", f"{service}: {url!r} is not psycopg 3"
    assert parts.hostname in services, f"{service}: database host {parts.hostname!r}"
    assert parts.port in _listening_ports(services[parts.hostname])

    pg = _environment(services[parts.hostname])
    assert parts.username == pg["POSTGRES_USER"]
    assert parts.password == pg["POSTGRES_PASSWORD"]
    assert parts.path.lstrip("/") == pg["POSTGRES_DB"]


def test_temporal_uses_postgresql_in_databases_of_its_own(
    services: dict[str, dict[str, Any]],
) -> None:
    temporal = _environment(services["temporal"])
    pg = _environment(services["postgresql"])
    assert temporal["DB"] == "postgres12"
    assert temporal["POSTGRES_SEEDS"] in services
    assert int(temporal["DB_PORT"] or 0) in _listening_ports(services[temporal["POSTGRES_SEEDS"]])
    assert temporal["POSTGRES_USER"] == pg["POSTGRES_USER"]
    assert temporal["POSTGRES_PWD"] == pg["POSTGRES_PASSWORD"]
    databases = [temporal.get("DBNAME") or "temporal", temporal.get("VISIBILITY_DBNAME")]
    assert databases[1], "VISIBILITY_DBNAME unset: auto-setup's default is shared"
    assert pg["POSTGRES_DB"] not in databases, "Temporal would share kafkaorg's database"
    assert len(set(databases)) == 2


def test_temporal_ui_port(services: dict[str, dict[str, Any]]) -> None:
    ui_port = Settings.model_fields["temporal_ui_port"].default
    published = _published(services["temporal-ui"])
    assert ui_port in published, f"temporal-ui is not published on {ui_port}"
    assert published[ui_port] == 8080, "temporalio/ui listens on 8080 in its container"


def test_search_attributes(services: dict[str, dict[str, Any]]) -> None:
    command = services["temporal-admin-tools"].get("command")
    script = command if isinstance(command, str) else "\n".join(map(str, command or []))
    created = dict(re.findall(r"^\s*ensure\s+(\S+)\s+(\S+)\s*$", script, flags=re.MULTILINE))
    assert created == {
        names.ORG_ATTR.name: "Keyword",
        names.AGENT_ATTR.name: "Keyword",
        names.FLOW_ATTR.name: "Keyword",
    }
    assert "search-attribute create" in script


def test_kafka_message_max_bytes(services: dict[str, dict[str, Any]]) -> None:
    # Compose sets no KAFKAORG_MAX_RECORD_BYTES, so the containers use the default.
    max_record = Settings.model_fields["max_record_bytes"].default
    kafka = _environment(services["kafka"])
    assert int(kafka["KAFKA_MESSAGE_MAX_BYTES"] or 0) >= max_record


def test_kafka_is_kraft_single_node_without_auto_create(
    services: dict[str, dict[str, Any]],
) -> None:
    kafka = _environment(services["kafka"])
    assert set((kafka["KAFKA_PROCESS_ROLES"] or "").split(",")) == {"broker", "controller"}
    node_id = kafka["KAFKA_NODE_ID"]
    voter_id, _, voter = (kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"] or "").partition("@")
    assert voter_id == node_id
    host, port = _host_port(voter)
    assert host == "kafka"
    listeners = {
        urlsplit(listener).scheme.upper(): urlsplit(listener).port
        for listener in (kafka["KAFKA_LISTENERS"] or "").split(",")
    }
    assert listeners.get(kafka["KAFKA_CONTROLLER_LISTENER_NAMES"] or "") == port
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
    ):
        assert kafka[key] == "1", f"{key} must be 1 on a single node"


@pytest.mark.parametrize("service", KAFKAORG_SERVICES)
def test_kafkaorg_services_wait_for_healthy_infra(
    services: dict[str, dict[str, Any]], service: str
) -> None:
    deps = _healthy_deps(services[service])
    for dep in HEALTHY_DEPENDENCIES:
        assert deps.get(dep) == "service_healthy", f"{service} does not wait for {dep} healthy"
    # Workflows set the search attributes: they must be registered first.
    assert deps.get("temporal-admin-tools") == "service_completed_successfully"


def test_worker_migrates_and_can_sandbox(services: dict[str, dict[str, Any]]) -> None:
    worker = services["kafkaorg-worker"]
    command = (
        " ".join(map(str, worker.get("entrypoint") or []))
        + " "
        + " ".join(map(str, worker.get("command") or []))
    )
    assert re.search(r"kafkaorg db upgrade\s*&&\s*(exec\s+)?kafkaorg worker", command)
    sandbox = services["kafkaorg-sandbox-worker"]
    assert sandbox.get("command") == ["sandbox", "worker"]
    assert sandbox.get("privileged") is True or "SYS_ADMIN" in sandbox.get("cap_add", [])
    assert services["kafkaorg-bridge"].get("command") == ["bridge"]


def test_kafkaorg_image_is_built_from_this_project(services: dict[str, dict[str, Any]]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert "kafkaorg" in project["scripts"], "the image's entrypoint `kafkaorg` is not a script"
    dockerfile = ROOT / "Dockerfile"
    text = dockerfile.read_text(encoding="utf-8")
    for service in KAFKAORG_SERVICES:
        svc = services[service]
        build = svc["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        name = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        assert (ROOT / context / name).resolve() == dockerfile
        assert svc["image"] == f"kafkaorg:{project['version']}", "image tag != project version"
    assert re.search(r"^FROM python:3\.12-slim", text, flags=re.MULTILINE)
    # nsjail needs libnl; sandboxed tools run under Debian's python3.
    for package in ("libnl-3-200", "libnl-route-3-200", "python3"):
        assert re.search(rf"apt-get install[^\n]*\s{re.escape(package)}(\s|$)", text), package
    assert re.search(r"pip install \.(\s|$)", text)
    assert re.search(r'^ENTRYPOINT \["kafkaorg"\]', text, flags=re.MULTILINE)
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".env" in ignored, "an .env with LLM keys would be baked into the image"


@pytest.mark.parametrize("service", ["kafkaorg-worker", "kafkaorg-bridge"])
def test_workers_and_bridges_scale(services: dict[str, dict[str, Any]], service: str) -> None:
    """``docker compose up --scale kafkaorg-worker=3 --scale kafkaorg-bridge=2`` needs
    replicas that can coexist: no fixed container name or hostname, no host port, and no
    fixed worker or bridge id (each replica derives its own from its container's hostname)."""
    spec = services[service]
    assert "container_name" not in spec and "hostname" not in spec, service
    assert not spec.get("ports"), f"{service} publishes a host port: a second replica clashes"
    env = _kafkaorg_env(services, service)
    assert "KAFKAORG_WORKER_ID" not in env and "KAFKAORG_BRIDGE_INSTANCE_ID" not in env
