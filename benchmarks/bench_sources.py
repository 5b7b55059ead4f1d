"""Source speed and memory: parse + validate a Canvas SIS CSV, stream a large SQLite table.

    .venv/bin/python benchmarks/bench_sources.py [--csv-rows 100000] [--sql-rows 1000000]

Data is generated in a temporary directory. Each measurement runs in a fresh interpreter so its
peak RSS (ru_maxrss) is the parse's own, not the generator's; tracemalloc's peak is reported too
(Python allocations only). Targets (issue 4): 100,000 CSV rows in <= 1 s and <= 150 MB.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

COLUMNS = ("course_id", "user_id", "role", "section_id", "status")
ROLES = ("student",) * 30 + ("teacher", "ta", "observer", "designer")
STATUSES = ("active",) * 20 + ("deleted", "completed", "inactive")


def generate_rows(count: int, seed: int = 11) -> list[tuple[str, ...]]:
    rng = random.Random(seed)
    rows = []
    for n in range(count):
        course = f"2026FA-{rng.randrange(2000):04d}"
        rows.append(
            (
                course,
                f"S{n:07d}",  # unique users keep every row a distinct enrollment
                rng.choice(ROLES),
                f"{course}-{rng.randrange(1, 4):02d}",
                rng.choice(STATUSES),
            )
        )
    return rows


def write_csv(path: Path, count: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        writer.writerows(generate_rows(count))


def write_sqlite(path: Path, count: int) -> None:
    db = sqlite3.connect(path)
    db.execute(f"CREATE TABLE enrollments ({', '.join(c + ' TEXT' for c in COLUMNS)})")
    batch = 100_000
    for offset in range(0, count, batch):
        rows = generate_rows(min(batch, count - offset), seed=offset)
        rows = [(c, f"U{offset + i:08d}", r, s, st) for i, (c, _, r, s, st) in enumerate(rows)]
        db.executemany("INSERT INTO enrollments VALUES (?, ?, ?, ?, ?)", rows)
    db.commit()
    db.close()


def measure(kind: str, target: str, trace: bool) -> dict[str, float]:
    """Runs in a child interpreter: consume the whole source, report time, counts, memory."""
    from canvas_tui.records import EnrollmentRecord
    from canvas_tui.sources import CsvSource, SqlSource

    source = (
        CsvSource(target)
        if kind == "csv"
        else SqlSource(f"sqlite:///{target}", "SELECT * FROM enrollments")
    )
    if trace:
        tracemalloc.start()
    started, cpu_started = time.perf_counter(), time.process_time()
    records = problems = 0
    for item in source:
        if isinstance(item, EnrollmentRecord):
            records += 1
        else:
            problems += 1
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    traced = tracemalloc.get_traced_memory()[1] / 2**20 if trace else 0.0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "records": records,
        "problems": problems,
        "peak_rss_mb": rss,
        "traced_peak_mb": traced,
    }


def run_child(kind: str, target: Path, trace: bool) -> dict[str, float]:
    args = [sys.executable, __file__, "--child", kind, str(target)]
    if trace:
        args.append("--trace")
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    result: dict[str, float] = json.loads(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--csv-rows", type=int, default=100_000)
    parser.add_argument("--sql-rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="timed CSV runs (best is reported)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], args.child[1], args.trace)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "enrollments.csv"
        write_csv(csv_path, args.csv_rows)
        size = csv_path.stat().st_size / 2**20
        runs = [run_child("csv", csv_path, trace=False) for _ in range(args.repeat)]
        best = min(runs, key=lambda r: r["seconds"])
        traced = run_child("csv", csv_path, trace=True)
        print(f"CSV {args.csv_rows:,} rows ({size:.1f} MiB)")
        cpu = min(r["cpu_seconds"] for r in runs)
        print(f"  parse+validate: best {best['seconds']:.3f} s wall, {cpu:.3f} s CPU of "
              f"{args.repeat} runs ({args.csv_rows / best['seconds']:,.0f} rows/s)")  # fmt: skip
        print(f"  records {best['records']:,.0f}, problems {best['problems']:,.0f}")
        print(f"  peak RSS {best['peak_rss_mb']:.1f} MB (whole interpreter); "
              f"tracemalloc peak {traced['traced_peak_mb']:.1f} MB")  # fmt: skip

        if args.sql_rows:
            db_path = Path(tmp) / "sis.sqlite"
            write_sqlite(db_path, args.sql_rows)
            sql = run_child("sql", db_path, trace=False)
            print(f"SQLite {args.sql_rows:,} rows streamed")
            print(f"  {sql['seconds']:.2f} s wall, {sql['cpu_seconds']:.2f} s CPU "
                  f"({args.sql_rows / sql['seconds']:,.0f} rows/s), "
                  f"records {sql['records']:,.0f}, problems {sql['problems']:,.0f}")  # fmt: skip
            print(f"  peak RSS {sql['peak_rss_mb']:.1f} MB (whole interpreter)")


if __name__ == "__main__":
    main()
