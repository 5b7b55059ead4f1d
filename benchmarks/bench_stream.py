"""Peak RSS per mode and the first POST after launch, for large sources (issue 14).

    .venv/bin/python benchmarks/bench_stream.py [--rows 100000 1000000] [--before /work/wt/base]
        [--before-max 100000] [--runs 2] [--sql] [--until-loaded] [--trace DIR] [--fresh]
        [--existing]

Each run is a fresh `canvas-tui` process (`sync --no-plan`, `sync` in auto mode, `sync --plan`,
and `canvas-tui plan`) against the simulator in its own process (seed 7, time scale 20). A
`sync` is stopped (SIGTERM: a graceful stop) once the simulator has seen its first POST, so its
peak covers choosing the mode, the plan, the journal's load and the first requests; `plan` runs
to its end. The peak is the child's VmHWM, read as it exits (ru_maxrss of a child starts at the
forking parent's size). The first POST is timed from launch by polling the simulator's
counters every 20 ms. `--before` runs the same commands on another checkout (the code before
issue 14) in the same session, alternated with this one, up to `--before-max` rows.

The source: the seed-7 world's users in its open courses, every (course, user, role) once
(roles student, teacher, ta, designer, observer... then numbered custom roles for more rows),
so every user exists and `plan`'s preflight reads only users the rosters do not show.

`--existing`: a re-sync. Each simulator starts already holding the source's enrollments (every
row of a built-in role, active, made by an SIS import), put straight into its world before it
serves (no POSTs): a plan then reads them all in its rosters, and finds those rows in place.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import resource
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from canvas_tui.simulator import ADMIN_TOKEN, World
from canvas_tui.simulator.testing import (
    free_port,
    serving_process,
    simulate_process,
    simulator_stats,
)

ROOT = Path(__file__).resolve().parents[1]
SEED = 7
HEADER = ["course_id", "user_id", "role", "section_id", "status"]
ROLES = ["student", "teacher", "ta", "designer"]
QUERY = "SELECT * FROM enrollments"

# In the child: run canvas_tui and, as it exits, write its VmHWM (kB) to argv[1]. With
# BENCH_STREAM_TRACE set, a thread also writes every 0.5 s: seconds, VmRSS and RssAnon (MB), and
# glibc's mallinfo2: the heaps' size and their free part, and the blocks mapped on their own.
_MEASURED = """
import atexit, os, pathlib, runpy, sys
out = pathlib.Path(sys.argv[1])
if os.environ.get("BENCH_STREAM_TRACE"):
    import ctypes, threading, time
    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks",
            "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
    info = ctypes.CDLL(None).mallinfo2
    info.restype = Info
    def sample(path=pathlib.Path(os.environ["BENCH_STREAM_TRACE"]), start=time.monotonic()):
        with path.open("w") as trace:
            while True:
                status = dict(x.split(":", 1) for x in open("/proc/self/status"))
                m = info()
                mb = [int(status[k].split()[0]) >> 10 for k in ("VmRSS", "RssAnon")]
                heap = [v >> 20 for v in (m.arena, m.fordblks, m.hblkhd)]
                print(f"{time.monotonic() - start:.1f}", *mb, *heap, file=trace, flush=True)
                time.sleep(0.5)
    threading.Thread(target=sample, daemon=True).start()
def keep():
    status = pathlib.Path("/proc/self/status").read_text()
    out.write_text(next(x for x in status.splitlines() if x.startswith("VmHWM:")).split()[1])
atexit.register(keep)
sys.argv = ["canvas_tui", *sys.argv[2:]]
runpy.run_module("canvas_tui", run_name="__main__", alter_sys=True)
"""


# The simulator for --existing: `canvas-tui simulate` (seed, time scale) whose world first gets
# an enrollment for every row of the source (argv: port, seed, time scale, source) that names a
# built-in role; custom role rows stay missing, as in Canvas, where those roles do not exist.
_SEEDED = """
import csv, sys, uvicorn
from canvas_tui.simulator.app import SimConfig, build_app
from canvas_tui.simulator.testing import quiet_simulated_resets
from canvas_tui.simulator.world import BUILT_IN_ROLE_IDS
port, seed, scale, source = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
app = build_app(SimConfig(seed=seed, time_scale=scale))
world = app.world
users = {u.sis_user_id: u for u in world.users.values() if u.sis_user_id}
sections = {s.sis_section_id: s for s in world.sections.values() if s.sis_section_id}
defaults = {c.sis_course_id: next(s for s in world.sections_of(c.id) if s.default)
            for c in world.courses.values() if c.sis_course_id and world.sections_of(c.id)
            and any(s.default for s in world.sections_of(c.id))}
types = {"student": "StudentEnrollment", "teacher": "TeacherEnrollment", "ta": "TaEnrollment",
         "designer": "DesignerEnrollment"}
made = 0
with open(source, newline="", encoding="utf-8") as handle:
    for course, user, role, section, _status in csv.reader(handle):
        if role not in types:
            continue
        world.add_enrollment(users[user], sections[section] if section else defaults[course],
                             world.roles[BUILT_IN_ROLE_IDS[types[role]]], sis_import_id=1)
        made += 1
print(f"seeded {made} enrollments", flush=True)
quiet_simulated_resets()
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
"""


@contextlib.contextmanager
def seeded_simulator(source: Path, seed: int, time_scale: str) -> Iterator[str]:
    """A simulator whose world already holds the source's enrollments (`_SEEDED`)."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    csv_source = source.with_suffix(".rows.csv")
    if not csv_source.exists():  # the rows without their header (a SQLite source's too)
        with csv_source.open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows(rows(int(source.stem.rsplit("-", 1)[1])))
    command = [sys.executable, "-c", _SEEDED, str(port), str(seed), time_scale, str(csv_source)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with serving_process(command, base_url, startup=600, env=env):  # a million rows to seed
        yield base_url


def rows(count: int) -> Iterator[list[str]]:
    world = World.generate(SEED)
    courses = [
        c
        for c in world.courses.values()
        if c.sis_course_id and c.workflow_state == "available" and not c.concluded
    ]
    users = [u.sis_user_id for u in world.users.values() if u.sis_user_id]
    sections = {c.id: [s.sis_section_id for s in world.sections_of(c.id)] for c in courses}
    n = 0
    role = 0
    while True:
        name = ROLES[role] if role < len(ROLES) else f"Custom{role}"
        for user in users:
            for course in courses:
                if n == count:
                    return
                listed = [s for s in sections[course.id] if s] or [""]
                yield [
                    course.sis_course_id or "",
                    user or "",
                    name,
                    listed[n % len(listed)],
                    "active",
                ]
                n += 1
        role += 1


def write_source(directory: Path, count: int, sql: bool) -> Path:
    if sql:
        path = directory / f"sis-{count}.sqlite"
        db = sqlite3.connect(path)
        db.execute(f"CREATE TABLE enrollments ({', '.join(c + ' TEXT' for c in HEADER)})")
        db.executemany("INSERT INTO enrollments VALUES (?, ?, ?, ?, ?)", rows(count))
        db.commit()
        db.close()
        return path
    path = directory / f"in-{count}.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows(count))
    return path


def _posts(base_url: str) -> int:
    return int(simulator_stats(base_url)["requests_by_endpoint"].get("create_enrollment", 0))


def _loaded(journal: Path) -> bool:
    """Whether the run's journal holds the whole source (its load has ended)."""
    if not journal.exists():
        return False
    try:
        db = sqlite3.connect(f"{journal.as_uri()}?mode=ro", uri=True, timeout=0.1)
        try:
            found = db.execute("SELECT value FROM meta WHERE key = 'loaded'").fetchone()
        finally:
            db.close()
    except sqlite3.Error:  # not created yet, or busy
        return False
    return found is not None and found[0] == "1"


def measure(
    code: Path,
    mode: str,
    source: Path,
    base_url: str,
    work: Path,
    sql: bool,
    until_loaded: bool = False,
    trace_to: Path | None = None,
) -> dict[str, float | int | None]:
    """One run of `mode` with the code at `code`: peak RSS, first POST, CPU, exit code."""
    work.mkdir(parents=True)
    peak = work / "vmhwm"
    if sql:
        config = work / "canvas-tui.toml"
        table = ("[source]", 'kind = "sql"', f'url = "sqlite:///{source}"', f'query = "{QUERY}"')
        config.write_text("\n".join(table) + "\n", encoding="utf-8")
        given: list[str] = ["--config", str(config)]
    else:
        given = [str(source)]
    if mode == "plan-command":
        argv = ["plan", *given, "--out", str(work / "plan")]
    else:
        flag = {"no-plan": ["--no-plan"], "auto": [], "plan": ["--plan"]}[mode]
        argv = ["sync", *given, "--journal", str(work / "run.journal"), *flag]
    env = {
        **os.environ,
        "PYTHONPATH": str(code),
        "CANVAS_BASE_URL": base_url,
        "CANVAS_API_TOKEN": ADMIN_TOKEN,
        "XDG_STATE_HOME": str(work / "state"),
    }
    trace = work / "rss.trace"
    if trace_to is not None:
        env["BENCH_STREAM_TRACE"] = str(trace)
    before = _posts(base_url)
    started = time.monotonic()
    # Our own interpreter and arguments, no shell.
    child = subprocess.Popen(
        [sys.executable, "-c", _MEASURED, str(peak), *argv],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(work / "stderr").open("w"),
    )
    first_post: float | None = None
    loaded: float | None = None
    journal = work / "run.journal"
    stopped = False
    while child.poll() is None:
        if first_post is None and mode != "plan-command" and _posts(base_url) > before:
            first_post = time.monotonic() - started
        if loaded is None and until_loaded and first_post is not None and _loaded(journal):
            loaded = time.monotonic() - started
        # the first POST is what is timed; --until-loaded: the whole load (sends going on)
        if not stopped and first_post is not None and (loaded is not None or not until_loaded):
            child.send_signal(signal.SIGTERM)
            stopped = True
        time.sleep(0.02)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # CPU only: summed, diffed by caller
    heap: dict[str, float | int | None] = {}
    if trace_to is not None and trace.exists():
        samples = [[float(v) for v in line.split()] for line in trace.read_text().splitlines()]
        trace_to.mkdir(parents=True, exist_ok=True)
        (trace_to / f"{work.name}.trace").write_text(trace.read_text())
        if samples:  # the heaps (and their free part) where RSS peaked, and the largest heaps
            top = max(samples, key=lambda s: s[1])
            heap = {"heap_at_peak_mb": top[3], "heap_free_at_peak_mb": top[4]}
            heap["heap_max_mb"] = max(s[3] for s in samples)
    return {
        **heap,
        "peak_mb": int(peak.read_text()) / 1024 if peak.exists() else None,
        "first_post_s": first_post,
        "loaded_s": loaded,
        "exit": child.returncode,
        "wall_s": time.monotonic() - started,
        "cpu_total": usage.ru_utime + usage.ru_stime,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000])
    parser.add_argument("--modes", nargs="+", default=["no-plan", "auto", "plan", "plan-command"])
    parser.add_argument("--before", type=Path, help="a checkout of the code before (PYTHONPATH)")
    parser.add_argument("--before-max", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--sql", action="store_true", help="a SQLite source instead of a CSV")
    parser.add_argument("--time-scale", default="20")
    parser.add_argument(
        "--until-loaded",
        action="store_true",
        help="stop a sync once its journal holds the whole source, not at its first POST "
        "(its load goes on while it sends: the peak then covers the whole load)",
    )
    parser.add_argument(
        "--trace",
        type=Path,
        help="a directory for each run's RSS and malloc heap trace (0.5 s samples); the rows "
        "then also give the heaps where RSS peaked (glibc only)",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="a new simulator for each run: every run meets the same Canvas. Without it the "
        "runs share one, and each meets the enrollments the runs before it created (a plan "
        "reads them all: its rosters grow run after run, and the more, the longer each run "
        "sent, as on a loaded machine)",
    )
    parser.add_argument(
        "--existing",
        action="store_true",
        help="a re-sync: each simulator starts holding the source's enrollments (those of "
        "built-in roles), seeded into its world rather than POSTed",
    )
    args = parser.parse_args()
    print(
        f"load average {os.getloadavg()}; time scale {args.time_scale}"
        + ("; Canvas holds the source's enrollments (--existing)" if args.existing else ""),
        flush=True,
    )
    results: list[dict[str, object]] = []
    simulator = ("--seed", str(SEED), "--time-scale", args.time_scale)
    with (
        tempfile.TemporaryDirectory() as tmp,
        contextlib.ExitStack() as shared,
    ):
        base_url = ""
        if not args.fresh and not args.existing:
            base_url = shared.enter_context(simulate_process(*simulator))
        for count in args.rows:
            source = write_source(Path(tmp), count, args.sql)
            if args.existing and not args.fresh:  # one seeded simulator for this size's runs
                base_url = shared.enter_context(seeded_simulator(source, SEED, args.time_scale))
            codes = [("after", ROOT)]
            if args.before and count <= args.before_max:
                codes.insert(0, ("before", args.before))
            for mode in args.modes:
                for run in range(args.runs):
                    for label, code in codes:  # alternated: before, after, before, after
                        own = contextlib.ExitStack()
                        if args.fresh and args.existing:
                            base_url = own.enter_context(
                                seeded_simulator(source, SEED, args.time_scale)
                            )
                        elif args.fresh:
                            base_url = own.enter_context(simulate_process(*simulator))
                        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
                        work = Path(tmp) / f"{label}-{mode}-{count}-{run}"
                        got = measure(
                            code,
                            mode,
                            source,
                            base_url,
                            work,
                            args.sql,
                            args.until_loaded,
                            args.trace,
                        )
                        own.close()  # (its simulator's CPU lands before the next run's baseline)
                        cpu = got.pop("cpu_total")
                        assert isinstance(cpu, float)
                        got["cpu_s"] = round(cpu - cpu_before.ru_utime - cpu_before.ru_stime, 2)
                        row = {"rows": count, "mode": mode, "code": label, "run": run, **got}
                        results.append(row)
                        print(json.dumps(row), flush=True)
    print("\nsummary (median of runs): rows mode code peak_mb first_post_s cpu_s")
    keys = sorted({(r["rows"], r["mode"], r["code"]) for r in results}, key=str)
    for key in keys:
        same = [r for r in results if (r["rows"], r["mode"], r["code"]) == key]
        peaks = [float(str(r["peak_mb"])) for r in same if r["peak_mb"] is not None]
        posts = [float(str(r["first_post_s"])) for r in same if r["first_post_s"] is not None]
        cpus = [float(str(r["cpu_s"])) for r in same]
        print(
            f"  {key[0]:>9,} {key[1]:<12} {key[2]:<6} "
            f"peak {'/'.join(f'{p:.0f}' for p in peaks)} MB  "
            f"first POST {'/'.join(f'{p:.2f}' for p in posts) or '-'} s  "
            f"cpu {statistics.median(cpus):.1f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
