"""Serving the console: the bind rules of ``access.check_bind``, then uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from kafkaorg.config import Settings
from kafkaorg.console.access import AccessPolicy, check_bind
from kafkaorg.console.app import create_app
from kafkaorg.errors import BadInputError
from kafkaorg.metrics import serve_metrics

log = logging.getLogger(__name__)


def access_policy(settings: Settings) -> AccessPolicy:
    if settings.console_viewer_token and not settings.console_token:
        raise BadInputError(
            "KAFKAORG_CONSOLE_VIEWER_TOKEN is set without KAFKAORG_CONSOLE_TOKEN: set an "
            "operator token too"
        )
    return AccessPolicy(
        operator_token=settings.console_token, viewer_token=settings.console_viewer_token
    )


def run_console(settings: Settings, host: str, port: int) -> None:
    """Serve until interrupted; refuses (BadInputError) an open console beyond loopback."""
    policy = access_policy(settings)
    check_bind(host, policy)
    app = create_app(settings, policy)
    mode = "open (loopback, no token)" if policy.open else "token required"
    log.info("kafkaorg console on http://%s:%d (%s)", host, port, mode)
    server = serve_metrics(settings, "console")
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        if server is not None:
            server.close()
