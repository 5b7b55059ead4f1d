"""Console at scale: first frame over a 100,000-record queue, key latency during a full-rate sync,
memory.

    .venv/bin/python benchmarks/bench_tui.py [--records 100000] [--seconds 20] [--presses 200]

The simulator runs in its own process (`canvas-tui simulate`, loopback), as Canvas would be
elsewhere, so the console's process holds only what the console holds: the app, the engine, the
journal and the client. The app runs headless (`App.run_test`), at 140x45.

Measured:
- first frame: from creating the app until the dashboard shows every record and the queue has
  painted its first window, (a) over an existing 100,000-record journal (triage / resume) and
  (b) while a fresh 100,000-row CSV is still loading (the frame must not wait for the load);
- key latency: `pilot.press` round trips (the key is dispatched, handled and the app is idle
  again) for cursor moves, page moves, state-filter and sort changes, while the engine sends at
  the rate the simulator allows;
- memory: the process's peak RSS at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from textual import events

from canvas_tui.config import load_config
from canvas_tui.engine.session import open_session
from canvas_tui.simulator import ADMIN_TOKEN, World
from canvas_tui.simulator.testing import simulate_process
from canvas_tui.sources import open_source
from canvas_tui.tui.app import ConsoleApp

SEED = 7
SIZE = (140, 45)
TARGET_FIRST_FRAME = 1.5
TARGET_KEY_P95 = 0.050
TARGET_RSS_MB = 300.0
KEYS = ("down", "down", "pagedown", "up", "t", "o", "pageup", "end", "home", "t")


def write_csv(path: Path, records: int) -> Path:
    """`records` distinct enrollments over the seed-7 world's active courses and users."""
    world = World.generate(SEED)
    courses = sorted(
        c.sis_course_id
        for c in world.courses.values()
        if c.sis_course_id and c.workflow_state == "available" and not c.concluded
    )
    users = sorted(u.sis_user_id for u in world.users.values() if u.sis_user_id)
    if len(courses) * len(users) < records:
        raise SystemExit(f"the world has only {len(courses) * len(users)} distinct pairs")
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["course_id", "user_id", "role", "section_id", "status"])
        for i in range(records):
            out.writerow(
                [courses[i % len(courses)], users[i // len(courses)], "student", "", "active"]
            )
    return path


def console(base: str, csv_path: Path, journal: Path, *, autostart: bool) -> ConsoleApp:
    config = load_config(None, env={"CANVAS_API_TOKEN": ADMIN_TOKEN, "CANVAS_BASE_URL": base})

    async def opener() -> Any:
        return open_session(config, source=open_source(csv_path), journal_path=journal)

    return ConsoleApp(opener, description=csv_path.name, journal_path=journal, autostart=autostart)


async def first_frame(app: ConsoleApp, records: int, *, loaded: bool) -> dict[str, float]:
    """Seconds until the first frame with the dashboard and a painted queue window."""
    start = time.perf_counter()
    out: dict[str, float] = {}
    async with app.run_test(size=SIZE) as pilot:
        mounted = time.perf_counter()
        out["mounted_s"] = mounted - start
        while True:
            table = app.queue.table if app.is_running else None
            shown = app.state is not None and (not loaded or app.state.total == records)
            if table is not None and shown and (table.window_rows > 0 or not loaded):
                break
            await pilot.pause(0.005)
        out["first_frame_s"] = time.perf_counter() - start
        if not loaded:
            while app.state is None or app.state.total < records:
                await pilot.pause(0.05)
            out["load_complete_s"] = time.perf_counter() - start
        await pilot.press("q")
        if app.screen.__class__.__name__ == "ConfirmScreen":
            await pilot.press("y")
    return out


def send_key(app: ConsoleApp, key: str) -> None:
    """Hand a key to the app the way its terminal driver does (as `pilot.press`, minus the wait)."""
    char = key if len(key) == 1 else None
    event = events.Key(key, char)
    event.set_sender(app)
    assert app._driver is not None
    app._driver.send_message(event)


def _signature(app: ConsoleApp) -> tuple[object, ...]:
    # every key in KEYS moves the cursor (a filter or sort change resets it), even onto itself
    return (app.queue.table.moves, app.queue.filter)


async def key_latency(app: ConsoleApp, seconds: float, presses: int) -> dict[str, Any]:
    """Key to frame: the key event is posted as the terminal driver would, the handler runs, and
    the latency ends with the first frame drawn after the handler's effect is visible in the app.

    (`pilot.press` is not used for timing: it waits for the whole process to go idle, which a
    process syncing at full rate never is.)"""
    frames: list[float] = []
    real_display = app._display

    def display(screen: Any, renderable: Any) -> None:
        frames.append(time.perf_counter())
        real_display(screen, renderable)

    app._display = display  # type: ignore[method-assign]
    latencies: list[float] = []
    handle_times: list[float] = []
    by_key: dict[str, list[float]] = {}
    async with app.run_test(size=SIZE) as pilot:
        while app.state is None or app.state.finished < 50:  # the sync is under way
            await pilot.pause(0.05)
        start = time.perf_counter()
        cpu_start = time.process_time()
        start_finished = app.state.finished
        interval = seconds / presses
        for i in range(presses):
            key = KEYS[i % len(KEYS)]
            before = _signature(app)
            t0 = time.perf_counter()
            send_key(app, key)
            deadline = t0 + 5.0
            # polling from outside the app is the measurement itself: no event to wait on
            while _signature(app) == before and time.perf_counter() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.0005)
            handled = time.perf_counter()
            handle_times.append(handled - t0)
            while not (frames and frames[-1] >= handled) and time.perf_counter() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.0005)
            latencies.append(time.perf_counter() - t0)
            by_key.setdefault(key, []).append(latencies[-1])
            await asyncio.sleep(max(0.0, interval - latencies[-1]))
        elapsed = time.perf_counter() - start
        cpu_share = (time.process_time() - cpu_start) / elapsed
        state = app.state
        assert state is not None
        rate = (state.finished - start_finished) / elapsed
        result = {
            "console_cpu_share": round(cpu_share, 2),
            "throttled": state.throttled,
            "governor_limit_at_end": state.governor.limit,
            "in_flight_at_end": state.governor.in_flight,
        }
        await pilot.press("q")
        if app.screen.__class__.__name__ == "ConfirmScreen":
            await pilot.press("y")
        while app.return_value is None:
            await pilot.pause(0.05)
    latencies.sort()
    handle_times.sort()
    return {
        "handled_p50_ms": round(statistics.median(handle_times) * 1000, 1),
        "handled_p95_ms": round(handle_times[int(len(handle_times) * 0.95) - 1] * 1000, 1),
        "presses": len(latencies),
        "worst_ms_by_key": {k: round(max(v) * 1000, 1) for k, v in by_key.items()},
        "keys": list(KEYS),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p95_ms": round(latencies[int(len(latencies) * 0.95) - 1] * 1000, 1),
        "max_ms": round(latencies[-1] * 1000, 1),
        "sync_rate_per_s": round(rate, 1),
        **result,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=20.0, help="key-press phase length")
    parser.add_argument("--presses", type=int, default=200)
    parser.add_argument("--time-scale", type=float, default=10.0)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-tui-"))
    csv_path = write_csv(work / "enrollments.csv", args.records)
    results: dict[str, Any] = {"records": args.records}
    with simulate_process(
        "--seed", str(SEED), "--time-scale", str(args.time_scale), "--token", ADMIN_TOKEN
    ) as base:  # fmt: skip
        fresh = work / "fresh.journal"
        print("first frame, fresh load…", file=sys.stderr)
        results["fresh_load"] = asyncio.run(
            first_frame(console(base, csv_path, fresh, autostart=False), args.records, loaded=False)
        )
        print(results, file=sys.stderr)
        # the same journal, now holding 100,000 records: opened for triage / resume
        results["existing_journal"] = asyncio.run(
            first_frame(console(base, csv_path, fresh, autostart=False), args.records, loaded=True)
        )
        print(results, file=sys.stderr)
        # the loaded journal again, now sending: keys while the engine runs at full rate
        results["keys_during_sync"] = asyncio.run(
            key_latency(console(base, csv_path, fresh, autostart=True), args.seconds, args.presses)
        )
        results["simulator"] = (
            httpx.get(f"{base}/__sim__/stats", timeout=10).json().get("max_in_flight")
        )
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results["peak_rss_mb"] = round(rss_mb, 1)
    ok = (
        results["existing_journal"]["first_frame_s"] <= TARGET_FIRST_FRAME
        and results["fresh_load"]["first_frame_s"] <= TARGET_FIRST_FRAME
        and results["keys_during_sync"]["p95_ms"] <= TARGET_KEY_P95 * 1000
        and rss_mb <= TARGET_RSS_MB
    )
    results["targets"] = {
        "first_frame_s": TARGET_FIRST_FRAME,
        "key_p95_ms": TARGET_KEY_P95 * 1000,
        "peak_rss_mb": TARGET_RSS_MB,
        "met": ok,
    }
    print(json.dumps(results, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
