"""One Temporal client factory for workers, bridge, CLI and tests.

Every process uses the pydantic data converter, so a ``Record`` is the same type
from the Kafka topic through the signal to the activity that produces it.
"""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime

from kafkaorg import tracing
from kafkaorg.config import Settings
from kafkaorg.errors import ServiceUnavailableError


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
        )
    except RuntimeError as exc:
        raise ServiceUnavailableError(
            f"Temporal is not reachable at {settings.temporal_address} "
            f"(start it with `kafkaorg dev up`, or set KAFKAORG_TEMPORAL_ADDRESS): {exc}"
        ) from None
