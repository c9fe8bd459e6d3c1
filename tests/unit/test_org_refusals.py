"""What may leave an OrgWorkflow handler: only typed, non-retryable ApplicationErrors."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

from kafkaorg.contracts import Refusal, RefusalType
from workflows.refusals import refusals_only


def test_a_refusal_becomes_a_typed_non_retryable_application_error() -> None:
    with pytest.raises(ApplicationError) as info, refusals_only():
        raise Refusal("agent 'x' already exists", RefusalType.ALREADY_EXISTS)
    assert info.value.type == "AlreadyExists" and info.value.non_retryable
    assert info.value.message == "agent 'x' already exists"


def test_a_bug_becomes_an_internal_error_instead_of_failing_the_workflow_task() -> None:
    with pytest.raises(ApplicationError) as info, refusals_only():
        raise KeyError("missing")  # any exception a handler did not mean to raise
    assert info.value.type == RefusalType.INTERNAL.value and info.value.non_retryable
    assert "KeyError" in info.value.message


def test_failures_temporal_already_understands_pass_through() -> None:
    activity_failed = ActivityError(
        "boom",
        scheduled_event_id=1,
        started_event_id=2,
        identity="w",
        activity_type="a",
        activity_id="1",
        retry_state=RetryState.NON_RETRYABLE_FAILURE,
    )
    with pytest.raises(ActivityError), refusals_only():
        raise activity_failed
