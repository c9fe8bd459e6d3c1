"""Helpers every command shares: settings, consoles, JSON output, running coroutines."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kafkaorg.config import Settings, get_settings
from kafkaorg.db.session import PG_UNREACHABLE as PG_UNREACHABLE
from kafkaorg.db.session import db_session as db_session
from kafkaorg.errors import BadInputError
from kafkaorg.names import ORG_NAME_RE, TOPIC_NAME_RE

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True)


def count_bar(description: str, *, show: bool = True) -> Progress:
    """A bar of N of M done, on stderr (stdout stays for results and ``--json``), gone
    once finished; ``description`` is a format string over the task (``{task.description}``)."""
    return Progress(
        TextColumn(description),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not show,
    )


def settings() -> Settings:
    return get_settings()


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def check_org_name(org: str) -> str:
    if not ORG_NAME_RE.match(org):
        raise BadInputError(f"org name {org!r} is not valid (it must match {ORG_NAME_RE.pattern})")
    return org


def check_topic_name(topic: str) -> str:
    if topic.startswith("sys.") and TOPIC_NAME_RE.match(topic.removeprefix("sys.")):
        return topic  # sys.audit and sys.dlq may be read, never declared
    if not TOPIC_NAME_RE.match(topic):
        raise BadInputError(
            f"topic name {topic!r} is not valid (it must match {TOPIC_NAME_RE.pattern})"
        )
    return topic
