"""Plan scenarios: a small seeded world, one course arranged by hand, the real client in process."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from canvas_tui.canvas.governor import Governor
from canvas_tui.config import CanvasConfig, Config, PlanConfig, Secret, SyncConfig
from canvas_tui.engine.protocol import EngineSpec
from canvas_tui.engine.remote import RemoteSession, start_engine
from canvas_tui.engine.session import Session, open_session
from canvas_tui.simulator import ADMIN_TOKEN, SimConfig, Simulator, World, build_app
from canvas_tui.simulator.testing import asgi_transport
from canvas_tui.simulator.world import BUILT_IN_ROLE_IDS, Course, Enrollment, Section, User
from canvas_tui.sources import CsvSource
from tests.helpers import write_rows

TIME_SCALE = 50.0
HEADER = ["course_id", "user_id", "role", "section_id", "status"]
SIS_IMPORT = 7  # the sis_import_id of enrollments "an SIS import" made in these tests


@dataclass
class Arena:
    """A world, its simulator, and one open course with a section to arrange enrollments in."""

    world: World
    app: Simulator
    course: Course
    section: Section
    users: list[User]
    tmp: Path

    def enroll(
        self,
        user: User,
        state: str = "active",
        *,
        sis: bool = True,
        role: str = "StudentEnrollment",
    ) -> Enrollment:
        return self.world.add_enrollment(
            user,
            self.section,
            self.world.roles[BUILT_IN_ROLE_IDS[role]],
            state=state,
            sis_import_id=SIS_IMPORT if sis else None,
        )

    def row(self, user: User, status: str = "active", role: str = "student") -> list[str]:
        assert self.course.sis_course_id and self.section.sis_section_id and user.sis_user_id
        return [
            self.course.sis_course_id,
            user.sis_user_id,
            role,
            self.section.sis_section_id,
            status,
        ]

    def csv(self, rows: list[list[str]], name: str = "in.csv") -> Path:
        """Rows of `row()`, with start_date and end_date when they carry two more fields."""
        extra = len(rows[0]) - len(HEADER) if rows else 0
        return write_rows(self.tmp / name, rows, HEADER + ["start_date", "end_date"][:extra])

    def config(self, **plan: object) -> Config:
        return Config(
            canvas=CanvasConfig(base_url="http://127.0.0.1", token=Secret(ADMIN_TOKEN)),
            sync=SyncConfig(journal_dir=self.tmp / "runs"),
            plan=PlanConfig(**plan),  # type: ignore[arg-type]
        )

    def session(self, path: Path, config: Config, journal: str) -> Session:
        (self.tmp / "runs").mkdir(exist_ok=True)
        return open_session(
            config,
            source=CsvSource(path),
            journal_path=self.tmp / "runs" / f"{journal}.journal",
            transport=asgi_transport(self.app),
            governor=Governor(leak=10.0 * TIME_SCALE),
        )

    def engine_session(
        self, path: Path, config: Config, journal: str, base_url: str
    ) -> RemoteSession:
        """The same, with the engine in a process of its own (as the console runs it) talking to
        this arena's simulator served at `base_url`."""
        (self.tmp / "runs").mkdir(exist_ok=True)
        served = replace(config, canvas=replace(config.canvas, base_url=base_url))
        return start_engine(
            EngineSpec(
                served,
                source=path,
                journal_path=self.tmp / "runs" / f"{journal}.journal",
                governor_leak=10.0 * TIME_SCALE,
            )
        )

    def state_of(self, enrollment: Enrollment) -> str:
        return self.world.enrollments[enrollment.id].workflow_state

    def writes(self) -> int:
        by = self.app.stats()["requests_by_endpoint"]
        return sum(
            by.get(k, 0)
            for k in ("create_enrollment", "delete_enrollment", "reactivate_enrollment")
        )


@pytest.fixture
def arena(tmp_path: Path) -> Arena:
    world = World.generate(7, users=300, courses=6)
    course = world.add_course("Plan Lab", "PLAN101-F26")
    section = world.add_section(course, "Plan Lab 01", "PLAN101-F26-01")
    users = [u for u in world.users.values() if u.sis_user_id and u.sis_user_id.startswith("S1")]
    app = build_app(SimConfig(time_scale=TIME_SCALE), world)
    return Arena(world, app, course, section, users[:40], tmp_path)
