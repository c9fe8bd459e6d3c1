"""The local stack of ``kafkaorg dev``: Kafka, Temporal and PostgreSQL without Docker.

Services run as detached processes tracked by pid files under ``settings.state_dir``, so a
later ``kafkaorg dev down`` (or a test session) can stop what an earlier ``up`` started.
"""

from ._kafka import KAFKA_VERSION
from ._local_model import (
    LLAMA_CPP_VERSION,
    LocalModelService,
    install_local_model,
    llm_venv,
    model_file,
    server_installed,
)
from ._models import ProcessExitedError, ServiceStatus, StackError
from ._stack import DevStack
from ._workers import KafkaorgProcess

__all__ = [
    "KAFKA_VERSION",
    "LLAMA_CPP_VERSION",
    "DevStack",
    "KafkaorgProcess",
    "LocalModelService",
    "ProcessExitedError",
    "ServiceStatus",
    "StackError",
    "install_local_model",
    "llm_venv",
    "model_file",
    "server_installed",
]
