"""Per-org model-call places and the reading of a provider's ``Retry-After``."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from kafkaorg.llm.limits import MAX_RETRY_AFTER, OrgAtCallLimitError, org_call_slot, retry_after


def test_retry_after_in_seconds_milliseconds_and_as_a_date() -> None:
    assert retry_after({"Retry-After": "3"}) == timedelta(seconds=3)
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == timedelta(seconds=1.5)
    now = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after({"Retry-After": "Tue, 01 Dec 2026 12:00:07 GMT"}, now=now) == timedelta(
        seconds=7
    )


@pytest.mark.parametrize("value", ["", "soon", "-4", "0", "Tue, 01 Dec 2020 12:00:07 GMT"])
def test_retry_after_that_asks_for_nothing_usable_is_none(value: str) -> None:
    assert retry_after({"Retry-After": value}) is None
    assert retry_after({}) is None


def test_a_retry_after_of_an_hour_is_capped() -> None:
    assert retry_after({"Retry-After": "3600"}) == MAX_RETRY_AFTER


def test_an_org_never_has_more_calls_in_flight_than_its_limit() -> None:
    in_flight, most = 0, 0
    lock = threading.Lock()

    def call() -> None:
        nonlocal in_flight, most
        with org_call_slot("busy", limit=2, wait_s=10):
            with lock:
                in_flight += 1
                most = max(most, in_flight)
            time.sleep(0.05)
            with lock:
                in_flight -= 1

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == 2


def test_another_org_does_not_wait_for_a_full_one() -> None:
    with org_call_slot("full", limit=1, wait_s=1):
        with org_call_slot("other", limit=1, wait_s=0.01) as waited:
            assert waited < 0.01
        with (
            pytest.raises(OrgAtCallLimitError, match="org full had 1 model calls in flight"),
            org_call_slot("full", limit=1, wait_s=0.05),
        ):
            pass
