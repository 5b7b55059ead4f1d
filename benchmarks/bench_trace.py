"""`canvas-tui trace USER` over a term of journals: 100 runs x 100,000 records (issue 17).

    .venv/bin/python benchmarks/bench_trace.py [--runs 100] [--records 100000] [--keep DIR]

One journal is built as `sync` fills it (bench_journal.py: a generated enrollments.csv loaded,
every record claimed, given the client's attempts, a GET then the POST, 1 in 20 throttled
first, 1 in 50 failing with a 404, and settled), then copied `--runs` times into one directory.
The trace of one person is timed three ways: in process (engine/trace.py, the journals only),
the whole command in a fresh interpreter (`canvas-tui trace U --journal-dir D --no-source
--json`, wall time: start-up included), and the same command with the person's source read too
(a 100,000-row CSV). The first command run is "cold" as far as this process can make it (the
copies were just written, so the page cache may still hold them); the rest are warm.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_journal import run as settle_all
from bench_journal import write_csv

from canvas_tui.engine.journal import Journal
from canvas_tui.engine.trace import TraceRequest, trace
from canvas_tui.sources.csv import CsvSource

PERSON = "U01000042"  # row 42 of bench_journal's CSV: done, one GET and one POST


def build(directory: Path, runs: int, records: int) -> Path:
    source = directory / "enrollments.csv"
    write_csv(source, records)
    first = directory / "runs" / "run-000.journal"
    first.parent.mkdir()
    journal = Journal(first)
    journal.load(CsvSource(source), description=str(source))
    asyncio.run(settle_all(journal))
    journal.close()
    for n in range(1, runs):
        shutil.copyfile(first, first.with_name(f"run-{n:03d}.journal"))
    return source


def command(directory: Path, *extra: str) -> float:
    began = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "canvas_tui",
            "trace",
            PERSON,
            "--journal-dir",
            str(directory / "runs"),
            "--json",
            *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "XDG_CONFIG_HOME": str(directory / "no-config")},
    )
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"trace exited {done.returncode}: {done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", metavar="DIR", help="build in DIR and keep it (reused if built)")
    args = parser.parse_args()
    directory = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-trace-"))
    try:
        runs_dir = directory / "runs"
        if not (runs_dir.is_dir() and len(list(runs_dir.glob("*.journal"))) == args.runs):
            directory.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(runs_dir, ignore_errors=True)
            began = time.perf_counter()
            build(directory, args.runs, args.records)
            print(
                f"built {args.runs} journals of {args.records:,} records in "
                f"{time.perf_counter() - began:.1f} s"
            )
        source = directory / "enrollments.csv"
        journals = sorted(runs_dir.glob("*.journal"))
        size = sum(p.stat().st_size for p in journals)
        print(f"{len(journals)} journals, {size / 1e6:,.0f} MB; load average {os.getloadavg()}")
        cold = command(directory, "--no-source")
        print(f"command, journals only, first run: {cold:.3f} s")
        warm = [command(directory, "--no-source") for _ in range(args.repeat)]
        print(
            f"command, journals only, warm: median {statistics.median(warm):.3f} s, "
            f"min {min(warm):.3f}, max {max(warm):.3f} ({args.repeat} runs)"
        )
        inside = []
        for _ in range(args.repeat):
            found = trace(TraceRequest(PERSON, journals=journals))
            inside.append(found.elapsed)
        assert len(found.records) == args.runs, len(found.records)
        print(
            f"in process, journals only: median {statistics.median(inside):.3f} s, "
            f"min {min(inside):.3f} ({len(found.records)} records, "
            f"{sum(len(r.attempts) for r in found.records)} attempts)"
        )
        with_source = [
            command(directory, "--source", str(source)) for _ in range(max(2, args.repeat // 2))
        ]
        print(
            f"command, journals + the {args.records:,}-row source: median "
            f"{statistics.median(with_source):.3f} s"
        )
        print(f"load average after: {os.getloadavg()}")
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
