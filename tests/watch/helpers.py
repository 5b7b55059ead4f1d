"""`canvas-tui watch` under test: a SIS table that changes, the service in this process against
the simulator, and what Canvas holds for a row."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from canvas_tui.config import (
    CanvasConfig,
    Config,
    PlanConfig,
    Secret,
    SourceConfig,
    WatchConfig,
)
from canvas_tui.engine.session import open_session
from canvas_tui.engine.watch import WatchService
from canvas_tui.engine.watch_sources import open_poller
from canvas_tui.simulator import ADMIN_TOKEN, Simulator, World
from canvas_tui.simulator.testing import asgi_transport
from canvas_tui.simulator.world import Enrollment
from tests.engine.workload import fresh_pairs

COLUMNS = "id, course_id, user_id, role, section_id, status, seq"
QUERY = f"SELECT {COLUMNS} FROM enrollments"


class SqliteSis:
    """A registrar's table in SQLite: every write bumps `seq`, the change cursor."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seq = 0
        with self._db() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS enrollments (id INTEGER PRIMARY KEY, course_id TEXT, "
                "user_id TEXT, role TEXT, section_id TEXT, status TEXT, seq INTEGER)"
            )
            self.seq = db.execute("SELECT COALESCE(MAX(seq), 0) FROM enrollments").fetchone()[0]

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path)

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def put(self, row_id: int, pair: tuple[str, str, str], status: str = "active") -> None:
        user, course, section = pair
        self.seq += 1
        db = self._db()
        with db:
            db.execute(
                "INSERT OR REPLACE INTO enrollments VALUES (?, ?, ?, 'student', ?, ?, ?)",
                (row_id, course, user, section, status, self.seq),
            )
        db.close()

    def delete(self, row_id: int) -> None:
        db = self._db()
        with db:
            db.execute("DELETE FROM enrollments WHERE id = ?", (row_id,))
        db.close()


def pairs(world: World, n: int) -> list[tuple[str, str, str]]:
    """(user, course, section) SIS ids with no enrollment in the world yet."""
    return fresh_pairs(world, n)


def enrollment_of(world: World, pair: tuple[str, str, str]) -> Enrollment | None:
    """The pair's student enrollment in Canvas (its section), None when there is none."""
    user_sis, _course, section_sis = pair
    user = world.find_user(f"sis_user_id:{user_sis}")
    section = world.find_section(f"sis_section_id:{section_sis}")
    if user is None or section is None:
        return None
    for enrollment in world.enrollments_of_user(user.id):
        if enrollment.course_section_id == section.id and enrollment.type == "StudentEnrollment":
            return enrollment
    return None


def state_in(world: World, pair: tuple[str, str, str]) -> str | None:
    """The workflow state of the pair's student enrollment in Canvas, None when there is none."""
    enrollment = enrollment_of(world, pair)
    return None if enrollment is None else enrollment.workflow_state


def sql_config(url: str, query: str = QUERY, **watch: Any) -> Config:
    settings: dict[str, Any] = {
        "interval": 0.05,
        "cursor_column": "seq",
        "cursor_overlap": 0,
        "row_id_column": "id",
        "drift_at": None,
    }
    settings.update(watch)
    return Config(
        canvas=CanvasConfig(base_url="http://127.0.0.1", token=Secret(ADMIN_TOKEN)),
        source=SourceConfig(kind="sql", url=url, query=query),
        watch=WatchConfig(**settings),
    )


def csv_config(path: Path, **watch: Any) -> Config:
    settings: dict[str, Any] = {"interval": 0.05, "drift_at": None}
    settings.update(watch)
    return Config(
        canvas=CanvasConfig(base_url="http://127.0.0.1", token=Secret(ADMIN_TOKEN)),
        source=SourceConfig(kind="csv", path=path),
        watch=WatchConfig(**settings),
    )


def with_plan(config: Config, **plan: Any) -> Config:
    return replace(config, plan=PlanConfig(**plan))


@dataclass
class Running:
    service: WatchService
    task: asyncio.Task[int]
    events: list[dict[str, Any]] = field(default_factory=list)

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]

    def done_or_failed(self) -> str | None:
        """For `abort_if`: the service ended."""
        if self.task.done():
            return f"the service ended: {self.task.result()} {self.events[-5:]}"
        return None


@asynccontextmanager
async def running(
    config: Config, app: Simulator, journal: Path, **options: Any
) -> AsyncIterator[Running]:
    """The service over `config`'s source, against `app` in process, until the block ends."""
    session = open_session(config, journal_path=journal, transport=asgi_transport(app))
    events: list[dict[str, Any]] = []
    service = WatchService(
        session,
        open_poller(config),
        emit=lambda event, **fields: events.append({"event": event, **fields}),
        **options,
    )
    task = asyncio.create_task(service.run())
    handle = Running(service, task, events)
    try:
        yield handle
    finally:
        service.stop()
        try:
            await asyncio.wait_for(task, 30)
        finally:
            await session.close()


POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_QUERY = "SELECT id, course_id, user_id, role, section_id, status, updated_at FROM {table}"


class PostgresSis:
    """A registrar's table in PostgreSQL: `updated_at` (clock_timestamp at each write) is the
    change cursor, as in most SIS schemas."""

    def __init__(self, url: str = POSTGRES_URL) -> None:
        from sqlalchemy import create_engine

        self.url = url
        self.table = f"canvas_tui_watch_{uuid.uuid4().hex[:8]}"
        self.engine = create_engine(url)
        self._run(
            f"CREATE TABLE {self.table} (id INTEGER PRIMARY KEY, course_id TEXT, user_id TEXT, "
            "role TEXT, section_id TEXT, status TEXT, "
            "updated_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())"
        )

    @property
    def query(self) -> str:
        return PG_QUERY.format(table=self.table)

    def _run(self, sql: str, params: dict[str, Any] | None = None) -> None:
        from sqlalchemy import text

        with self.engine.begin() as conn:
            conn.execute(text(sql), params or {})

    def put(self, row_id: int, pair: tuple[str, str, str], status: str = "active") -> None:
        user, course, section = pair
        self._run(
            f"INSERT INTO {self.table} (id, course_id, user_id, role, section_id, status) "
            "VALUES (:id, :c, :u, 'student', :s, :st) ON CONFLICT (id) DO UPDATE SET "
            "course_id = :c, user_id = :u, section_id = :s, status = :st, "
            "updated_at = clock_timestamp()",
            {"id": row_id, "c": course, "u": user, "s": section, "st": status},
        )

    def delete(self, row_id: int) -> None:
        self._run(f"DELETE FROM {self.table} WHERE id = :id", {"id": row_id})

    def drop(self) -> None:
        self._run(f"DROP TABLE IF EXISTS {self.table}")
        self.engine.dispose()
