"""CPU per wall second of an idle `sync`: every place taken, answers rare (issue 14).

    .venv/bin/python benchmarks/bench_idle_cpu.py [CHECKOUT] [--start 25] [--window 30]

Runs `canvas-tui sync` (CHECKOUT's .venv and source; this checkout by default) on 22 records
against `canvas-tui simulate` with a POST latency of 20 world s at time scale 1: after the first
answer all 11 places are taken for ~20 s at a time (the run takes ~2 min). Reads the process's
utime + stime from /proc/PID/stat at `--start` s and `--window` s later; what it spends then is
what a run spends per second of wall time whatever its pace (timers, ticks). /proc counts in
clock ticks (10 ms): over 30 s a figure moves in steps of 0.33 ms a second.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from bench_sync import TOKEN, WorldSpec, simulator, workload, write_inputs

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path, nargs="?", default=ROOT)
    parser.add_argument("--start", type=float, default=25.0, help="seconds after the start")
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured")
    args = parser.parse_args(argv)
    code = args.checkout.resolve()
    work = Path(tempfile.mkdtemp(prefix="bench-idle-cpu-"))
    csv_path, _ = write_inputs(workload(22), work)
    spec = WorldSpec("latency-bound", 0.1, 429, 20.0, 1.0, 22)
    with simulator(spec) as base:
        env = dict(
            os.environ,
            CANVAS_BASE_URL=base,
            CANVAS_API_TOKEN=TOKEN,
            PYTHONPATH=str(code),
            HOME=str(work),
            XDG_CONFIG_HOME=str(work / "config"),
            XDG_STATE_HOME=str(work / "state"),
            XDG_DATA_HOME=str(work / "data"),
        )
        env.pop("CANVAS_TUI_CONFIG", None)
        command = [str(code / ".venv" / "bin" / "python"), "-m", "canvas_tui", "sync"]
        command += [str(csv_path), "--journal", str(work / "sync.journal"), "--log-format", "json"]
        started = time.monotonic()
        process = subprocess.Popen(command, env=env, cwd=work, stdout=subprocess.DEVNULL)
        time.sleep(args.start)
        t0, c0 = time.monotonic(), cpu_seconds(process.pid)
        time.sleep(args.window)
        t1, c1 = time.monotonic(), cpu_seconds(process.pid)
        code_rc = process.wait()
    per_second = 1000 * (c1 - c0) / (t1 - t0)
    print(
        f"{code}: {per_second:.2f} ms of CPU per wall second over {t1 - t0:.1f} s;"
        f" exit {code_rc} after {time.monotonic() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
