"""Console start-up as an operator sees it: `canvas-tui --journal FILE` launched as a process in a
terminal, until the first frame shows the dashboard's counts and the queue's first window.

    .venv/bin/python benchmarks/bench_console_start.py --records 1000000 --runs 3 \\
        [--baseline /work/wt/base]

The journal is built once per code version (cached in --cache, keyed by the version's git
commit and the record count) by that version's own load path: a generated Canvas SIS CSV of
`records` distinct enrollments, loaded through `open_session` + `session.load()`, then 60 % of it
marked done, 2 % failed (over four categories), the rest left pending, as a journal opened for
triage or resume looks. Building a 1,000,000-record journal takes a few minutes of CPU.

Each run spawns `canvas-tui --journal FILE` (the version's own console script) in a
pseudo-terminal of 140x45 and reads what it writes: the clock stops when the screen shows the
dashboard's total (`total … 1,000,000`), the queue's status line (`Queue 1,000,000 records`) and
the first record's row. Then `q` quits it. With --baseline, the baseline's console is measured
in the same run, alternating with this one, so the two see the same load; the ratio is given
per pair. Also printed: the user + system CPU seconds of the console process and its children
(the engine process).

Import cost alone: `python -X importtime -c "import canvas_tui.tui.launch"`.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import fcntl
import json
import os
import pty
import re
import resource
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SIZE = (140, 45)  # columns, rows
BASE_URL = "http://127.0.0.1:9"  # never reached: a journal opened for triage sends nothing
TOKEN = "bench-token"
COURSES = 2000
CATEGORIES = ("not_found", "forbidden", "invalid_input", "server_error")
TARGET_FIRST_FRAME = 1.5
# CSI sequences: SGR and modes are dropped; a cursor move starts a new run of text
_CURSOR = re.compile(rb"\x1b\[\d*(?:;\d*)?H|\r\n")
_OTHER = re.compile(
    rb"\x1b(?:\[[0-9;?<=>$]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][0-9A-B]|[=>78])"
)


def _env(xdg: Path, pythonpath: str | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "CANVAS_TUI_CONFIG", "NO_COLOR", "PYTHONDONTWRITEBYTECODE")
    }
    env.update(
        # compiled once, as an installed package is, and kept out of the checkouts
        PYTHONPYCACHEPREFIX=str(xdg / "pycache"),
        CANVAS_API_TOKEN=TOKEN,
        CANVAS_BASE_URL=BASE_URL,
        XDG_CONFIG_HOME=str(xdg / "config"),
        XDG_STATE_HOME=str(xdg / "state"),
        TERM="xterm-256color",
        COLUMNS=str(SIZE[0]),
        LINES=str(SIZE[1]),
    )
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def user_of(i: int) -> str:
    return f"U{i // COURSES:07d}"


def write_csv(path: Path, records: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["course_id", "user_id", "role", "section_id", "status"])
        for i in range(records):
            out.writerow([f"C{i % COURSES:05d}", user_of(i), "student", "", "active"])


def build(journal: Path, records: int) -> None:
    """Build the journal with the canvas_tui on sys.path (this version's own load path)."""
    from canvas_tui.config import load_config
    from canvas_tui.engine.journal import Outcome
    from canvas_tui.engine.session import open_session
    from canvas_tui.records import State
    from canvas_tui.sources import open_source

    work = Path(tempfile.mkdtemp(prefix="bench-console-start-"))
    try:
        csv_path = work / "enrollments.csv"
        write_csv(csv_path, records)
        config = load_config(None, env={"CANVAS_API_TOKEN": TOKEN, "CANVAS_BASE_URL": BASE_URL})
        session = open_session(config, source=open_source(csv_path), journal_path=journal)

        async def fill() -> None:
            start = time.process_time()
            await session.load()
            print(f"loaded {records:,} in {time.process_time() - start:.1f} s CPU", file=sys.stderr)
            store = session.store
            done = int(records * 0.6)
            step = 50_000
            for low in range(1, done + 1, step):
                ids = range(low, min(done, low + step - 1) + 1)
                await store.mark_in_place((i, "already enrolled", 1000 + i) for i in ids)
            for n, record_id in enumerate(range(done + 1, done + 1 + records // 50)):
                category = CATEGORIES[n % len(CATEGORIES)]
                outcome = Outcome(State.FAILED, "create", category, f"{category} (bench)", 400)
                store.post_outcome(record_id, outcome, attempts=1)
            await store.flush()
            await session.close()

        asyncio.run(fill())
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _schema_key(python: str, root: Path) -> str:
    """What decides whether a cached journal fits the code at `root`: its journal schema."""
    code = (
        "import hashlib, inspect; from canvas_tui.engine import journal as j; "
        "print(hashlib.sha256(str(getattr(j, '_SCHEMA', None) or inspect.getsource(j)).encode()"
        " + j.SCHEMA_VERSION.encode()).hexdigest()[:12])"
    )
    found = subprocess.run(
        [python, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=_env(Path(), str(root)),
    )
    return found.stdout.strip()


def journal_for(root: Path, python: str, records: int, cache: Path) -> Path:
    """The cached journal of the code at `root` (built by running this script there), one per
    journal schema."""
    journal = cache / f"{_schema_key(python, root)}-{records}.journal"
    if not journal.exists():
        cache.mkdir(parents=True, exist_ok=True)
        partial = journal.with_suffix(".building")
        for suffix in ("", "-wal", "-shm", ".lock"):
            Path(f"{partial}{suffix}").unlink(missing_ok=True)
        print(f"building {journal.name} with {root}…", file=sys.stderr)
        subprocess.run(
            [python, __file__, "--build", str(partial), "--records", str(records)],
            env=_env(cache / "xdg", str(root)),
            check=True,
        )
        partial.rename(journal)
    return journal


def _screen_has(runs: list[bytes], records: int) -> bool:
    total = f"{records:,}".encode()
    first = user_of(0).encode()
    counts = any(b"total" in r and total in r for r in runs)
    status = any(b"Queue " + total + b" records" in r for r in runs)
    row = any(r.lstrip().startswith(b"1 ") and first in r for r in runs)
    return counts and status and row


def _tree_cpu(pid: int, *, children: bool = True) -> float:
    """User + system CPU seconds so far of a process and its children (Linux /proc)."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        for task in Path(f"/proc/{pid}/task").iterdir() if children else ():
            for child in (task / "children").read_text().split():
                total += _tree_cpu(int(child))
    except (OSError, IndexError, ValueError):
        pass
    return total


def measure(
    console: str,
    journal: Path,
    records: int,
    pythonpath: str,
    xdg: Path,
    wrap: list[str] | None = None,
) -> dict[str, Any]:
    """Seconds from spawning `console --journal JOURNAL` in a terminal to the first frame."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", SIZE[1], SIZE[0], 0, 0))
    start = time.perf_counter()
    process = subprocess.Popen(
        [*(wrap or []), console, "--journal", str(journal)],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=_env(xdg, pythonpath),
        cwd=xdg,  # `python -c` (the engine process) puts the current directory first on sys.path
        start_new_session=True,
    )
    os.close(follower)
    buffer = b""
    runs: list[bytes] = []
    first_output: float | None = None
    shown: float | None = None
    cpu_shown = cpu_console = 0.0
    deadline = start + 60
    try:
        while shown is None and time.perf_counter() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                data = os.read(leader, 65536)
            except OSError:
                break
            if first_output is None:
                first_output = time.perf_counter()
            buffer += data
            runs = [_OTHER.sub(b"", run) for run in _CURSOR.split(buffer)]
            if _screen_has(runs, records):
                shown = time.perf_counter()
                cpu_shown = _tree_cpu(process.pid)
                cpu_console = _tree_cpu(process.pid, children=False)
        os.write(leader, b"q")
        end = time.perf_counter() + 20
        while process.poll() is None and time.perf_counter() < end:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    os.read(leader, 65536)
                except OSError:
                    break
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(10)
        os.close(leader)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if shown is None:
        if os.environ.get("BENCH_DUMP"):
            Path(os.environ["BENCH_DUMP"]).write_bytes(buffer)
        tail = b"\n".join(r for r in runs if r.strip())[-2000:].decode(errors="replace")
        raise SystemExit(
            f"{console}: no first frame within 60 s (exit {process.returncode})\n{tail}"
        )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "first_frame_s": round(shown - start, 3),
        "first_output_s": round((first_output or shown) - start, 3),
        # console + engine: CPU seconds until the first frame, and from start to exit
        "cpu_to_frame_s": round(cpu_shown, 2),
        "console_cpu_to_frame_s": round(cpu_console, 2),
        "cpu_s": round(cpu, 2),
        "exit": process.returncode,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--baseline", type=Path, help="another checkout (with its .venv) to compare"
    )
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "bench-console")
    parser.add_argument("--build", type=Path, help=argparse.SUPPRESS)  # internal: build a journal
    parser.add_argument(
        "--wrap", help="a command to run the console under, e.g. 'py-spy record -o p.txt -f raw --'"
    )
    args = parser.parse_args()
    if args.build:
        build(args.build, args.records)
        return 0

    versions = {"new": ROOT}
    if args.baseline:
        versions["base"] = args.baseline.resolve()
    xdg = args.cache / "xdg"
    xdg.mkdir(parents=True, exist_ok=True)
    journals = {
        name: journal_for(root, str(root / ".venv/bin/python"), args.records, args.cache)
        for name, root in versions.items()
    }

    def run(name: str) -> dict[str, Any]:
        root = versions[name]
        wrap = args.wrap.split() if args.wrap else None
        console = str(root / ".venv/bin/canvas-tui")
        return measure(console, journals[name], args.records, str(root), xdg, wrap)

    for name in versions:  # compiles the version's modules into the cache; the page cache warms
        run(name)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in versions}
    load = []
    for i in range(args.runs):
        for name in sorted(versions, key=lambda n: (n != "base") ^ (i % 2 == 1)):
            load.append(os.getloadavg()[0])
            result = run(name)
            result["load_1m"] = round(load[-1], 2)
            results[name].append(result)
            print(name, result, file=sys.stderr)
    summary: dict[str, Any] = {
        "records": args.records,
        "size": f"{SIZE[0]}x{SIZE[1]}",
        "load_average_1m": [min(load), max(load)],
        "runs": results,
    }
    for name, runs in results.items():
        for measure_ in ("first_frame_s", "cpu_to_frame_s"):
            values = [r[measure_] for r in runs]
            summary[f"{name}_{measure_}"] = {
                "median": statistics.median(values),
                "max": max(values),
            }
    if "base" in results:
        for measure_ in ("first_frame_s", "cpu_to_frame_s"):
            summary[f"ratio_new_to_base_{measure_}"] = [
                round(n[measure_] / b[measure_], 2)
                for n, b in zip(results["new"], results["base"], strict=True)
            ]
    worst = max(r["first_frame_s"] for r in results["new"])
    summary["target_first_frame_s"] = TARGET_FIRST_FRAME
    summary["met"] = worst <= TARGET_FIRST_FRAME
    print(json.dumps(summary, indent=2))
    return 0 if summary["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
