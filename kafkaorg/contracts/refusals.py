"""Refusing a request without failing the workflow that refuses it.

In a Temporal handler, any exception that is not a ``FailureError`` fails the
workflow *task*: it is retried forever and the workflow is wedged (every later
update, signal and timer waits behind it). A refusal is therefore always an
``ApplicationError`` with a ``RefusalType``, non-retryable, which fails only the
one update that asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

from temporalio.exceptions import ApplicationError

from kafkaorg.contracts.enums import RefusalType


class Refusal(ValueError):
    """A rule said no. Pure checks raise it; workflows turn it into an ``ApplicationError``."""

    def __init__(self, message: str, type: RefusalType = RefusalType.INVALID_REQUEST) -> None:
        super().__init__(message)
        self.type = type


def refuse(message: str, type: RefusalType = RefusalType.INVALID_REQUEST) -> NoReturn:
    raise ApplicationError(message, type=type.value, non_retryable=True)


def refuse_problems(problems: Sequence[Refusal]) -> None:
    """Refuse with every problem at once (none: no refusal); the first one's type wins."""
    if problems:
        refuse("; ".join(str(p) for p in problems), problems[0].type)


def as_application_error(exc: Refusal) -> ApplicationError:
    return ApplicationError(str(exc), type=exc.type.value, non_retryable=True)
