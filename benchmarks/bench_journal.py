"""Journal size, load CPU, run-path CPU and report size for N records (issue 14).

    .venv/bin/python benchmarks/bench_journal.py [--records 100000] [--keep DIR]
    PYTHONPATH=/work/wt/base /work/wt/base/.venv/bin/python benchmarks/bench_journal.py  # before

Drives the journal as `canvas-tui sync --no-plan` does, without a network: a generated SIS
enrollments.csv (course, user, role, section, status; a few rows invalid) goes through CsvSource
into `Journal.load`, then every pending record is claimed in batches of the runner's size, read
back with `Journal.record`, given the attempts the client would report (a GET of the user's
enrollments, then the POST with the exact body `CanvasClient.create_enrollment` sends; 1 in 20
first meets a 429 and is retried, 1 in 50 fails with a 404 and Canvas's message) and an outcome.
Then the JSON report and its failures CSV are written, the journal is closed (checkpointed), and
the file's bytes are counted. Only the public journal API is used, so the same script measures
the code of any commit (run it with that commit's interpreter and PYTHONPATH).

CPU is process CPU time (time.process_time): robust to other load on a shared machine. The
"run" figure includes the writer thread's SQLite work, which is the journal's share of a sync.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from canvas_tui.canvas.client import AttemptEvent
from canvas_tui.canvas.ids import path_segment
from canvas_tui.engine import report as report_module
from canvas_tui.engine.journal import Journal, Outcome
from canvas_tui.engine.report import write_report
from canvas_tui.records import EnrollmentRecord, State
from canvas_tui.sources.csv import CsvSource

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_sync, for --sync
BASE = "https://canvas.example.edu/api/v1"
LOOKUP_STATES = [("state[]", s) for s in ("active", "invited", "creation_pending", "inactive")]
LOOKUP_QUERY = httpx.URL(BASE, params=[*LOOKUP_STATES, ("per_page", 100)]).query.decode()
BATCH = 11  # the runner claims what its free slots allow: about the governor's limit


def write_csv(path: Path, n: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["course_id", "user_id", "role", "section_id", "status"])
        for i in range(n):
            course = f"CRS-2026FA-{i % 1500:05d}"
            role = "ta" if i % 100 == 99 else "student"
            user = "" if i % 1000 == 500 else f"U{1_000_000 + i:08d}"  # invalid: no user
            writer.writerow([course, user, role, f"{course}-S{i % 3 + 1:02d}", "active"])


def post_body(record: EnrollmentRecord) -> str:
    """What CanvasClient.create_enrollment sends for this record in full mode (no role id)."""
    fields: dict[str, Any] = {
        "user_id": record.user,
        "enrollment_state": "active",
        "notify": record.notify,
        "limit_privileges_to_course_section": False,
    }
    optional = {
        "type": record.enrollment_type,
        "role": None if record.enrollment_type else record.role,
        "course_section_id": record.section if record.course else None,
    }
    fields.update({k: v for k, v in optional.items() if v is not None})
    return json.dumps({"enrollment": fields}, separators=(",", ":"))


def event(number: int, method: str, url: str, body: str | None, **kw: Any) -> AttemptEvent:
    now = time.time()
    values: dict[str, Any] = {
        "status": 200,
        "category": None,
        "message": None,
        "error_report_id": None,
        "cost": 0.1,
        "remaining": 587.25,
        "will_retry": False,
        "wait": None,
    }
    values.update(kw)
    return AttemptEvent(
        number=number,
        method=method,
        url=url,
        request_body=body,
        started_at=now,
        finished_at=now + 0.05,
        **values,
    )


async def run(journal: Journal, pace: float = 0.0) -> int:
    """Claim, read and settle every pending record; returns the attempts posted. `pace`:
    records a second, each claimed alone as a runner's freed slot claims it (0: as fast as the
    CPU allows, BATCH at a time)."""
    batch = 1 if pace else BATCH
    started = time.monotonic()
    sent = 0
    posted = 0
    after = 0
    while True:
        pending = journal.pending_ids(after=after, limit=500)
        if not pending:
            break
        after = pending[-1]
        for start in range(0, len(pending), batch):
            if pace:
                sent += 1
                await asyncio.sleep(max(0.0, started + sent / pace - time.monotonic()))
            for record_id in await journal.claim(pending[start : start + batch]):
                record = journal.record(record_id)
                assert record is not None
                # the URLs as the client builds them (path_segment, httpx's query encoding)
                lookup = f"{BASE}/users/{path_segment(record.user)}/enrollments?{LOOKUP_QUERY}"
                journal.post_attempt(record_id, event(1, "GET", lookup, None))
                url = f"{BASE}/courses/{path_segment(record.course or '')}/enrollments"
                body = post_body(record)
                attempts = 2
                number = 1
                if record_id % 20 == 0:
                    journal.post_attempt(
                        record_id,
                        event(
                            1,
                            "POST",
                            url,
                            body,
                            status=429,
                            category="throttled",
                            message="429 Too Many Requests (Rate Limit Exceeded)",
                            will_retry=True,
                            wait=0.8,
                        ),
                    )
                    attempts += 1
                    number = 2
                if record_id % 50 == 0:
                    message = "The specified resource does not exist. (user not found)"
                    journal.post_attempt(
                        record_id,
                        event(
                            number,
                            "POST",
                            url,
                            body,
                            status=404,
                            category="user_not_found",
                            message=message,
                            error_report_id=None,
                        ),
                    )
                    outcome = Outcome(
                        State.FAILED, category="user_not_found", message=message, http_status=404
                    )
                else:
                    journal.post_attempt(record_id, event(number, "POST", url, body))
                    outcome = Outcome(
                        State.DONE, action="create", canvas_enrollment_id=5_000_000 + record_id
                    )
                posted += attempts
                journal.post_outcome(record_id, outcome, attempts=attempts)
    await journal.flush()
    return posted


def writer_cpu() -> float:
    """CPU seconds of the journal's writer thread so far (Linux /proc; 0 elsewhere)."""
    for thread in threading.enumerate():
        if thread.name.startswith("journal-writer") and thread.native_id is not None:
            try:
                fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text()
            except OSError:
                return 0.0
            utime, stime = fields.rsplit(")", 1)[1].split()[11:13]
            return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")
    return 0.0


def table_bytes(path: Path) -> dict[str, int]:
    """Bytes per table (its indexes included), from SQLite's dbstat where it is compiled in."""
    conn = sqlite3.connect(path)
    try:
        found = conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
        owners = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master").fetchall())
    except sqlite3.Error:
        return {}
    finally:
        conn.close()
    out: dict[str, int] = {}
    for name, size in found:
        owner = owners.get(name, name)
        owner = "records_text" if str(owner).startswith("records_text") else owner
        out[owner] = out.get(owner, 0) + int(size)
    return out


def measure(n: int, directory: Path, pace: float = 0.0) -> dict[str, Any]:
    source_path = directory / "enrollments.csv"
    write_csv(source_path, n)
    path = directory / "bench.journal"
    journal = Journal(path)
    cpu = time.process_time()
    wall = time.perf_counter()
    loaded = journal.load(CsvSource(source_path), description=str(source_path))
    load_cpu = time.process_time() - cpu
    load_wall = time.perf_counter() - wall
    cpu = time.process_time()
    writer = writer_cpu()
    attempts = asyncio.run(run(journal, pace))
    run_cpu = time.process_time() - cpu
    run_writer_cpu = writer_cpu() - writer
    report = directory / "report.json"
    cpu = time.process_time()
    paths = write_report(journal, report)
    report_cpu = time.process_time() - cpu
    not_done = None
    if "not-done" in report_module.RECORD_CHOICES:  # issue 14 on
        not_done = write_report(journal, directory / "not-done.json", records="not-done")
    counts = journal.counts()
    journal.close()
    size = path.stat().st_size + sum(
        Path(f"{path}{s}").stat().st_size for s in ("-wal",) if Path(f"{path}{s}").exists()
    )
    return {
        "records": loaded,
        "attempts": attempts,
        "counts": {str(k): v for k, v in counts.items()},
        "journal_bytes": size,
        "bytes_per_record": round(size / loaded, 1),
        "tables": table_bytes(path),
        "load_cpu_s": round(load_cpu, 2),
        "load_wall_s": round(load_wall, 2),
        "run_cpu_s": round(run_cpu, 2),
        "pace": pace,
        "run_cpu_us_per_attempt": round(run_cpu / attempts * 1e6, 1),
        "run_cpu_us_per_record": round(run_cpu / loaded * 1e6, 1),
        "run_writer_thread_cpu_s": round(run_writer_cpu, 2),
        "run_other_threads_cpu_s": round(run_cpu - run_writer_cpu, 2),
        "report_bytes": paths.json.stat().st_size,
        "report_not_done_bytes": None if not_done is None else not_done.json.stat().st_size,
        "failures_csv_bytes": paths.failures_csv.stat().st_size,
        "report_cpu_s": round(report_cpu, 2),
    }


def sync_cpu(n: int, python: str, pythonpath: str | None, scale: float) -> dict[str, Any]:
    """CPU of one real `canvas-tui sync --no-plan` of `n` new enrollments (bench_sync's
    workload) against a fresh simulator in its own process; `python` (+ `pythonpath`) runs the
    sync, so the code of any commit can be measured beside this one's."""
    from bench_sync import SEED, TOKEN, workload, write_inputs

    from canvas_tui.simulator.testing import simulate_process, simulator_stats

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        csv_path, _ = write_inputs(workload(n), work)
        options = ("--seed", str(SEED), "--time-scale", str(scale), "--token", TOKEN)
        with simulate_process(*options) as base:
            env = {**os.environ, "CANVAS_BASE_URL": base, "CANVAS_API_TOKEN": TOKEN}
            env.pop("PYTHONPATH", None)
            if pythonpath:
                env["PYTHONPATH"] = pythonpath
            command = [python, "-m", "canvas_tui", "sync", "--no-plan", str(csv_path)]
            command += ["--journal", str(work / "run.journal")]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            done = subprocess.run(command, env=env, cwd=work, capture_output=True, check=False)
            elapsed = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            requests = int(simulator_stats(base)["requests"])
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        size = (work / "run.journal").stat().st_size
    return {
        "code": pythonpath or "this worktree",
        "exit": done.returncode,
        "cpu_s": round(cpu, 2),
        "requests": requests,
        "cpu_ms_per_request": round(cpu / max(1, requests) * 1e3, 3),
        "elapsed_s": round(elapsed, 1),
        "journal_bytes_per_record": round(size / n, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="leave the journal and report in this directory")
    parser.add_argument(
        "--pace", type=float, default=0.0, help="records/s, one claim each (0: CPU-bound)"
    )
    parser.add_argument(
        "--sync",
        metavar="BASE_PYTHON",
        help="instead: real `sync --no-plan` runs of --records records, alternating this code "
        "with BASE_PYTHON running --base-path (e.g. /work/wt/base/.venv/bin/python)",
    )
    parser.add_argument("--base-path", help="PYTHONPATH for --sync's base interpreter")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--time-scale", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.sync:
        for _ in range(args.runs):
            for python, path in ((args.sync, args.base_path), (sys.executable, None)):
                found = sync_cpu(args.records, python, path, args.time_scale)
                print(json.dumps(found), flush=True)
        return 0
    if args.keep:
        shutil.rmtree(args.keep, ignore_errors=True)  # a journal left there would be resumed
        args.keep.mkdir(parents=True)
        result = measure(args.records, args.keep, args.pace)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = measure(args.records, Path(tmp), args.pace)
    result["code"] = os.environ.get("PYTHONPATH") or str(Path(__file__).resolve().parent.parent)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
