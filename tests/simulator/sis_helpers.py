"""Helpers for the SIS Import API tests: a simulator on a frozen clock, uploads, polling."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import httpx

from canvas_tui.simulator import Simulator, build_app
from canvas_tui.simulator.world import Enrollment, World
from tests.helpers import fast_config
from tests.simulator.conftest import FrozenClock

IMPORTS = "/api/v1/accounts/1/sis_imports"
HEADER = ("course_id", "user_id", "role", "section_id", "status")
START = 1000.0


def sis_app(
    world: World | None = None, *, rate: float = 10.0, start_delay: float = 1.0, **config: Any
) -> tuple[Simulator, FrozenClock]:
    """A simulator whose clock only moves when a test moves it: time scale 1, `rate` rows per
    second, imports starting `start_delay` seconds after their upload."""
    clock = FrozenClock(START)
    settings: dict[str, Any] = {
        "clock": clock,
        "time_scale": 1.0,
        "sis_import_rate": rate,
        "sis_import_start_delay": start_delay,
    }
    settings.update(config)
    app = build_app(fast_config(**settings), world or World.generate(7))
    return app, clock


def enrollments_csv(rows: Sequence[Sequence[str]], header: Sequence[str] = HEADER) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


async def upload(client: httpx.AsyncClient, data: bytes, **params: str) -> httpx.Response:
    """A raw CSV post, as `curl -H 'Content-Type: text/csv' --data-binary @file` sends it."""
    query = {"import_type": "instructure_csv", "extension": "csv", **params}
    return await client.post(
        IMPORTS, params=query, content=data, headers={"Content-Type": "text/csv"}
    )


async def status(client: httpx.AsyncClient, import_id: int) -> dict[str, Any]:
    response = await client.get(f"{IMPORTS}/{import_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def run_to_end(
    client: httpx.AsyncClient, clock: FrozenClock, import_id: int, *, step: float = 1.0
) -> tuple[dict[str, Any], list[tuple[str, int]]]:
    """Move the clock `step` at a time until the import is final; the (state, progress) seen."""
    seen: list[tuple[str, int]] = []
    for _ in range(100_000):
        body = await status(client, import_id)
        seen.append((body["workflow_state"], body["progress"]))
        if body["workflow_state"] not in ("created", "importing", "cleanup_batch"):
            return body, seen
        clock.now += step
    raise AssertionError(f"import {import_id} never finished: {seen[-5:]}")


async def enrollments_of(
    client: httpx.AsyncClient, course: str, user: str, state: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """The course's enrollments of one user, through the REST side."""
    params: list[tuple[str, str | int | float | bool | None]] = [
        ("sis_user_id[]", user),
        ("per_page", "100"),
    ]
    params += [("state[]", s) for s in state]
    response = await client.get(
        f"/api/v1/courses/sis_course_id:{course}/enrollments", params=params
    )
    assert response.status_code == 200, response.text
    body: list[dict[str, Any]] = response.json()
    return body


def errors_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def enrollments_in_world(app: Simulator, course: str, user: str) -> list[Enrollment]:
    """The user's enrollments in the course, any state, read straight from the world."""
    world = app.world
    found = world.course_by_sis(course)
    person = world.user_by_sis(user)
    assert found is not None and person is not None
    return sorted(
        (e for e in world.enrollments_in_course(found.id) if e.user_id == person.id),
        key=lambda e: e.id,
    )


async def import_rows(
    app: Simulator,
    clock: FrozenClock,
    client: httpx.AsyncClient,
    rows: Sequence[Sequence[str]],
    header: Sequence[str] = HEADER,
    **params: str,
) -> dict[str, Any]:
    """Upload `rows` and run the import to its end; its final SisImport."""
    response = await upload(client, enrollments_csv(rows, header), **params)
    assert response.status_code == 200, response.text
    final, _ = await run_to_end(client, clock, response.json()["id"])
    return final
