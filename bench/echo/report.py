"""The report: the machine measured on, kafkaorg's ratios to the references, the table."""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path
from typing import Any

from rich.table import Table

from bench.echo.harness import PHASES, PhaseResult


def machine() -> dict[str, Any]:
    """What the numbers were measured on; a 2-core shared VM and a workstation differ a lot."""
    model = "unknown"
    memory_gib = math.nan
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gib": memory_gib,
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def machine_line(m: dict[str, Any]) -> str:
    return (
        f"{m['nproc']} CPU · {m['memory_gib']} GiB · {m['cpu_model']} · Python {m['python']} · "
        f"load {' '.join(str(x) for x in m['load_average_at_start'])}"
    )


def ratios(results: dict[str, PhaseResult]) -> dict[str, float]:
    """Throughput ratios of kafkaorg against the two references measured in this run."""
    out: dict[str, float] = {}
    platform_rate = results["kafkaorg"].records_per_s if "kafkaorg" in results else 0.0
    for other in ("ceiling", "floor"):
        if platform_rate and other in results and results[other].records_per_s:
            out[f"kafkaorg/{other}"] = round(platform_rate / results[other].records_per_s, 3)
    return out


def render(report: dict[str, Any], results: dict[str, PhaseResult]) -> Table:
    table = Table(title="echo agent, end to end (open-loop burst)", title_justify="left")
    for column in ("design", "records", "records/s", "p50 ms", "p99 ms", "note"):
        table.add_column(column, justify="left" if column in ("design", "note") else "right")
    for name in PHASES:
        if name not in results:
            continue
        r = results[name]
        received = f"{r.received}" if r.complete else f"{r.received}/{r.records}"
        table.add_row(
            name,
            received,
            f"{r.records_per_s:,.0f}",
            f"{r.p50_ms:,.0f}",
            f"{r.p99_ms:,.0f}",
            r.note,
        )
    captions = [f"{k} = {v:g}" for k, v in report["ratios"].items()]
    captions.append(machine_line(report["machine"]))
    table.caption = " · ".join(captions[:-1]) + ("\n" if len(captions) > 1 else "") + captions[-1]
    table.caption_justify = "left"
    return table


def write_report(report: dict[str, Any], out: Path | None) -> None:
    """The whole report to ``out`` (if given) as JSON, its summary to stdout."""
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["summary"], indent=2))
