"""The console queue's window reads over a large journal: `Journal.rows(offset, limit, state=...,
order=...)` as the queue asks for them (issue 14), timed per filter and sort order.

    .venv/bin/python benchmarks/bench_queue_window.py JOURNAL [--code /work/wt/base] [--repeat 5]

JOURNAL is opened read-only, as the console opens the engine's journal (a copy is not made: the
reads change nothing). For every state filter (none, pending, done, failed) and every order the
queue offers, the window of 120 rows (a 40-line table's span: `VirtualTable.window_span`) is read
at the top, a tenth of the way down, the middle and the bottom of the list; each figure is the
median of `--repeat` reads, in milliseconds of wall clock and of this thread's CPU. The total
of matching rows is passed as the queue passes it, where `rows` takes one. With `--code`
the same reads run with another checkout's `canvas_tui` (its `Journal`) in a child process, so two
versions can be compared on one journal (or each on its own journal, built by its own load path:
bench_console_start.py's cache).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ORDERS = ("record_id", "-updated_at", "state", "course", "user", "category")
STATES = (None, "pending", "done", "failed")
WINDOW = 120
PLACES = (("top", 0.0), ("10%", 0.1), ("middle", 0.5), ("bottom", 1.0))


def measure(journal_path: Path, repeat: int) -> list[dict[str, object]]:
    from canvas_tui.engine.journal import Journal
    from canvas_tui.records import State

    journal = Journal(journal_path, read_only=True)
    # the queue passes the total where the store takes it (a window near the end reads from it)
    hint = "total" in inspect.signature(journal.rows).parameters
    out: list[dict[str, object]] = []
    try:
        for state_name in STATES:
            state = State(state_name) if state_name else None
            total = journal.count(state)
            for order in ORDERS:
                for place, share in PLACES:
                    offset = max(0, min(int(total * share), total - WINDOW))
                    walls, cpus = [], []
                    for _ in range(repeat):
                        wall, cpu = time.perf_counter(), time.thread_time()
                        given = {"total": total} if hint else {}
                        rows = journal.rows(offset, WINDOW, state=state, order=order, **given)
                        cpus.append(time.thread_time() - cpu)
                        walls.append(time.perf_counter() - wall)
                    assert len(rows) == min(WINDOW, total), (state_name, order, offset, len(rows))
                    out.append(
                        {
                            "state": state_name or "all",
                            "order": order,
                            "place": place,
                            "offset": offset,
                            "wall_ms": round(statistics.median(walls) * 1000, 1),
                            "cpu_ms": round(statistics.median(cpus) * 1000, 1),
                        }
                    )
    finally:
        journal.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("journal", type=Path)
    parser.add_argument("--code", type=Path, help="another checkout whose canvas_tui reads")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.code:
        env = {**os.environ, "PYTHONPATH": str(args.code)}
        argv = [sys.executable, __file__, str(args.journal), "--repeat", str(args.repeat), "--json"]
        found = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
        results = json.loads(found.stdout)
    else:
        results = measure(args.journal, args.repeat)
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"load average {os.getloadavg()}; {args.journal}")
    print(f"{'state':<8} {'order':<12} " + " ".join(f"{p:>16}" for p, _ in PLACES))
    for state in dict.fromkeys(str(r["state"]) for r in results):
        for order in ORDERS:
            cells = [r for r in results if r["state"] == state and r["order"] == order]
            print(
                f"{state:<8} {order:<12} "
                + " ".join(f"{r['wall_ms']:>7} ({r['cpu_ms']:>6})" for r in cells)
            )
    print("(median ms wall (thread CPU ms) per 120-row window at top, 10 %, middle, bottom)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
