"""Fault matrix: `canvas-tui sync` against a Canvas having a bad day, one fault mix at a time.

    .venv/bin/python benchmarks/bench_faults.py [--records 300] [--markdown docs/fault-matrix.md]

Each mix runs the real command, `canvas-tui sync` in a process of its own (JSON lines, its own
journal), against the simulator on a loopback socket with that mix's seeded faults. The simulator
is served from this process, so that its world outlives a "Canvas killed" mix (the socket server
is stopped mid-run and later started again on the same port, like a restarted Canvas) and so that
every record can be checked against what Canvas really holds afterwards:

- lost: records the journal calls done whose enrollment Canvas does not have, plus records left
  neither final nor pending (a run that says it finished must account for every record);
- duplicated: the simulator's own count of a second enrollment for the same user/course/role;
- pending: records not yet sent (expected only after exit 3: a stopped run, resumable).

The workload is bench_sync's: N new enrollments in the seed-7 world (1 % TA rows).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_sync import SEED, TOKEN, workload, write_inputs

from canvas_tui.simulator import SimConfig, Simulator, World, build_app
from canvas_tui.simulator.faults import parse_faults
from canvas_tui.simulator.testing import free_port, serve_in_thread

RUN_LIMIT = 600.0  # seconds one sync may take before the benchmark gives up on it
TIMEOUT = 2.0  # [canvas] timeout of every run: the probe's setting, which the drip used to beat


@dataclass(frozen=True)
class Mix:
    name: str
    faults: str  # a `--faults` spec (simulator/faults.py)
    rate: str  # what the table shows
    storms: bool = False  # fill the token's bucket to the brim every 10 s
    kill_at: float | None = None  # stop Canvas when this share of records is created


MIXES = (
    Mix("none", "", "0 %"),
    Mix("throttle storms", "", "bucket filled to 590/600 every 10 s", storms=True),
    Mix("5xx (500 + HTML 503)", "500=0.15,503=0.15", "30 %"),
    Mix("connection resets", "reset=0.3", "30 % (half after the write)"),
    Mix("wrong-shape 200", "shape=0.3", "30 %"),
    Mix("drip (1 byte / 0.25 s)", "drip=0.05,drip_seconds=0.25", "5 %"),
    Mix("everything at once", "500=0.1,503=0.1,reset=0.15,shape=0.1,drip=0.02", "47 %"),
    Mix(
        "everything + storms",
        "500=0.1,503=0.1,reset=0.15,shape=0.1,drip=0.02",
        "47 % + storms",
        True,
    ),
    Mix("Canvas killed mid-run", "", "killed at 40 %, back after exit", kill_at=0.4),
)


@dataclass
class Row:
    mix: Mix
    records: int
    runs: list[tuple[int, float]] = field(default_factory=list)  # (exit code, seconds) per run
    done: int = 0
    failed: int = 0
    pending: int = 0
    lost: int = 0
    duplicated: int = 0
    requests: int = 0


def _sync(work: Path, base_url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "CANVAS_BASE_URL": base_url, "CANVAS_API_TOKEN": TOKEN}
    command = [sys.executable, "-m", "canvas_tui", "sync", "-c", "canvas-tui.toml"]
    command += ["enrollments.csv", "--journal", "run.journal", "--log-format", "json"]
    return subprocess.Popen(
        command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _storms(app: Simulator, stop: threading.Event) -> None:
    while not stop.wait(10.0):  # about 5 s of refusals each time, at a leak of 10/s
        with app.lock:
            app.token_bucket(TOKEN).fill(590.0)


def _wait(proc: subprocess.Popen[str], until: Callable[[], bool] | None = None) -> tuple[int, str]:
    """Wait for the sync to end (or for `until()`, then return -1); a run still going after
    RUN_LIMIT seconds is killed and shows exit code -9."""
    deadline = time.monotonic() + RUN_LIMIT
    while proc.poll() is None:
        if until is not None and until():
            return -1, ""
        if time.monotonic() > deadline:
            proc.kill()
        time.sleep(0.05)
    _, err = proc.communicate()
    return proc.returncode, err


def run_mix(mix: Mix, records: list[dict[str, Any]], work: Path) -> Row:
    world = World.generate(SEED)
    app = build_app(SimConfig(seed=SEED, faults=parse_faults(mix.faults), tokens=(TOKEN,)), world)
    work.mkdir()
    write_inputs(records, work)
    (work / "canvas-tui.toml").write_text(f"[canvas]\ntimeout = {TIMEOUT}\n", encoding="utf-8")
    row = Row(mix, len(records))
    port = free_port()
    stop = threading.Event()
    storms = threading.Thread(target=_storms, args=(app, stop), daemon=True)
    with ExitStack() as canvas:
        base_url = canvas.enter_context(serve_in_thread(app, port=port))
        if mix.storms:
            storms.start()
        started = time.monotonic()
        proc = _sync(work, base_url)
        if mix.kill_at is not None:
            target = int(mix.kill_at * len(records))
            _wait(proc, lambda: app.stats()["enrollments_created"] >= target)
            canvas.close()  # Canvas is gone: connections are refused
            code, err = _wait(proc)
            row.runs.append((code, time.monotonic() - started))
            base_url = canvas.enter_context(serve_in_thread(app, port=port))
            started = time.monotonic()
            proc = _sync(work, base_url)  # the operator's (or cron's) next run resumes
        code, err = _wait(proc)
        row.runs.append((code, time.monotonic() - started))
        stop.set()
        if code not in (0, 1, 3):
            print(err, file=sys.stderr)
        stats = app.stats()
    _account(row, work / "run.journal", world, records)
    row.duplicated = int(stats["duplicates"])
    row.requests = int(stats["requests"])
    return row


def _account(row: Row, journal: Path, world: World, records: list[dict[str, Any]]) -> None:
    conn = sqlite3.connect(journal)
    try:
        states = [s for (s,) in conn.execute("SELECT state FROM records ORDER BY record_id")]
    finally:
        conn.close()
    held = {
        (e.user_id, e.course_id) for e in world.enrollments.values() if e.workflow_state == "active"
    }
    for state, record in zip(states, records, strict=True):
        in_canvas = (record["user_id"], record["course_id"]) in held
        if state == "done":
            row.done += 1
            row.lost += not in_canvas
        elif state == "failed":
            row.failed += 1
        elif state == "pending" and row.runs[-1][0] == 3:
            row.pending += 1
        else:
            row.lost += 1  # a finished run left it neither final nor pending


def table(rows: list[Row]) -> str:
    lines = [
        "| fault | rate | records | done | failed | pending | lost | duplicated "
        "| exit code | time (s) | requests |",
        "|---|---|" + "---:|" * 9,
    ]
    for r in rows:
        codes = " then ".join(str(code) for code, _ in r.runs)
        times = " + ".join(f"{seconds:.1f}" for _, seconds in r.runs)
        lines.append(
            f"| {r.mix.name} | {r.mix.rate} | {r.records} | {r.done} | {r.failed} | {r.pending} "
            f"| {r.lost} | {r.duplicated} | {codes} | {times} | {r.requests} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300)
    parser.add_argument("--mixes", help="comma-separated names (default: all)")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    wanted = set(args.mixes.split(",")) if args.mixes else None
    records = workload(args.records)
    rows: list[Row] = []
    load_before = os.getloadavg()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        for k, mix in enumerate(MIXES):
            if wanted is not None and mix.name not in wanted:
                continue
            row = run_mix(mix, records, Path(tmp) / f"mix{k}")
            rows.append(row)
            print(
                json.dumps({"mix": mix.name, "runs": row.runs, "lost": row.lost}), file=sys.stderr
            )
    load_after = os.getloadavg()
    text = "\n".join(
        [
            f"`{' '.join(['benchmarks/bench_faults.py', *(argv or sys.argv[1:])])}`: "
            f"{args.records} records per mix, simulator at time scale 1 (create latency "
            f"0.25 s +/- 40 %), `[canvas] timeout = {TIMEOUT}`, {os.cpu_count()} cores, "
            f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
            f"total {time.monotonic() - started:.0f} s.",
            "",
            table(rows),
        ]
    )
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
