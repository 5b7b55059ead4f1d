"""The token never appears in a log line, an event, an exception text or a repr."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from canvas_tui.canvas.client import AttemptEvent, CanvasClient
from canvas_tui.canvas.errors import CanvasError
from canvas_tui.simulator import FaultRates, build_app
from canvas_tui.simulator.world import COMPLETED_COURSE, DOC_COURSE, World
from tests.canvas.conftest import BASE, make_client, sim_config, sis_students

TOKEN = "tok-SECRET-7f3a9c"  # distinctive, so any leak is found by a substring search


async def test_token_absent_from_logs_events_errors_and_reprs(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    app = build_app(sim_config(tokens=(TOKEN,)), world)
    app.set_faults(FaultRates(error_500=0.1, html_503=0.05, reset_before=0.05, reset_after=0.05))
    events: list[AttemptEvent] = []
    errors: list[CanvasError] = []
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    async with make_client(app, TOKEN) as client:
        texts: list[Any] = [repr(client), str(client), repr(client._http.auth)]
        users = sis_students(world, 20)
        calls: list[dict[str, Any]] = [
            {
                "user": u,
                "course": f"sis_course_id:{DOC_COURSE}",
                "enrollment_type": "StudentEnrollment",
            }
            for u in users
        ]
        calls += [
            {
                "user": users[0],
                "course": f"sis_course_id:{DOC_COURSE}",
                "enrollment_type": "TAEnrollment",
            },
            {
                "user": users[0],
                "course": f"sis_course_id:{COMPLETED_COURSE}",
                "enrollment_type": "StudentEnrollment",
            },
            {
                "user": "sis_user_id:NOBODY",
                "course": f"sis_course_id:{DOC_COURSE}",
                "enrollment_type": "StudentEnrollment",
            },
        ]
        for call in calls:
            try:
                await client.create_enrollment(section=None, observer=events.append, **call)
            except CanvasError as error:
                errors.append(error)
        await client.list_enrollments(course=f"sis_course_id:{DOC_COURSE}", observer=events.append)
    async with CanvasClient(BASE, TOKEN + "-wrong", transport=client._http._transport) as bad:
        with pytest.raises(CanvasError) as caught:
            await bad.whoami(observer=events.append)
        errors.append(caught.value)
    with pytest.raises(CanvasError) as unsafe:
        CanvasClient("http://canvas.example.edu", TOKEN)
    errors.append(unsafe.value)

    assert len(errors) >= 4 and any(e.category == "network" for e in events)
    texts += [str(e) for e in errors] + [repr(e) for e in errors] + [repr(e) for e in events]
    texts += [caplog.text] + [repr(r.args) for r in caplog.records]
    assert caplog.records, "the client and httpx should have logged something"
    for text in texts:
        assert "SECRET-7f3a9c" not in str(text)
