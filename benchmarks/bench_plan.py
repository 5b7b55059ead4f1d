"""Plan + apply against full mode, on a fully synced 10,000-record source.

    .venv/bin/python benchmarks/bench_plan.py [--records 10000] [--time-scale 10]

The simulator runs in its own process on loopback (`canvas-tui simulate`, seed 7, time-scaled),
and the client is the real engine (open_session + prepare_sync + runner), so both modes pay the
same journal and source costs. The source leaves limit_section_privileges and the dates blank,
so full mode reads each user's enrollments before it writes (a blind POST would reset them, issue
10 rule 1) and writes only what differs. Steps, on one world:
  1. first sync (`--no-plan`): a lookup, then a POST that creates, per record (+ the token check);
  2. baseline: full mode again (`--no-plan`): a lookup per record, each finding its enrollment
     already as the source says, so nothing is POSTed (before issue 10 this re-POSTed every row);
  3. plan: `sync --plan` of the same source: reads the rosters and sends only the changes (none);
  4. auto: `sync` with neither flag, the default: which mode it picks, and what that costs.
Requests come from the simulator's own counters (/__sim__/stats). Targets (issue 6): the plan
sends no more requests than the roster pages plus the changes' requests (the source names
sections, so no course's section list is read), and is >= 20x faster than (2).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from canvas_tui.canvas.governor import Governor
from canvas_tui.config import CanvasConfig, Config, Secret, SyncConfig
from canvas_tui.engine.plan.executor import prepare_sync
from canvas_tui.engine.session import open_session
from canvas_tui.records import State
from canvas_tui.simulator import ADMIN_TOKEN, World
from canvas_tui.simulator.testing import simulate_process, simulator_stats
from canvas_tui.sources import CsvSource

SEED = 7


def write_source(path: Path, records: int) -> int:
    """`records` active rows for users not yet in the course, over the open courses of the
    seed-7 world (the same world the simulator process generates)."""
    world = World.generate(SEED)
    courses = [
        c
        for c in world.courses.values()
        if c.sis_course_id and c.workflow_state == "available" and not c.concluded
    ]
    users = [u for u in world.users.values() if u.sis_user_id and u.sis_user_id.startswith("S1")]
    taken = {(e.user_id, e.course_id) for e in world.enrollments.values()}
    rows: list[list[str]] = []
    i = 0
    while len(rows) < records:
        course = courses[i % len(courses)]
        user = users[(i * 7 + i // len(courses)) % len(users)]
        i += 1
        sections = [s for s in world.sections_of(course.id) if s.sis_section_id]
        if (user.id, course.id) in taken or not sections:
            continue
        taken.add((user.id, course.id))
        section = sections[i % len(sections)]
        assert course.sis_course_id and user.sis_user_id and section.sis_section_id
        rows.append(
            [course.sis_course_id, user.sis_user_id, "student", section.sis_section_id, "active"]
        )
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["course_id", "user_id", "role", "section_id", "status"])
        writer.writerows(rows)
    return len({r[0] for r in rows})


async def sync(
    base_url: str, source: Path, journal: Path, *, plan: bool | None, time_scale: float
) -> dict[str, Any]:
    """One `canvas-tui sync` (plan: True = --plan, False = --no-plan, None = auto)."""
    config = Config(
        canvas=CanvasConfig(base_url=base_url, token=Secret(ADMIN_TOKEN)),
        sync=SyncConfig(journal_dir=journal.parent),
    )
    before = simulator_stats(base_url)
    started = time.perf_counter()
    session = open_session(
        config,
        source=CsvSource(source),
        journal_path=journal,
        governor=Governor(leak=10.0 * time_scale),
    )
    try:
        decision = await prepare_sync(session, requested=plan, allow_drops=None)
        assert decision.refused is None, decision.refused
        state = await session.run()
    finally:
        await session.close()
    elapsed = time.perf_counter() - started
    after = simulator_stats(base_url)
    result: dict[str, Any] = {
        "mode": "plan" if decision.planned else "full",
        "seconds": round(elapsed, 2),
        "requests": after["requests"] - before["requests"],
        "throttled": after["throttled"] - before["throttled"],
        "done": state.counts[State.DONE],
        "failed": state.counts[State.FAILED],
        "created": after["enrollments_created"] - before["enrollments_created"],
    }
    if decision.plan is not None:
        result.update(
            roster_pages=decision.plan.roster_pages,
            roster_requests=decision.plan.roster_requests,
            changes=len(decision.plan.changes),
            change_requests=decision.plan.change_requests,
            plan_seconds=round(decision.plan.elapsed, 2),
        )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--time-scale", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-plan-") as tmp:
        work = Path(tmp)
        source = work / "enrollments.csv"
        courses = write_source(source, args.records)
        simulator = simulate_process("--seed", str(SEED), "--time-scale", str(args.time_scale))
        with simulator as base_url:
            scale = args.time_scale
            first = asyncio.run(
                sync(base_url, source, work / "1.journal", plan=False, time_scale=scale)
            )
            full = asyncio.run(
                sync(base_url, source, work / "2.journal", plan=False, time_scale=scale)
            )
            planned = asyncio.run(
                sync(base_url, source, work / "3.journal", plan=True, time_scale=scale)
            )
            auto = asyncio.run(
                sync(base_url, source, work / "4.journal", plan=None, time_scale=scale)
            )
    speedup = full["seconds"] / planned["seconds"]
    report = {
        "records": args.records,
        "courses": courses,
        "time_scale": args.time_scale,
        "first_sync": first,
        "full_mode": full,
        "plan_apply": planned,
        "auto": auto,
        "speedup": round(speedup, 1),
        "requests_bound_ok": planned["requests"]
        <= planned["roster_pages"] + planned["change_requests"],
        "speedup_ok": speedup >= 20,
    }
    print(json.dumps(report, indent=2))
    print(
        f"\n{args.records} records in {courses} courses, time scale {args.time_scale}:\n"
        f"  first sync (creates):   {first['seconds']:7.2f} s  {first['requests']:6d} requests\n"
        f"  full mode (lookups):    {full['seconds']:7.2f} s  {full['requests']:6d} requests "
        f"({full['created']} created)\n"
        f"  plan + apply:           {planned['seconds']:7.2f} s  {planned['requests']:6d} requests "
        f"({planned['roster_requests']} roster reads, {planned['roster_pages']} pages; "
        f"{planned['changes']} changes)\n"
        f"  auto (the default):     {auto['seconds']:7.2f} s  {auto['requests']:6d} requests "
        f"({auto['mode']} mode)\n"
        f"  speedup over full mode {speedup:.1f}x (target >= 20x); "
        f"requests <= roster pages + changes: {report['requests_bound_ok']}"
    )
    return 0 if report["requests_bound_ok"] and report["speedup_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
