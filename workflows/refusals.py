"""What may leave a workflow handler: typed, non-retryable ``ApplicationError``s only.

In a Temporal handler, an exception that is not a ``FailureError`` fails the
workflow *task*: it is retried forever, and every later update, signal and timer of
the workflow waits behind it. Handlers therefore run inside ``refusals_only``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError, TemporalError

with workflow.unsafe.imports_passed_through():
    from kafkaorg.contracts import Refusal, RefusalType


@contextmanager
def refusals_only() -> Iterator[None]:
    """Whatever goes wrong in a handler fails that request, never the workflow task.

    ``Refusal``s become typed ``ApplicationError``s; a bug (any other exception) is
    reported to the caller as ``InternalError`` instead of wedging the org, whose
    every later update, signal and timer would wait behind a failing task.
    """
    try:
        yield
    except Refusal as refusal:
        raise ApplicationError(str(refusal), type=refusal.type.value, non_retryable=True) from None
    except (FailureError, TemporalError):
        raise  # an ActivityError, or an ApplicationError already typed; non-determinism
    except Exception as exc:
        if workflow.in_workflow():
            workflow.logger.exception("org handler failed; the request is refused")
        raise ApplicationError(
            f"internal error ({type(exc).__name__}: {exc})",
            type=RefusalType.INTERNAL.value,
            non_retryable=True,
        ) from None


def check(problems: list[Refusal]) -> None:
    """Refuse with every problem at once; the first one's type names the refusal."""
    if problems:
        raise Refusal("; ".join(str(p) for p in problems), problems[0].type)
