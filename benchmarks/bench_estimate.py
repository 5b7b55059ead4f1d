"""Does `check --deep`'s time estimate hold? Estimate, then sync, on two differently sized sources.

    .venv/bin/python benchmarks/bench_estimate.py [--sizes 600,2400] [--time-scale 2]

For each size: a fresh simulator in its own process (`canvas-tui simulate --seed 7`, time-scaled),
a source of that many new enrollments (benchmarks/bench_plan.py's), then (1) the deep check's
preflight (GETs only; engine/preflight.py -> engine/estimate.py) and its estimate for the mode
`sync` picks on its own, (2) a real headless sync (open_session + prepare_sync + runner) timed
from start to finish. Target (issue 12): the estimate's middle within +-30 % of the actual time,
and the actual time inside the printed range.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from bench_plan import SEED, sync, write_source

from canvas_tui.canvas.client import CanvasClient
from canvas_tui.canvas.governor import Governor
from canvas_tui.config import CanvasConfig, Config, Secret, SyncConfig
from canvas_tui.engine.plan.executor import read_items
from canvas_tui.engine.preflight import deep_check
from canvas_tui.simulator import ADMIN_TOKEN
from canvas_tui.simulator.testing import simulate_process
from canvas_tui.sources import CsvSource

TOLERANCE = 0.30


def config_for(base_url: str, journal_dir: Path) -> Config:
    return Config(
        canvas=CanvasConfig(base_url=base_url, token=Secret(ADMIN_TOKEN)),
        sync=SyncConfig(journal_dir=journal_dir),
    )


async def estimate(config: Config, source: Path, time_scale: float) -> dict[str, Any]:
    # The governor is told the leak in wall-clock units, as the sync's is (bench_sync.py).
    client = CanvasClient(
        config.canvas.base_url, ADMIN_TOKEN, governor=Governor(leak=10.0 * time_scale)
    )
    try:
        items = await asyncio.to_thread(read_items, CsvSource(source))
        result, _plan = await deep_check(client, items, config)
    finally:
        await client.aclose()
    (chosen,) = [e for e in result.estimates if e.chosen]
    assert chosen.span is not None
    return {
        "mode": chosen.mode,
        "requests": chosen.requests,
        "low": round(chosen.span.low, 2),
        "middle": round(chosen.span.middle, 2),
        "high": round(chosen.span.high, 2),
        "get_latency_ms": round((result.mean_latency or 0) * 1000, 1),
        "get_cost": result.average_cost,
    }


def one(size: int, time_scale: float, work: Path) -> dict[str, Any]:
    source = work / f"enrollments-{size}.csv"
    courses = write_source(source, size)
    with simulate_process("--seed", str(SEED), "--time-scale", str(time_scale)) as base_url:
        config = config_for(base_url, work / f"runs-{size}")
        guess = asyncio.run(estimate(config, source, time_scale))
        journal = work / f"runs-{size}" / "sync.journal"
        actual = asyncio.run(sync(base_url, source, journal, plan=None, time_scale=time_scale))
    error = guess["middle"] / actual["seconds"] - 1
    return {
        "records": size,
        "courses": courses,
        "estimate": guess,
        "sync": actual,
        "error": round(error, 3),
        "within_tolerance": abs(error) <= TOLERANCE,
        "inside_range": guess["low"] <= actual["seconds"] <= guess["high"],
        "same_mode": guess["mode"] == actual["mode"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="600,2400", help="comma-separated record counts")
    parser.add_argument("--time-scale", type=float, default=2.0)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-estimate-") as tmp:
        rows = [one(size, args.time_scale, Path(tmp)) for size in sizes]
    print(json.dumps({"time_scale": args.time_scale, "load_before": load, "runs": rows}, indent=2))
    for r in rows:
        e, s = r["estimate"], r["sync"]
        print(
            f"{r['records']:6d} records ({s['mode']}): estimate {e['low']:.1f}-{e['high']:.1f} s "
            f"(middle {e['middle']:.1f}), actual {s['seconds']:.1f} s, error {r['error']:+.0%}, "
            f"{s['requests']} requests, {s['throttled']} throttled"
        )
    print(f"load average before {load[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    ok = all(r["within_tolerance"] and r["same_mode"] for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
