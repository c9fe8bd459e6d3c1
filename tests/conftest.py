"""Session fixtures: the real stack (started here when it is not running), worker and bridge.

Each test gets its own org name and topics, so tests never share state; the
worker and bridge are real ``kafkaorg`` processes, so a test can SIGKILL them.

One stack per machine: its ports are fixed, so a second suite (another checkout, a
bench) waits on ``/tmp/kafkaorg-stack.lock`` until the first is done. Do not wrap
pytest in ``flock`` on that file yourself: the suite takes it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# Started here, the stack keeps its data in a throwaway folder: nothing is left behind.
_THROWAWAY_STATE = "KAFKAORG_STATE_DIR" not in os.environ
if _THROWAWAY_STATE:
    os.environ["KAFKAORG_STATE_DIR"] = tempfile.mkdtemp(prefix="kafkaorg-test-state-")
# The archive too; and every org's schedule runs hourly, not every 5 minutes: the suite
# starts hundreds of orgs, and the archive's tests run it when they want it
# (`kafkaorg archive run`, and every org stop).
os.environ.setdefault(
    "KAFKAORG_ARCHIVE_URL", (Path(os.environ["KAFKAORG_STATE_DIR"]) / "archive").as_uri()
)
os.environ.setdefault("KAFKAORG_ARCHIVE_INTERVAL_S", "3600")

from kafkaorg.config import Settings, get_settings  # noqa: E402
from tests.support import Platform, ProcessHandle  # noqa: E402

if TYPE_CHECKING:
    from tests.llm_server import ScriptedLLM


def pytest_unconfigure(config: pytest.Config) -> None:
    """The throwaway state folder goes too, even when no test used the stack."""
    if _THROWAWAY_STATE:
        shutil.rmtree(os.environ["KAFKAORG_STATE_DIR"], ignore_errors=True)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


STACK_LOCK = Path(os.environ.get("KAFKAORG_STACK_LOCK", "/tmp/kafkaorg-stack.lock"))


@pytest.fixture(scope="session")
def machine_lock() -> Iterator[None]:
    """Held for the whole session, so two suites never start two stacks on the same ports."""
    with STACK_LOCK.open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for {STACK_LOCK}: another suite's stack is running", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def stack(settings: Settings, machine_lock: None) -> Iterator[Settings]:
    """The local stack; started (and afterwards stopped) by the suite if it is not up."""
    from kafkaorg.devstack import DevStack

    dev = DevStack(settings)
    started_here = not dev.is_up()
    if started_here:
        dev.install()
        dev.up(workers=False, trace_backend=False)  # Phoenix: test_traces.py starts it
    from kafkaorg.db.migrate import upgrade_to_head

    upgrade_to_head(settings.database_url)
    yield settings
    if started_here:
        dev.down()
        if _THROWAWAY_STATE:  # its data too, wherever the postgres user could reach it
            shutil.rmtree(dev.postgres.fallback_data_dir.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("process-logs")


@pytest.fixture(scope="session")
def scripted_llm() -> Iterator[ScriptedLLM]:
    """The one stand-in: an OpenAI-compatible server with scripted replies, for the worker."""
    from tests.llm_server import ScriptedLLM

    with ScriptedLLM() as llm:
        os.environ["KAFKAORG_LLM_BASE_URL"] = llm.base_url
        yield llm
        os.environ.pop("KAFKAORG_LLM_BASE_URL", None)


@pytest.fixture(scope="session")
def worker(stack: Settings, log_dir: Path, scripted_llm: ScriptedLLM) -> Iterator[ProcessHandle]:
    """Started after the scripted LLM server, so its model calls go there."""
    handle = ProcessHandle("worker", log_dir)
    handle.start()
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def bridge(stack: Settings, log_dir: Path) -> Iterator[ProcessHandle]:
    handle = ProcessHandle("bridge", log_dir)
    handle.start()
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def sandbox_worker(stack: Settings, log_dir: Path) -> Iterator[ProcessHandle]:
    """``kafkaorg sandbox worker``: runs tools' code (and their tests) in nsjail."""
    handle = ProcessHandle("sandbox worker", log_dir)
    handle.start()
    yield handle
    handle.stop()


@pytest.fixture
async def platform(
    stack: Settings, worker: ProcessHandle, bridge: ProcessHandle, sandbox_worker: ProcessHandle
) -> AsyncIterator[Platform]:
    """A connected client to the running platform, with helpers for one test's org."""
    sandbox_worker.ensure_alive()
    p = await Platform.connect(stack, worker=worker, bridge=bridge)
    yield p
    await p.close()
