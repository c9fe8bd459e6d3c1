"""Sandbox benchmark: what a jail costs over running the same Python bare.

Two workloads, each run N times in the nsjail sandbox (``run_in_sandbox``, the
exact path of the ``run_code`` activity: temp dir, code file, per-run cgroup,
nsjail, output capture, clean-up) and N times as a plain subprocess of the
same interpreter with the same flags (temp dir, code file, ``subprocess.run``):

* **start-up**: an empty program, so the time is all set-up and teardown;
* **json tool**: a small tool that reads JSON on stdin and writes JSON.

Jailed and plain runs alternate (order flipped every round) so both see the
same machine load. Run from the repository root::

    python -m bench.bench_sandbox --runs 50
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from kafkaorg.sandbox import SandboxPolicy, host_capabilities, run_in_sandbox

JSON_TOOL = """\
import json, sys
data = json.load(sys.stdin)
words = data["text"].split()
print(json.dumps({"words": len(words), "longest": max(words, key=len), "echo": data["meta"]}))
"""
JSON_INPUT = json.dumps(
    {"text": "the quick brown fox jumps over the lazy dog " * 50, "meta": {"id": 7}}
).encode()

WORKLOADS = {"start-up": ("", b""), "json tool": (JSON_TOOL, JSON_INPUT)}
"""``start-up`` runs an empty program: all of its time is set-up and teardown."""


@dataclass
class Row:
    workload: str
    mode: str
    runs: int
    median_ms: float
    p99_ms: float
    mean_ms: float


def p99(samples: list[float]) -> float:
    """Nearest-rank 99th percentile (with 50 runs: the largest)."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def run_jailed(code: str, stdin: bytes, policy: SandboxPolicy) -> float:
    start = time.perf_counter()
    result = run_in_sandbox(code, stdin, policy)
    elapsed = time.perf_counter() - start
    if not result.ok:
        raise SystemExit(f"jailed run failed: {result.limit_hit} {result.stderr[-300:]}")
    return elapsed


def run_plain(code: str, stdin: bytes, interpreter: str) -> float:
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="kafkaorg-bench-"))
    try:
        (work / "tool.py").write_text(code)
        done = subprocess.run(
            [interpreter, "-I", "-B", "-X", "utf8", str(work / "tool.py")],
            input=stdin,
            capture_output=True,
            cwd=work,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(work)},
            check=False,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"plain run failed: {done.stderr[-300:]!r}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()

    caps = host_capabilities()
    if not caps.can_run:
        print("error: sandbox unavailable: " + "; ".join(caps.problems()), file=sys.stderr)
        raise SystemExit(1)
    assert caps.interpreter is not None
    policy = SandboxPolicy()
    samples: dict[tuple[str, str], list[float]] = {}
    for name, (code, stdin) in WORKLOADS.items():
        for _ in range(args.warmup):
            run_jailed(code, stdin, policy)
            run_plain(code, stdin, caps.interpreter)
        jailed = samples.setdefault((name, "nsjail"), [])
        plain = samples.setdefault((name, "plain"), [])
        for i in range(args.runs):
            if i % 2:
                plain.append(run_plain(code, stdin, caps.interpreter))
                jailed.append(run_jailed(code, stdin, policy))
            else:
                jailed.append(run_jailed(code, stdin, policy))
                plain.append(run_plain(code, stdin, caps.interpreter))

    rows = [
        Row(
            workload=name,
            mode=mode,
            runs=len(s),
            median_ms=statistics.median(s) * 1000,
            p99_ms=p99(s) * 1000,
            mean_ms=statistics.fmean(s) * 1000,
        )
        for (name, mode), s in samples.items()
    ]
    by_key = {(r.workload, r.mode): r for r in rows}
    ratios = {
        name: {
            "median": by_key[(name, "nsjail")].median_ms / by_key[(name, "plain")].median_ms,
            "p99": by_key[(name, "nsjail")].p99_ms / by_key[(name, "plain")].p99_ms,
            "overhead_median_ms": by_key[(name, "nsjail")].median_ms
            - by_key[(name, "plain")].median_ms,
        }
        for name in WORKLOADS
    }
    machine = (
        f"{os.cpu_count()} CPU · Python {platform.python_version()} (jailed: {caps.interpreter}) · "
        f"Linux {platform.release()} · load {' '.join(f'{x:.2f}' for x in os.getloadavg())} · "
        f"cgroups memory={'on' if caps.memory.usable else 'off'} "
        f"pids={'on' if caps.pids.usable else 'off'}"
    )
    if args.json:
        report = {"machine": machine, "rows": [asdict(r) for r in rows], "ratios": ratios}
        print(json.dumps(report, indent=2))
        return
    table = Table(title=f"sandbox vs plain subprocess, {args.runs} runs each")
    columns = ("workload", "mode", "median ms", "p99 ms", "mean ms", "ratio median", "ratio p99")
    for col in columns:
        table.add_column(col, justify="left" if col in ("workload", "mode") else "right")
    for r in rows:
        jailed_row = r.mode == "nsjail"
        table.add_row(
            r.workload,
            r.mode,
            f"{r.median_ms:.1f}",
            f"{r.p99_ms:.1f}",
            f"{r.mean_ms:.1f}",
            f"{ratios[r.workload]['median']:.2f}" if jailed_row else "",
            f"{ratios[r.workload]['p99']:.2f}" if jailed_row else "",
        )
    console = Console(width=max(100, Console().width))
    console.print(table)
    console.print(machine, highlight=False)


if __name__ == "__main__":
    main()
