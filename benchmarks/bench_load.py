"""CPU of loading a source into the journal, without a network (issue 14).

    .venv/bin/python benchmarks/bench_load.py [--rows 100000] [--runs 2]
    PYTHONPATH=/work/wt/now /work/wt/now/.venv/bin/python benchmarks/bench_load.py  # before

Two measures, each process CPU time (`time.process_time`, the writer thread's SQLite work
included), on a generated enrollments.csv (course, user, role, section, status):

- `load`: the source into a fresh journal (`Journal.load`), as `sync --no-plan` loads it;
- `plan`: what `sync` in plan mode spends besides the network: the count that chooses the
  mode, the plan against rosters already read (a quarter of the rows already enrolled, so in
  place) and the load, rows in place ending done. Code with `PlanBuilder` plans each row as
  the load reads it; code without it plans first, loads, then marks the rows in place (what
  `apply_plan` did).

Only public or long-standing names are used, so the same script measures either tree.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import itertools
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from canvas_tui.config import PlanConfig
from canvas_tui.engine.journal import Journal
from canvas_tui.engine.plan import diff, executor
from canvas_tui.engine.plan.rosters import Roster
from canvas_tui.sources.csv import CsvSource

COURSES = 1500


def write_source(path: Path, rows: int) -> dict[str, Roster]:
    """The CSV, and the rosters a plan reads for it (every fourth row already enrolled)."""
    rosters: dict[str, Roster] = {}
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["course_id", "user_id", "role", "section_id", "status"])
        for i in range(rows):
            course, user = f"CRS-{i % COURSES:05d}", f"U{1_000_000 + i:08d}"
            section = f"{course}-S01"
            writer.writerow([course, user, "student", section, "active"])
            scope = f"course/sis_course_id:{course}"
            roster = rosters.setdefault(scope, Roster(scope, pages=1))
            if i % 4 == 0:
                roster.enrollments.append(enrollment(i, course, user, section))
    return rosters


def enrollment(i: int, course: str, user: str, section: str) -> dict[str, Any]:
    return {
        "id": i + 1,
        "user_id": i + 1,
        "course_id": i % COURSES + 1,
        "course_section_id": 10_000 + i % COURSES,
        "sis_user_id": user,
        "sis_course_id": course,
        "sis_section_id": section,
        "type": "StudentEnrollment",
        "role": "StudentEnrollment",
        "enrollment_state": "active",
        "limit_privileges_to_course_section": False,
        "sis_import_id": 1,
        "associated_user_id": None,
    }


def load_cpu(path: Path, journal: Path) -> float:
    store = Journal(journal)
    try:
        started = time.process_time()
        store.load(CsvSource(path), description=str(path))
        return time.process_time() - started
    finally:
        store.close()


def plan_cpu(path: Path, journal: Path, rosters: dict[str, Roster]) -> tuple[float, int]:
    source = CsvSource(path)
    store = Journal(journal)
    try:
        started = time.process_time()
        executor.SourceCounts.of(source)  # the count that chooses the mode and the rosters
        builder_type = getattr(diff, "PlanBuilder", None)
        if builder_type is not None:
            builder = builder_type(source, rosters, PlanConfig())
            planned = executor.PlannedSource(source, builder=builder)
            store.load(planned, description=source.description, in_place=planned.in_place)
            plan = builder.plan
        else:  # the code before: plan, load, then mark the rows in place
            plan = diff.build_plan(source, rosters, PlanConfig())
            planned = executor.PlannedSource(source, plan)
            store.load(planned, description=source.description)
            in_place = vars(executor)["_in_place"](plan, planned.changed)  # (the code before)

            async def mark() -> None:
                while batch := list(itertools.islice(in_place, 10_000)):
                    await store.mark_in_place(batch)

            asyncio.run(mark())
        cpu = time.process_time() - started
        return cpu, plan.record_counts().get(diff.Action.NONE, 0)
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.csv"
        rosters = write_source(path, args.rows)
        for run in range(args.runs):
            load = load_cpu(path, Path(tmp) / f"load-{run}.journal")
            plan, in_place = plan_cpu(path, Path(tmp) / f"plan-{run}.journal", rosters)
            print(
                f"run {run + 1}: {args.rows:,} rows: load {load:.2f} s CPU; plan mode (count, "
                f"plan, load; {in_place:,} in place) {plan:.2f} s CPU",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
