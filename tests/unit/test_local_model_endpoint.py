"""The local model of ``dev up --llm`` is the endpoint when none is given, and only then."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from kafkaorg.config import LOCAL_MODEL_ANNOUNCEMENT, Settings


def _announce(state_dir: Path, pid: int) -> None:
    path = state_dir / LOCAL_MODEL_ANNOUNCEMENT
    path.parent.mkdir(parents=True)
    path.write_text(
        json.dumps({"base_url": "http://127.0.0.1:8250/v1", "model": "smol", "pid": pid})
    )


@pytest.fixture(autouse=True)
def _no_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KAFKAORG_LLM_BASE_URL", "KAFKAORG_LLM_MODEL"):
        monkeypatch.delenv(name, raising=False)


def test_a_running_local_model_is_the_endpoint(tmp_path: Path) -> None:
    _announce(tmp_path, os.getpid())
    settings = Settings(state_dir=tmp_path)
    assert (settings.llm_base_url, settings.llm_model) == ("http://127.0.0.1:8250/v1", "smol")
    assert settings.llm_max_tokens_param == "max_tokens"  # llama-cpp-python ignores the other
    assert (settings.llm_max_tokens, settings.llm_max_retries) == (256, 0)


def test_a_given_endpoint_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _announce(tmp_path, os.getpid())
    monkeypatch.setenv("KAFKAORG_LLM_BASE_URL", "http://models.example/v1")
    monkeypatch.setenv("KAFKAORG_LLM_MODEL", "big")
    settings = Settings(state_dir=tmp_path)
    assert (settings.llm_base_url, settings.llm_model) == ("http://models.example/v1", "big")
    assert settings.llm_max_tokens_param == "max_completion_tokens"


def test_a_dead_local_model_is_no_endpoint(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    _announce(tmp_path, gone.pid)
    assert Settings(state_dir=tmp_path).llm_base_url is None


def test_a_broken_announcement_is_no_endpoint(tmp_path: Path) -> None:
    path = tmp_path / LOCAL_MODEL_ANNOUNCEMENT
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert Settings(state_dir=tmp_path).llm_base_url is None
    assert Settings(state_dir=tmp_path / "elsewhere").llm_base_url is None
