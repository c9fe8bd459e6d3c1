"""One Temporal client factory for workers, bridge, CLI and tests.

Every process uses the pydantic data converter, so a ``Record`` is the same type
from the Kafka topic through the signal to the activity that produces it.
"""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from kafkaorg import tracing
from kafkaorg.config import Settings
from kafkaorg.errors import ServiceUnavailableError


def tls_config(settings: Settings) -> TLSConfig | bool:
    """TLS to the frontend: with a CA, a client certificate (mTLS) or a server name as set;
    plain TLS with the system's CAs for an API key alone (Temporal Cloud); else none."""
    files = (settings.temporal_tls_ca, settings.temporal_tls_cert, settings.temporal_tls_key)
    if any(files) or settings.temporal_tls_server_name:
        ca, cert, key = (path.read_bytes() if path else None for path in files)
        return TLSConfig(
            server_root_ca_cert=ca,
            client_cert=cert,
            client_private_key=key,
            domain=settings.temporal_tls_server_name,
        )
    return settings.temporal_tls or settings.temporal_api_key is not None


async def connect_temporal(settings: Settings, runtime: Runtime | None = None) -> Client:
    """``runtime``: the long-running processes pass one that serves the SDK's metrics
    (``kafkaorg.metrics.temporal_runtime``); None is the SDK's default runtime.

    With tracing on (kafkaorg/tracing.py), Temporal's OpenTelemetry interceptor is
    registered here; workers built on this client take it from the client (it is a
    worker interceptor too), so client calls, workflows and activities all carry context.
    """
    try:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=pydantic_data_converter,
            runtime=runtime,
            interceptors=tracing.temporal_interceptors(),
            tls=tls_config(settings),
            api_key=(
                settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
            ),
        )
    except RuntimeError as exc:
        raise ServiceUnavailableError(
            f"Temporal is not reachable at {settings.temporal_address} "
            f"(start it with `kafkaorg dev up`, or set KAFKAORG_TEMPORAL_ADDRESS): {exc}"
        ) from None
