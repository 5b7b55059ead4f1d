"""The console against the real engine and the in-process simulator (no fake runner)."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from canvas_tui.config import Config, load_config
from canvas_tui.engine.protocol import EngineSpec
from canvas_tui.engine.remote import start_engine
from canvas_tui.engine.session import open_session
from canvas_tui.engine.state import RunState
from canvas_tui.simulator import ADMIN_TOKEN, LatencyModel, SimConfig, Simulator, World, build_app
from canvas_tui.simulator.testing import asgi_transport, serve_in_thread
from canvas_tui.sources import open_source
from canvas_tui.tui.app import ConsoleApp

BASE_URL = "http://127.0.0.1"  # never dialled: the transport is the simulator
ROSTER_COURSE = "TUI-ROSTER-250"
SIZE = (140, 45)
# the roster course's rows in the source: five enrolled, one the run creates, one unknown
ROSTER_ROWS = [
    *([ROSTER_COURSE, f"R{i:04d}", "student", f"{ROSTER_COURSE}-01", "active"] for i in range(5)),
    [ROSTER_COURSE, "R9000", "student", f"{ROSTER_COURSE}-01", "active"],  # created by the run
    [ROSTER_COURSE, "LATE0001", "student", f"{ROSTER_COURSE}-01", "active"],  # no such user yet
]


def small_world(seed: int = 7) -> World:
    return World.generate(seed, users=400, courses=12)


def active_courses(world: World) -> list[str]:
    return sorted(
        c.sis_course_id
        for c in world.courses.values()
        if c.sis_course_id
        and c.workflow_state == "available"
        and not c.concluded
        and "/" not in c.sis_course_id
    )


def sis_users(world: World) -> list[str]:
    return sorted(
        u.sis_user_id
        for u in world.users.values()
        if u.sis_user_id and u.sis_user_id.startswith("S1")
    )


def write_enrollments(
    path: Path, world: World, good: int, *, bad_every: int = 0, extra: Sequence[Sequence[str]] = ()
) -> Path:
    """`good` sendable rows over the world's courses; every `bad_every`-th row is followed by a user
    Canvas does not have, and the third row is invalid (a status the SIS format does not know)."""
    courses, users = active_courses(world), sis_users(world)
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["course_id", "user_id", "role", "section_id", "status"])
        for i in range(good):
            out.writerow(
                [courses[i % len(courses)], users[i % len(users)], "student", "", "active"]
            )
            if i == 1:
                out.writerow([courses[0], users[0], "student", "", "enrolled"])
            if bad_every and i % bad_every == bad_every - 1:
                out.writerow([courses[1], f"GHOST{i:04d}", "student", "", "active"])
        out.writerows(extra)
    return path


_HARNESSES: list[Harness] = []


@dataclass
class Harness:
    """A simulator, a source file and a journal path; `app()` builds a console over them.

    With `engine_process`, the console runs as `canvas-tui` runs it: the engine in a process
    of its own, talking to the simulator served on a loopback socket (in this process, so the
    test still sees and changes the simulator's world)."""

    sim: Simulator
    csv_path: Path
    journal: Path
    time_scale: float = 1.0
    engine_process: bool = False
    sessions: list[Any] = field(default_factory=list)
    servers: ExitStack = field(default_factory=ExitStack)
    base_url: str | None = None
    via: str = "rest"  # [sync] via: sis-import makes the plan's changes one SIS import
    drop_policy: str = "never"  # [plan] drop_policy

    def config(self, base_url: str) -> Config:
        config = load_config(
            None, env={"CANVAS_API_TOKEN": ADMIN_TOKEN, "CANVAS_BASE_URL": base_url}
        )
        if self.drop_policy != "never":
            config = dataclasses.replace(
                config,
                plan=dataclasses.replace(config.plan, drop_policy=self.drop_policy),  # type: ignore[arg-type]
            )
        if self.via == "rest":
            return config
        return dataclasses.replace(
            config,
            sync=dataclasses.replace(config.sync, via=self.via),  # type: ignore[arg-type]
            # polls as often as a time-scaled simulator moves
            sis_import=dataclasses.replace(config.sis_import, poll_min=0.02, poll_max=0.1),
        )

    def opener(self, *, read_only: bool = False) -> Callable[[], object]:
        async def open_() -> Any:
            if self.engine_process and not read_only:
                if self.base_url is None:
                    self.base_url = self.servers.enter_context(serve_in_thread(self.sim))
                config = self.config(self.base_url)
                spec = EngineSpec(
                    config,
                    source=self.csv_path,
                    journal_path=self.journal,
                    governor_leak=10.0 * self.time_scale,
                )
                remote = await asyncio.to_thread(start_engine, spec)
                self.sessions.append(remote)
                return remote
            config = self.config(BASE_URL)
            session = open_session(
                config,
                source=None if read_only else open_source(self.csv_path),
                journal_path=self.journal,
                transport=asgi_transport(self.sim),
                read_only=read_only,
            )
            self.sessions.append(session)
            return session

        return open_

    def app(self, **kwargs: object) -> ConsoleApp:
        """A console over the harness; it starts sending at once unless `autostart=False` (the
        shipped console's default: READY until the start key), since most flows test a run."""
        read_only = bool(kwargs.pop("read_only", False))
        kwargs.setdefault("autostart", True)
        return ConsoleApp(
            self.opener(read_only=read_only),  # type: ignore[arg-type]
            description=self.csv_path.name,
            journal_path=self.journal,
            read_only=read_only,
            **kwargs,  # type: ignore[arg-type]
        )


def make_harness(
    tmp_path: Path,
    *,
    good: int,
    bad_every: int = 0,
    time_scale: float = 20.0,
    latency: float = 0.25,
    world: World | None = None,
    extra: Sequence[Sequence[str]] = (),
    engine_process: bool = False,
) -> Harness:
    world = world or small_world()
    sim = build_app(
        SimConfig(
            seed=7, time_scale=time_scale, latency=LatencyModel.uniform(latency), cost_jitter=0.0
        ),
        world=world,
    )
    csv_path = write_enrollments(
        tmp_path / "enrollments.csv", world, good, bad_every=bad_every, extra=extra
    )
    harness = Harness(sim, csv_path, tmp_path / "run.journal", time_scale, engine_process)
    _HARNESSES.append(harness)
    return harness


@pytest.fixture(autouse=True)
def _stop_simulator_servers() -> Iterator[None]:
    yield
    while _HARNESSES:
        _HARNESSES.pop().servers.close()


# the console's two placements of the engine: in its own process (as shipped), in the app's loop
PLACEMENTS = pytest.mark.parametrize(
    "engine_process", [True, False], ids=["engine-process", "engine-in-process"]
)


def roster_world(size: int = 250) -> World:
    """The small world plus a course whose roster spans several pages."""
    world = small_world()
    course = world.add_course("Roster Two-Fifty", ROSTER_COURSE, default_section=False)
    section = world.add_section(course, "Section 01", f"{ROSTER_COURSE}-01")
    student = world.built_in_role("StudentEnrollment")
    assert student is not None
    for i in range(size):
        user = world.add_user(f"Roster Student{i:03d}", f"R{i:04d}")
        world.add_enrollment(user, section, student)
    world.add_user("Not Yet Enrolled", "R9000")
    return world


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return make_harness(tmp_path, good=40, bad_every=10)


def state_of(app: ConsoleApp) -> RunState:
    """The app's run state, which a test reads only once it has waited for the run."""
    assert app.state is not None, "the app has no run state yet"
    return app.state


def text_of(widget: object) -> str:
    """What a Static shows, as plain text (its content rendered by Rich, wide enough not to wrap)."""
    import io

    from rich.console import Console

    console = Console(width=200, file=io.StringIO(), color_system=None)
    with console.capture() as capture:
        console.print(widget.content)  # type: ignore[attr-defined]
    return capture.get()
