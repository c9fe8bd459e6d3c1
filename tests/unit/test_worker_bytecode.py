"""The worker caches the workflow modules' bytecode, which the sandbox loads per instance."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

import workflows.flow
from workers.worker import cache_workflow_bytecode


def test_the_worker_writes_workflow_bytecode_even_where_python_would_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cached = Path(importlib.util.cache_from_source(workflows.flow.__file__))
    cached.unlink(missing_ok=True)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)

    cache_workflow_bytecode()

    assert cached.is_file()
    assert cached.stat().st_mtime >= Path(workflows.flow.__file__).stat().st_mtime
