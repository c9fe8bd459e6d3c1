"""Every test here needs the machine's one stack, so each takes its lock first."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_stack_per_machine(machine_lock: None) -> None:
    """Even a test that starts its own stack (test_devstack.py) waits for another suite's."""
