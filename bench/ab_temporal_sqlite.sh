#!/usr/bin/env bash
# The local Temporal dev server's SQLite settings, side by side: `bench_agents` (an org of
# N echo agents: its start, one record to all of them) on a fresh Temporal database per
# run, alternating the rollback journal with synchronous=full (SQLite's defaults) and WAL
# with synchronous=normal (`kafkaorg dev`'s default since 2026-12-07).
#
#   bash bench/ab_temporal_sqlite.sh 300 2 bench/results/2026-12-07-agents
#
# Stops and restarts the local stack (`kafkaorg dev`), and deletes its Temporal database.
set -euo pipefail
agents=${1:-300}
pairs=${2:-2}
out=${3:-bench/results/$(date -u +%F)-agents}
mkdir -p "$out"
state=$(python -c 'from kafkaorg.config import get_settings; print(get_settings().state_dir)')
declare -A pragmas=(
  [defaults]="journal_mode=delete,synchronous=full"
  [wal]="journal_mode=wal,synchronous=normal"
)
for pair in $(seq "$pairs"); do
  for variant in defaults wal; do
    kafkaorg dev down >/dev/null 2>&1 || true
    rm -f "$state"/temporal/temporal.db*
    KAFKAORG_TEMPORAL_DEV_SQLITE_PRAGMAS=${pragmas[$variant]} kafkaorg dev up >/dev/null
    echo "== pair $pair: $variant (${pragmas[$variant]})" >&2
    python -m bench.bench_agents --agents "$agents" --configs 32/1000 --idle-s 5 \
      --out "$out/sqlite-$variant-$pair.json" >/dev/null
  done
done
kafkaorg dev down >/dev/null 2>&1 || true
python - "$out" <<'PY'
import json, statistics, sys
from pathlib import Path
rows = {}
for path in sorted(Path(sys.argv[1]).glob("sqlite-*.json")):
    variant = path.stem.split("-")[1]
    config = json.loads(path.read_text())["configs"][0]
    rows.setdefault(variant, []).append(config)
for variant, configs in rows.items():
    start = statistics.median(c["start_s"] for c in configs)
    fanout = statistics.median(c["fanout_all_outputs_s"] for c in configs)
    runs = ", ".join(f'{c["start_s"]}/{c["fanout_all_outputs_s"]}' for c in configs)
    print(f"{variant:9s} start s median {start:6.1f}  fan-out s median {fanout:6.1f}  ({runs})")
PY
