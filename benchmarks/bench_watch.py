"""`canvas-tui watch` latency: from a committed change in a PostgreSQL SIS table to the
enrollment's state in Canvas, at Canvas's real pace (simulator time scale 1).

    .venv/bin/python benchmarks/bench_watch.py [--rates 1,10,50] [--seconds 60] [--markdown F]

Needs PostgreSQL on 127.0.0.1:5432 (trust, database `test`). The simulator (seed-7 world, time
scale 1: Canvas's own latencies, 0.15-0.25 s a request, and its leaky bucket) runs in this
process on a loopback socket so its world can be watched without a request; `canvas-tui watch`
runs in its own process, as deployed, over a table whose `updated_at` (clock_timestamp() at each
write) is the change cursor and `id` the row key:

    [watch] interval = 0.5, cursor_column = "updated_at", cursor_overlap = 2,
            row_id_column = "id", full_every = 2 (a DELETE is seen by the next whole read)
    [plan]  drop_policy = "delete", brake off (the benchmark measures latency, not the brake)

Before measuring, 200 rows are inserted and applied (warm-up). Then, for each rate, a writer
commits changes at that rate for --seconds: 50 % inserts (a new student, expected `active`),
30 % updates (a live row's status toggled active <-> inactive) and 20 % deletes (the row
DELETEd, expected `deleted` in Canvas). A watcher thread looks at the simulator's world every
20 ms and notes, for each change, when the enrollment first shows the expected state: latency =
that moment - the commit's return. Canvas requests per change are the simulator's request count
over the phase (its drain included) / changes. The rows leave limit_section_privileges and the
dates blank, as most SIS views do, so each change reads the user's enrollments before writing
(two requests; a row that states them is POSTed blind).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from canvas_tui.simulator import ADMIN_TOKEN, SimConfig, Simulator, World, build_app
from canvas_tui.simulator.testing import serve_in_thread

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
WARM_UP = 200
MIX = (("insert", 0.5), ("update", 0.3), ("delete", 0.2))

Pair = tuple[str, str, str]  # user, course, section SIS ids


def fresh_pairs(world: World, n: int, rng: random.Random) -> list[Pair]:
    """(user, course, section) with no enrollment of the user in the course yet."""
    courses = [
        c
        for c in world.courses.values()
        if c.sis_course_id and c.workflow_state == "available" and not c.concluded
    ]
    users = [u for u in world.users.values() if u.sis_user_id]
    taken = {(e.user_id, e.course_id) for e in world.enrollments.values()}
    out: list[Pair] = []
    while len(out) < n:
        user, course = rng.choice(users), rng.choice(courses)
        if (user.id, course.id) in taken:
            continue
        sections = [s for s in world.sections_of(course.id) if s.sis_section_id]
        if not sections:
            continue
        taken.add((user.id, course.id))
        assert user.sis_user_id and course.sis_course_id and sections[0].sis_section_id
        out.append((user.sis_user_id, course.sis_course_id, sections[0].sis_section_id))
    return out


def state_in(app: Simulator, pair: Pair) -> str | None:
    world = app.world
    with app.lock:
        user = world.find_user(f"sis_user_id:{pair[0]}")
        section = world.find_section(f"sis_section_id:{pair[2]}")
        if user is None or section is None:
            return None
        for e in world.enrollments_of_user(user.id):
            if e.course_section_id == section.id and e.type == "StudentEnrollment":
                return e.workflow_state
    return None


@dataclass
class Change:
    op: str
    pair: Pair
    expected: str
    committed: float
    seen: float | None = None


@dataclass
class Watcher:
    """Notes when each change's enrollment first shows its expected state in Canvas."""

    app: Simulator
    pending: list[Change] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def add(self, change: Change) -> None:
        with self.lock:
            self.pending.append(change)

    def run(self) -> None:
        """A pair changed twice before Canvas showed the first: the service may apply only the
        last (one poll reads the row once), so the state of a later change also settles the
        earlier ones, at the moment it shows."""
        while not self.stop.is_set():
            with self.lock:
                waiting = list(self.pending)
            by_pair: dict[Pair, list[Change]] = {}
            for change in waiting:
                by_pair.setdefault(change.pair, []).append(change)
            done: list[Change] = []
            for pair, group in by_pair.items():
                state = state_in(self.app, pair)
                last = max((i for i, c in enumerate(group) if c.expected == state), default=-1)
                if last >= 0:
                    now = time.monotonic()
                    for change in group[: last + 1]:
                        change.seen = now
                        done.append(change)
            if done:
                with self.lock:
                    ids = {id(c) for c in done}
                    self.pending = [c for c in self.pending if id(c) not in ids]
            self.stop.wait(0.02)

    def unsettled(self) -> set[Pair]:
        """Pairs with a change Canvas does not show yet."""
        with self.lock:
            return {c.pair for c in self.pending}

    def outstanding(self) -> int:
        with self.lock:
            return len(self.pending)


class Sis:
    def __init__(self) -> None:
        self.engine = create_engine(PG_URL)
        self.table = f"bench_watch_{uuid.uuid4().hex[:8]}"
        self.next_id = 0
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    f"CREATE TABLE {self.table} (id INTEGER PRIMARY KEY, course_id TEXT, "
                    "user_id TEXT, role TEXT, section_id TEXT, status TEXT, "
                    "updated_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())"
                )
            )
            conn.execute(text(f"CREATE INDEX ON {self.table} (updated_at)"))

    @property
    def query(self) -> str:
        return (
            f"SELECT id, course_id, user_id, role, section_id, status, updated_at FROM {self.table}"  # noqa: S608 -- our own table name
        )

    def insert(self, pair: Pair) -> int:
        self.next_id += 1
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    f"INSERT INTO {self.table} (id, course_id, user_id, role, section_id, status) "  # noqa: S608
                    "VALUES (:id, :c, :u, 'student', :s, 'active')"
                ),
                {"id": self.next_id, "c": pair[1], "u": pair[0], "s": pair[2]},
            )
        return self.next_id

    def set_status(self, row_id: int, status: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    f"UPDATE {self.table} SET status = :st, updated_at = clock_timestamp() "  # noqa: S608
                    "WHERE id = :id"
                ),
                {"st": status, "id": row_id},
            )

    def delete(self, row_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(f"DELETE FROM {self.table} WHERE id = :id"), {"id": row_id})  # noqa: S608

    def drop(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {self.table}"))
        self.engine.dispose()


def write_config(directory: Path, sis: Sis, interval: float, full_every: float) -> Path:
    path = directory / "canvas-tui.toml"
    path.write_text(
        f'[source]\nkind = "sql"\nurl = "{PG_URL}"\nquery = "{sis.query}"\n\n'
        f'[watch]\ninterval = {interval}\ncursor_column = "updated_at"\ncursor_overlap = 2\n'
        # its own journal: the default one would be resumed by the next run, against another URL
        f'journal = "{directory / "watch.journal"}"\n'
        f'row_id_column = "id"\nfull_every = {full_every}\ndrift_at = ""\n\n'
        '[plan]\ndrop_policy = "delete"\nbrake_max_share = 1.0\nbrake_max_count = 100000\n'
    )
    return path


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def paced_ops(rate: float, seconds: float, rng: random.Random) -> Iterator[str]:
    """`rate` changes a second for `seconds`, each yielded at its due time, of a kind drawn by MIX."""
    started = time.monotonic()
    for i in range(int(rate * seconds)):
        if (delay := started + i / rate - time.monotonic()) > 0:
            time.sleep(delay)
        roll = rng.random()
        op = "insert" if roll < MIX[0][1] else "update"
        if op == "update" and roll >= MIX[0][1] + MIX[1][1]:
            op = "delete"
        yield op


@dataclass
class Phase:
    """One rate's phase: its changes are sent, then drained; `end` summarises it."""

    requests_before: int
    load_before: tuple[float, float, float]
    started: float

    @classmethod
    def begin(cls, app: Any) -> Phase:
        return cls(app.stats()["requests"], os.getloadavg(), time.monotonic())

    def end(self, rate: float, app: Any, watcher: Watcher, changes: list[Change]) -> dict[str, Any]:
        load_time = time.monotonic() - self.started
        deadline = time.monotonic() + 600
        while watcher.outstanding() and time.monotonic() < deadline:
            time.sleep(0.1)
        drained = time.monotonic() - self.started
        requests = app.stats()["requests"] - self.requests_before
        n = len(changes)
        latencies = [c.seen - c.committed for c in changes if c.seen is not None]
        by_op = {
            op: [c.seen - c.committed for c in changes if c.op == op and c.seen is not None]
            for op, _ in MIX
        }
        return {
            "rate": rate,
            "changes": n,
            "seen": len(latencies),
            "load_seconds": round(load_time, 1),
            "drained_seconds": round(drained, 1),
            "p50": round(statistics.median(latencies), 2) if latencies else None,
            "p95": round(percentile(latencies, 0.95), 2) if latencies else None,
            "max": round(max(latencies), 2) if latencies else None,
            "p95_by_op": {op: round(percentile(v, 0.95), 2) for op, v in by_op.items() if v},
            "requests": requests,
            "requests_per_change": round(requests / n, 2) if n else None,
            "loadavg_before": [round(x, 2) for x in self.load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        }


def run_rate(
    rate: float,
    seconds: float,
    sis: Sis,
    app: Simulator,
    watcher: Watcher,
    live: dict[int, tuple[Pair, str]],
    pool: list[Pair],
    rng: random.Random,
) -> dict[str, Any]:
    changes: list[Change] = []
    phase = Phase.begin(app)
    for op in paced_ops(rate, seconds, rng):
        # an update or delete takes a row whose earlier changes Canvas shows already: a row
        # inserted and deleted within one poll is never sent, and would never show anything
        unsettled = watcher.unsettled() if op != "insert" else set()
        settled = [r for r, (p, _s) in live.items() if p not in unsettled]
        if not settled:
            op = "insert"
        if op == "insert":
            pair = pool.pop()
            row_id = sis.insert(pair)
            live[row_id] = (pair, "active")
            expected = "active"
        else:
            row_id = rng.choice(settled)
            pair, status = live[row_id]
            if op == "update":
                expected = "inactive" if status == "active" else "active"
                sis.set_status(row_id, expected)
                live[row_id] = (pair, expected)
            else:
                sis.delete(row_id)
                del live[row_id]
                expected = "deleted"
        change = Change(op, pair, expected, time.monotonic())
        changes.append(change)
        watcher.add(change)
    return phase.end(rate, app, watcher, changes)


def source_side(rows: int) -> dict[str, Any]:
    """The source-side diff alone (no Canvas): a table of `rows` rows read whole three times
    (all new, then unchanged twice) and by cursor once, by a WatchService in this process whose
    runner never sends. Time per read, and Python's peak allocation during a read."""
    import asyncio
    import tracemalloc

    from canvas_tui.config import CanvasConfig, Config, Secret, SourceConfig, WatchConfig
    from canvas_tui.engine.session import open_session
    from canvas_tui.engine.watch import WatchService
    from canvas_tui.engine.watch_sources import open_poller

    sis = Sis()
    with sis.engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO {sis.table} (id, course_id, user_id, role, section_id, status) "  # noqa: S608
                "SELECT n, 'C' || (n % 500), 'U' || n, 'student', 'S' || (n % 500) || '-1', "
                "'active' FROM generate_series(1, :rows) AS n"
            ),
            {"rows": rows},
        )
    config = Config(
        canvas=CanvasConfig(base_url="http://127.0.0.1", token=Secret("unused")),
        source=SourceConfig(kind="sql", url=PG_URL, query=sis.query),
        watch=WatchConfig(
            cursor_column="updated_at", cursor_overlap=0, row_id_column="id", drift_at=None
        ),
    )
    out: dict[str, Any] = {"rows": rows, "loadavg": [round(x, 2) for x in os.getloadavg()]}

    async def measure() -> None:
        with tempfile.TemporaryDirectory(prefix="bench-watch-") as tmp:
            session = open_session(config, journal_path=Path(tmp) / "w.journal")
            service = WatchService(session, open_poller(config), emit=lambda *a, **k: None)
            try:
                await service.open()
                for name in ("whole_new", "whole_unchanged", "whole_unchanged_traced", "cursor"):
                    if name != "cursor":
                        service.state.full_at = 0.0  # a whole read is due
                    traced = name.endswith("traced") or name == "whole_new"
                    if traced:
                        tracemalloc.start()
                    started = time.perf_counter()
                    applied = await service.poll_once()
                    elapsed = time.perf_counter() - started
                    peak = tracemalloc.get_traced_memory()[1] if traced else None
                    if traced:
                        tracemalloc.stop()
                    out[name] = {
                        "seconds": round(elapsed, 2),
                        "changes": applied.changes if applied else 0,
                        "unchanged": applied.unchanged if applied else 0,
                        "peak_mb": None if peak is None else round(peak / 2**20, 1),
                    }
            finally:
                await session.close()

    try:
        asyncio.run(measure())
    finally:
        sis.drop()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="1,10,50", help="changes per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=60.0, help="load time per rate")
    parser.add_argument("--interval", type=float, default=0.5, help="[watch] interval")
    parser.add_argument("--full-every", type=float, default=2.0, help="[watch] full_every")
    parser.add_argument("--markdown", metavar="FILE", help="append a markdown table to FILE")
    parser.add_argument(
        "--source-side",
        type=int,
        metavar="ROWS",
        help="instead: the source-side diff alone over a table of ROWS rows (no Canvas)",
    )
    args = parser.parse_args()
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
    except OSError as exc:
        print(f"PostgreSQL is not reachable on 127.0.0.1:5432 ({exc}); start it first")
        return 2
    if args.source_side:
        print(json.dumps(source_side(args.source_side), indent=1))
        return 0
    rng = random.Random(16)
    world = World.generate(7)
    app = build_app(SimConfig(time_scale=1.0), world)
    rates = [float(r) for r in args.rates.split(",")]
    needed = WARM_UP + int(sum(r * args.seconds for r in rates) * MIX[0][1] * 1.3) + 100
    pool = fresh_pairs(world, needed, rng)
    sis = Sis()
    results: list[dict[str, Any]] = []
    live: dict[int, tuple[Pair, str]] = {}
    watcher = Watcher(app)
    watching = threading.Thread(target=watcher.run, daemon=True)
    watching.start()
    with tempfile.TemporaryDirectory(prefix="bench-watch-") as tmp, serve_in_thread(app) as url:
        directory = Path(tmp)
        config = write_config(directory, sis, args.interval, args.full_every)
        log = (directory / "watch.log").open("w")
        service = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "canvas_tui",
                "watch",
                "--config",
                str(config),
                "--journal",
                str(directory / "watch.journal"),
            ],
            env={**os.environ, "CANVAS_BASE_URL": url, "CANVAS_API_TOKEN": ADMIN_TOKEN},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            warm = []
            for _ in range(WARM_UP):
                pair = pool.pop()
                live[sis.insert(pair)] = (pair, "active")
                warm.append(Change("insert", pair, "active", time.monotonic()))
                watcher.add(warm[-1])
            deadline = time.monotonic() + 300
            while watcher.outstanding() and time.monotonic() < deadline:
                if service.poll() is not None:
                    raise SystemExit(f"watch exited: {(directory / 'watch.log').read_text()}")
                time.sleep(0.1)
            print(f"warm-up: {WARM_UP} rows applied", flush=True)
            for rate in rates:
                result = run_rate(rate, args.seconds, sis, app, watcher, live, pool, rng)
                results.append(result)
                print(json.dumps(result), flush=True)
        finally:
            service.terminate()
            service.wait(30)
            watcher.stop.set()
            sis.drop()
    header = (
        "| changes/s | changes | p50 s | p95 s | max s | p95 insert / update / delete s | "
        "Canvas requests / change | drained in s | load avg (1 min, before -> after) |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = "".join(
        f"| {r['rate']:g} | {r['changes']} | {r['p50']} | {r['p95']} | {r['max']} | "
        f"{' / '.join(str(r['p95_by_op'].get(op, '-')) for op, _ in MIX)} | "
        f"{r['requests_per_change']} | {r['drained_seconds']} (load {r['load_seconds']}) | "
        f"{r['loadavg_before'][0]} -> {r['loadavg_after'][0]} |\n"
        for r in results
    )
    print(header + rows)
    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as out:
            out.write(header + rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
