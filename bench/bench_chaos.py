"""Chaos at scale: the chaos suite's driver at 100,000 records.

The same driver as ``tests/chaos/test_chaos.py``: keyed records through a chain
of two agents while the bridge and the worker are SIGKILLed three times each and
the Kafka broker and the Temporal dev server restarted once each. Prints lost /
doubled / reordered counts, raw duplicates per hop, and recovery times (from an
event until an input sent after it came out of the chain) with their medians.

Run from the repository root; it starts the local stack in its own state folder
(so that it may restart Kafka and Temporal) and its own worker and bridge::

    python -m bench.bench_chaos --records 100000 --out bench/results/chaos-$(date +%F).json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path


async def _main(args: argparse.Namespace) -> int:
    state = Path(tempfile.mkdtemp(prefix="kafkaorg-bench-chaos-"))
    os.environ["KAFKAORG_STATE_DIR"] = str(state)
    from kafkaorg.config import get_settings
    from kafkaorg.db.migrate import upgrade_to_head
    from kafkaorg.devstack import DevStack
    from kafkaorg.temporal import connect_temporal
    from tests.chaos.driver import Restartable, chain_spec, run_chaos
    from tests.support import Platform, ProcessHandle, unique_org

    settings = get_settings()
    stack = DevStack(settings)
    if stack.is_up():
        print(
            "bench_chaos: a stack already answers on these ports; stop it (kafkaorg dev down) "
            "so the bench can start, and restart, one of its own",
            file=sys.stderr,
        )
        return 2
    logs = state / "processes"
    logs.mkdir()
    worker, bridge = ProcessHandle("worker", logs), ProcessHandle("bridge", logs)
    try:
        stack.up(workers=False)
        upgrade_to_head(settings.database_url)
        worker.start()
        bridge.start()
        platform = await Platform.connect(settings, worker=worker, bridge=bridge)
        org = unique_org("chaos")
        await platform.start_org(chain_spec(org, partitions=args.partitions))
        targets = Restartable(
            kill_bridge=bridge.restart_after_kill,
            kill_worker=worker.restart_after_kill,
            stack=stack,
        )
        report = await run_chaos(
            settings,
            await connect_temporal(settings),
            org,
            targets,
            records=args.records,
            keys=args.keys,
            timeout_s=args.timeout,
        )
        await platform.close()
    finally:
        worker.stop()
        bridge.stop()
        stack.down()
        if stack.postgres.data_dir == stack.postgres.fallback_data_dir:
            shutil.rmtree(stack.postgres.fallback_data_dir.parent, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
    print("\n".join(report.lines()))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report.model_dump_json(indent=2))
    return 0 if report.passed else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--keys", type=int, default=500, help="correlation ids (order is per key)")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up after this many s")
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    sys.exit(asyncio.run(_main(parser.parse_args())))


if __name__ == "__main__":
    main()
