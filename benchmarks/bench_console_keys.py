"""Key to frame during a full-rate sync, this checkout against a baseline, alternated in one run.

    .venv/bin/python benchmarks/bench_console_keys.py --baseline /work/wt/base \\
        [--records 20000] [--seconds 20] [--presses 200] [--time-scale 10] [--rounds 2]

Each round runs, in a fresh process per version (its own .venv, its own code on PYTHONPATH),
bench_tui.py's key phase as that version's own bench_tui.py defines it: the simulator in its own
process, the engine in its own, the app headless at 140x45, keys handed to the app as its
terminal driver does, the latency ending at the first frame drawn with the key's effect
(see bench_tui.py). New and baseline alternate, so both see the same load; a shared machine's
load moves every figure, so compare them within a round. Added here: the screen's layout
passes per second during the key phase (Textual's `Screen._refresh_layout`), a figure the
machine's load does not move.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHOWN = (
    "p50_ms",
    "p95_ms",
    "max_ms",
    "handled_p95_ms",
    "layouts_per_s",
    "console_cpu_share",
    "engine_cpu_share",
    "sync_rate_per_s",
    "requests_per_s",
)

# Run inside the version under test: its bench_tui's key phase, with layout passes counted.
_PHASE = """
import asyncio, json, sys, tempfile
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import bench_tui as b
from textual.screen import Screen
from canvas_tui.simulator import ADMIN_TOKEN
from canvas_tui.simulator.testing import simulate_process

records, seconds, presses, scale = int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
layouts = [0]
refresh_layout = Screen._refresh_layout
cpu_seconds = b._cpu_seconds
started = []

def counted(self, *args, **kwargs):
    layouts[0] += 1
    return refresh_layout(self, *args, **kwargs)

def phase_starts(pid):
    # bench_tui reads the engine's CPU when the key phase starts (and when it ends)
    if not started:
        started.append(True)
        layouts[0] = 0
    return cpu_seconds(pid)

Screen._refresh_layout = counted
b._cpu_seconds = phase_starts

async def main():
    work = Path(tempfile.mkdtemp(prefix="bench-keys-"))
    csv_path = b.write_csv(work / "enrollments.csv", records)
    with simulate_process("--seed", str(b.SEED), "--time-scale", scale, "--token", ADMIN_TOKEN) as base:
        app = b.console(base, csv_path, work / "run.journal", autostart=True)
        result = await b.key_latency(app, seconds, presses, base)
        result["layouts_per_s"] = round(layouts[0] / seconds, 2)
        print(json.dumps(result))

asyncio.run(main())
"""


def run_version(root: Path, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")
    }
    env.update(PYTHONPATH=str(root), PYTHONPYCACHEPREFIX=str(work / "pycache"))
    done = subprocess.run(
        [
            str(root / ".venv/bin/python"),
            "-c",
            _PHASE,
            str(root / "benchmarks"),
            str(args.records),
            str(args.seconds),
            str(args.presses),
            str(args.time_scale),
        ],
        env=env,
        cwd=work,  # not a checkout: `python -c` puts the current directory first on sys.path
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{root}: the key phase failed\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return {k: result[k] for k in SHOWN if k in result} | {"p90_ms_by_key": result["p90_ms_by_key"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--presses", type=int, default=200)
    parser.add_argument("--time-scale", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-console-keys-"))
    versions = {"new": ROOT, "base": args.baseline.resolve()}
    rounds: list[dict[str, Any]] = []
    for i in range(args.rounds):
        row: dict[str, Any] = {}
        for name in sorted(versions, key=lambda n: (n == "base") ^ (i % 2 == 1)):
            row[name] = {"load_1m": round(os.getloadavg()[0], 2)} | run_version(
                versions[name], args, work
            )
            print(name, row[name], file=sys.stderr)
        row["p95_ratio_new_to_base"] = round(row["new"]["p95_ms"] / row["base"]["p95_ms"], 2)
        rounds.append(row)
    print(
        json.dumps(
            {"args": vars(args) | {"baseline": str(args.baseline)}, "rounds": rounds}, indent=2
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
