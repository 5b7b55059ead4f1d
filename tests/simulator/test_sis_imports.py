"""The SIS Import API's life cycle: states, progress, messages, the errors file, abort and the
one-import-at-a-time strand (instructure/canvas-lms app/models/sis_batch.rb,
app/controllers/sis_imports_api_controller.rb)."""

from __future__ import annotations

import io
import zipfile
from datetime import datetime, timedelta
from typing import Any

import httpx

from canvas_tui.cli import build_parser
from canvas_tui.simulator import ADMIN_TOKEN, build_app, serve
from canvas_tui.simulator.testing import serve_in_thread
from canvas_tui.simulator.world import DOC_COURSE, World
from tests.helpers import eventually, fast_config
from tests.simulator.conftest import USER_AGENT, client_for
from tests.simulator.sis_helpers import (
    IMPORTS,
    START,
    enrollments_csv,
    enrollments_in_world,
    enrollments_of,
    errors_rows,
    run_to_end,
    sis_app,
    status,
    upload,
)


async def test_a_clean_import_goes_created_importing_imported_and_enrolls() -> None:
    app, clock = sis_app(rate=10.0, start_delay=1.0)
    data = enrollments_csv([(DOC_COURSE, "13834", "student", "2A", "active")])
    async with client_for(app) as client:
        created = await upload(client, data)
        assert created.status_code == 200
        body = created.json()
        assert (body["workflow_state"], body["progress"]) == ("created", 0)
        assert body["ended_at"] is None and body["started_at"] is None
        assert body["data"] == {"import_type": "instructure_csv"}
        clock.now = START + 0.5
        assert (await status(client, body["id"]))["workflow_state"] == "created"
        clock.now = START + 1.0
        running = await status(client, body["id"])
        assert running["workflow_state"] == "importing"
        assert running["started_at"] is not None
        clock.now = START + 1.2
        final = await status(client, body["id"])
        assert final["workflow_state"] == "imported"
        assert final["progress"] == 100
        assert final["ended_at"] is not None
        assert "processing_warnings" not in final and "errors_attachment" not in final
        counts = final["data"]["counts"]
        assert counts["enrollments"] == 1
        assert (counts["error_count"], counts["warning_count"]) == (0, 0)
        assert final["data"]["supplied_batches"] == ["enrollment"]
        assert final["data"]["statistics"]["Enrollment"]["created"] == 1
        assert final["data"]["statistics"]["total_state_changes"] == 1
        rows = await enrollments_of(client, DOC_COURSE, "13834")
        stats = (await client.get("/__sim__/stats")).json()["sis_imports"]
    assert stats == {
        "imports": 1,
        "by_state": {"imported": 1},
        "rows_applied": 1,
        "rate_per_world_second": 10.0,
    }
    assert [(r["enrollment_state"], r["sis_section_id"], r["sis_import_id"]) for r in rows] == [
        ("active", "2A", body["id"])
    ]


async def test_progress_moves_by_parallel_chunks_while_rows_land() -> None:
    """Over 49 rows, progress is the share of 25-row chunks done (SisBatch.rows_for_parallel)."""
    app, clock = sis_app(rate=25.0, start_delay=0.0)
    users = [u.sis_user_id for u in app.world.users.values() if u.id >= 1000][:100]
    data = enrollments_csv([(DOC_COURSE, u or "", "student", "", "active") for u in users])
    async with client_for(app) as client:
        import_id = (await upload(client, data)).json()["id"]
        final, seen = await run_to_end(client, clock, import_id, step=1.0)
        assert final["workflow_state"] == "imported"
        assert final["data"]["running_immediately"] is False
    progresses = [p for state, p in seen if state == "importing"]
    assert progresses == sorted(progresses)
    assert {25, 50, 75} <= set(progresses)
    assert final["data"]["counts"]["enrollments"] == 100


async def test_row_problems_are_warnings_with_canvas_words_and_line_numbers() -> None:
    app, clock = sis_app()
    data = enrollments_csv(
        [
            (DOC_COURSE, "01103", "student", "1B", "active"),  # line 2: fine
            (DOC_COURSE, "NOBODY", "student", "", "active"),  # 3
            ("", "01103", "student", "", "active"),  # 4
            (DOC_COURSE, "13834", "teacher", "", "finished"),  # 5
            ("NO-SUCH-COURSE", "13834", "student", "", "active"),  # 6
            (DOC_COURSE, "13834", "student", "ZZ", "active"),  # 7
            (DOC_COURSE, "13834", "dean", "", "active"),  # 8
            (DOC_COURSE, "", "student", "", "active"),  # 9
            ("HIST100-S26", "13834", "student", "1B", "active"),  # 10: unrelated section
        ]
    )
    async with client_for(app) as client:
        import_id = (await upload(client, data)).json()["id"]
        final, _ = await run_to_end(client, clock, import_id)
        attachment = final["errors_attachment"]
        download = await client.get(attachment["url"].removeprefix("http://canvas.test"))
    assert final["workflow_state"] == "imported_with_messages"
    assert final["data"]["counts"]["warning_count"] == 8
    assert final["data"]["counts"]["enrollments"] == 1
    assert "processing_errors" not in final
    expected = [
        ("User not found for enrollment (User ID: NOBODY, Course ID: E411208, Section ID: )", "3"),
        ("No course_id or section_id given for an enrollment", "4"),
        ('Improper status "finished" for an enrollment', "5"),
        ("Neither course nor section existed for user enrollment "
         "(Course ID: NO-SUCH-COURSE, Section ID: , User ID: 13834)", "6"),
        ("An enrollment referenced a non-existent section ZZ", "7"),
        ('Improper role "dean" for an enrollment', "8"),
        ("No user_id given for an enrollment", "9"),
        ("An enrollment listed a section (1B) and a course (HIST100-S26) that are unrelated "
         "for user (13834)", "10"),
    ]  # fmt: skip
    assert final["processing_warnings"] == [["sis_import.csv", m] for m, _ in expected]
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    rows = errors_rows(download.text)
    assert rows[0] == ["sis_import_id", "file", "message", "row"]
    assert rows[1:] == [[str(import_id), "sis_import.csv", m, line] for m, line in expected]


async def test_more_than_24_warnings_inline_24_then_the_and_n_more_pair() -> None:
    app, clock = sis_app(rate=100.0)
    data = enrollments_csv([(DOC_COURSE, f"GHOST{n}", "student", "", "active") for n in range(30)])
    async with client_for(app) as client:
        import_id = (await upload(client, data)).json()["id"]
        final, _ = await run_to_end(client, clock, import_id)
        download = await client.get(final["errors_attachment"]["url"])
    warnings = final["processing_warnings"]
    assert len(warnings) == 25
    assert warnings[0][1].startswith("User not found for enrollment (User ID: GHOST0,")
    assert warnings[23][1].startswith("User not found for enrollment (User ID: GHOST23,")
    assert warnings[24] == [
        "and 6 more warnings that were not included",
        "Download the error file to see all warnings.",
    ]
    assert final["data"]["counts"]["warning_count"] == 30
    rows = errors_rows(download.text)[1:]
    assert len(rows) == 30
    assert [r[3] for r in rows] == [str(n) for n in range(2, 32)]


async def test_the_errors_file_needs_its_verifier() -> None:
    app, clock = sis_app()
    data = enrollments_csv([(DOC_COURSE, "NOBODY", "student", "", "active")])
    async with client_for(app, token=None) as anonymous, client_for(app) as client:
        import_id = (await upload(client, data)).json()["id"]
        final, _ = await run_to_end(client, clock, import_id)
        url = final["errors_attachment"]["url"]
        assert (await anonymous.get(url)).status_code == 200
        wrong = url.rsplit("verifier=", 1)[0] + "verifier=guess"
        assert (await anonymous.get(wrong)).status_code == 404


async def test_a_second_import_waits_while_the_first_runs() -> None:
    app, clock = sis_app(rate=10.0, start_delay=0.0)
    first = enrollments_csv(
        [(DOC_COURSE, "01103", "student", "", "active")] * 1
        + [(DOC_COURSE, f"GHOST{n}", "student", "", "active") for n in range(19)]
    )
    second = enrollments_csv([(DOC_COURSE, "13834", "student", "", "active")])
    async with client_for(app) as client:
        one = (await upload(client, first)).json()["id"]
        two = (await upload(client, second)).json()["id"]
        clock.now = START + 1.0
        assert (await status(client, one))["workflow_state"] == "importing"
        assert (await status(client, two))["workflow_state"] == "created"
        importing = (await client.get(f"{IMPORTS}/importing")).json()["sis_imports"]
        assert [i["id"] for i in importing] == [one]
        clock.now = START + 1.99
        assert (await status(client, two))["workflow_state"] == "created"
        clock.now = START + 2.0
        assert (await status(client, one))["workflow_state"] == "imported_with_messages"
        assert (await status(client, two))["workflow_state"] == "importing"
        clock.now = START + 2.1
        assert (await status(client, two))["workflow_state"] == "imported"


async def test_abort_lets_the_chunk_in_hand_finish_and_keeps_what_landed() -> None:
    """Each parallel importer (25 rows here) checks for an abort only before it starts
    (ImportRefactored#run_parallel_importer): rows of the chunk in hand still land."""
    app, clock = sis_app(rate=1.0, start_delay=0.0)
    users = [u.sis_user_id or "" for u in app.world.users.values() if u.id >= 1000][:60]
    data = enrollments_csv([(DOC_COURSE, u, "student", "2A", "active") for u in users])
    async with client_for(app) as client:
        import_id = (await upload(client, data)).json()["id"]
        clock.now = START + 30  # rows 1-30 have landed: the second chunk (26-50) is in hand
        aborted = await client.put(f"{IMPORTS}/{import_id}/abort")
        assert aborted.status_code == 200
        body = aborted.json()
        assert (body["workflow_state"], body["ended_at"], body["progress"]) == ("aborted", None, 33)
        clock.now = START + 1000
        final = await status(client, import_id)
        again = await client.put(f"{IMPORTS}/{import_id}/abort")
    assert (final["workflow_state"], final["ended_at"]) == ("aborted", None)
    assert final["progress"] == 67  # the second chunk completed after the abort
    assert final["data"]["counts"]["enrollments"] == 0  # counted only when every chunk is done
    landed = [bool(enrollments_in_world(app, DOC_COURSE, u)) for u in users]
    assert landed == [True] * 50 + [False] * 10
    assert again.status_code == 404  # `not_completed.find`


async def test_an_aborted_running_import_holds_the_next_for_ten_minutes() -> None:
    """SisBatch#abort_batch requeues the account's job 10 minutes on when imports wait."""
    app, clock = sis_app(rate=1.0, start_delay=0.0)
    slow = enrollments_csv([(DOC_COURSE, f"GHOST{n}", "student", "", "active") for n in range(10)])
    quick = enrollments_csv([(DOC_COURSE, "13834", "student", "", "active")])
    async with client_for(app) as client:
        one = (await upload(client, slow)).json()["id"]
        two = (await upload(client, quick)).json()["id"]
        clock.now = START + 2
        await client.put(f"{IMPORTS}/{one}/abort")
        clock.now = START + 2 + 599
        assert (await status(client, two))["workflow_state"] == "created"
        clock.now = START + 2 + 600
        assert (await status(client, two))["workflow_state"] == "importing"


async def test_abort_before_start_and_abort_all_pending() -> None:
    app, clock = sis_app(start_delay=5.0)
    data = enrollments_csv([(DOC_COURSE, "13834", "student", "", "active")])
    async with client_for(app) as client:
        one = (await upload(client, data)).json()["id"]
        two = (await upload(client, data)).json()["id"]
        aborted = (await client.put(f"{IMPORTS}/{one}/abort")).json()
        assert (aborted["workflow_state"], aborted["progress"]) == ("aborted", 0)
        answer = await client.put(f"{IMPORTS}/abort_all_pending")
        assert answer.json() == {"aborted": True}
        clock.now = START + 60
        for import_id in (one, two):
            body = await status(client, import_id)
            assert (body["workflow_state"], body["progress"]) == ("aborted", 100)
        assert await enrollments_of(client, DOC_COURSE, "13834") == []


async def test_files_canvas_cannot_read_fail_the_import_with_messages() -> None:
    app, clock = sis_app()
    async with client_for(app) as client:
        bad_utf8 = (
            await upload(client, b"course_id,user_id,role,status\nE411208,\xff,student,active\n")
        ).json()["id"]
        no_header = (await upload(client, b"a,b,c\n1,2,3\n")).json()["id"]
        not_a_zip = (await upload(client, b"PK garbage", extension="zip")).json()["id"]
        results = {}
        for import_id in (bad_utf8, no_header, not_a_zip):
            final, _ = await run_to_end(client, clock, import_id)
            results[import_id] = final
    assert results[bad_utf8]["workflow_state"] == "failed_with_messages"
    assert results[bad_utf8]["processing_errors"] == [["sis_import.csv", "Invalid UTF-8"]]
    assert results[no_header]["processing_errors"] == [
        ["sis_import.csv", "Couldn't find Canvas CSV import headers"]
    ]
    assert results[no_header]["progress"] == 0  # progress = 100 only when the import finished
    zip_error = results[not_a_zip]["processing_errors"][0][1]
    assert zip_error.startswith("Error while importing CSV. Please contact support. (Error report ")
    assert results[not_a_zip]["workflow_state"] == "failed_with_messages"
    assert results[no_header]["data"]["counts"]["error_count"] == 1


async def test_a_crashed_job_is_failed_with_its_error_message() -> None:
    app, clock = sis_app()
    app.sis_imports.crash_next("database went away")
    data = enrollments_csv([(DOC_COURSE, "13834", "student", "", "active")])
    async with client_for(app) as client:
        import_id = (await upload(client, data)).json()["id"]
        final, _ = await run_to_end(client, clock, import_id)
    assert final["workflow_state"] == "failed"
    assert final["data"]["error_message"] == "database went away"
    assert "processing_errors" not in final


async def test_list_is_wrapped_newest_first_and_filters_by_state() -> None:
    app, clock = sis_app()
    data = enrollments_csv([(DOC_COURSE, "13834", "student", "", "active")])
    async with client_for(app) as client:
        one = (await upload(client, data)).json()["id"]
        clock.now += 0.001
        two = (await upload(client, data)).json()["id"]
        listing = await client.get(IMPORTS)
        assert [i["id"] for i in listing.json()["sis_imports"]] == [two, one]
        assert 'rel="last"' not in listing.headers["link"]
        only = await client.get(IMPORTS, params={"workflow_state[]": "imported"})
        assert only.json() == {"sis_imports": []}


def test_an_import_over_a_real_socket_multipart_and_its_errors_file() -> None:
    """uvicorn in a thread, the real clock: a multipart upload, polling, the errors file."""
    app = build_app(
        fast_config(time_scale=1.0, sis_import_rate=5000.0, sis_import_start_delay=0.0),
        World.generate(7, users=50, courses=3),
    )
    data = enrollments_csv(
        [
            (DOC_COURSE, "01103", "student", "1B", "active"),
            (DOC_COURSE, "GHOST", "ta", "", "active"),
        ]
    )
    headers = {"User-Agent": USER_AGENT, "Authorization": f"Bearer {ADMIN_TOKEN}"}
    with serve_in_thread(app) as base, httpx.Client(base_url=base, headers=headers) as client:
        created = client.post(
            IMPORTS,
            data={"import_type": "instructure_csv"},
            files={"attachment": ("enrollments.csv", data, "text/csv")},
        )
        assert created.status_code == 200, created.text
        import_id = created.json()["id"]

        def finished() -> dict[str, Any] | None:
            body: dict[str, Any] = client.get(f"{IMPORTS}/{import_id}").json()
            return body if body["workflow_state"] not in ("created", "importing") else None

        final = eventually(finished, what="the import to finish", timeout=20)
        url = final["errors_attachment"]["url"]
        assert url.startswith(f"{base}/files/")
        download = httpx.get(url)  # no token: the verifier is the permission
    assert final["workflow_state"] == "imported_with_messages"
    assert errors_rows(download.text)[1:] == [
        [
            str(import_id),
            "enrollments.csv",
            "User not found for enrollment (User ID: GHOST, Course ID: E411208, Section ID: )",
            "3",
        ]
    ]


def test_the_simulate_command_passes_the_import_knobs() -> None:
    args = build_parser().parse_args(
        ["simulate", "--sis-import-rate", "800", "--sis-import-start-delay", "0.5"]
    )
    config = serve.config_from_args(args)
    assert (config.sis_import_rate, config.sis_import_start_delay) == (800.0, 0.5)
    assert config.sis_imports_enabled is True
    off = serve.config_from_args(build_parser().parse_args(["simulate", "--no-sis-imports"]))
    assert off.sis_imports_enabled is False
    bad = build_parser().parse_args(["simulate", "--sis-import-rate", "0"])
    assert serve.main(bad) == 2


async def test_restore_states_undoes_an_import_through_a_progress_job() -> None:
    """restoring, then restored (or partially_restored for undelete_only and the others)."""
    app, clock = sis_app(rate=1.0, start_delay=1.0)
    async with client_for(app) as client:
        first = enrollments_csv(
            [
                (DOC_COURSE, "01103", "student", "1B", "active"),
                (DOC_COURSE, "13834", "student", "1B", "active"),
            ]
        )
        one, _ = await run_to_end(client, clock, (await upload(client, first)).json()["id"])
        second = enrollments_csv(
            [
                (DOC_COURSE, "01103", "student", "1B", "deleted"),
                (DOC_COURSE, "13834", "student", "1B", "completed"),
            ]
        )
        two, _ = await run_to_end(client, clock, (await upload(client, second)).json()["id"])
        both = await client.put(
            f"{IMPORTS}/{two['id']}/restore_states",
            params={"undelete_only": "1", "unconclude_only": "1"},
        )
        assert (both.status_code, both.json()) == (
            400,
            "cannot set both undelete_only and unconclude_only",
        )
        started = await client.put(
            f"{IMPORTS}/{two['id']}/restore_states", params={"undelete_only": "true"}
        )
        progress = started.json()
        assert (progress["workflow_state"], progress["completion"]) == ("queued", 0.0)
        assert progress["context_type"] == "SisBatch" and progress["context_id"] == two["id"]
        clock.now += 1.0
        assert (await status(client, two["id"]))["workflow_state"] == "restoring"
        clock.now += 1.0
        assert (await status(client, two["id"]))["workflow_state"] == "partially_restored"
        polled = (await client.get(progress["url"])).json()
        assert (polled["workflow_state"], polled["completion"]) == ("completed", 100.0)
        (undeleted,) = enrollments_in_world(app, DOC_COURSE, "01103")
        (concluded,) = enrollments_in_world(app, DOC_COURSE, "13834")
        assert (undeleted.workflow_state, concluded.workflow_state) == ("active", "completed")
        await client.put(f"{IMPORTS}/{one['id']}/restore_states")
        clock.now += 10
        final = await status(client, one["id"])
    assert final["workflow_state"] == "restored"
    assert final["data"]["statistics"]["Enrollment"]["restored"] == 2
    assert {
        e.workflow_state
        for u in ("01103", "13834")
        for e in enrollments_in_world(app, DOC_COURSE, u)
    } == {"deleted"}


async def test_list_filters_by_creation_time() -> None:
    app, clock = sis_app()
    data = enrollments_csv([(DOC_COURSE, "13834", "student", "", "active")])
    async with client_for(app) as client:
        first = (await upload(client, data)).json()
        clock.now += 120  # two world minutes later
        second = (await upload(client, data)).json()
        stamp = datetime.fromisoformat(second["created_at"])
        later = (stamp + timedelta(seconds=1)).isoformat()
        earlier = (stamp - timedelta(seconds=60)).isoformat()
        since = await client.get(IMPORTS, params={"created_since": earlier})
        before = await client.get(IMPORTS, params={"created_before": earlier})
        none = await client.get(IMPORTS, params={"created_since": later})
        nonsense = await client.get(IMPORTS, params={"created_since": "last week"})
    assert [i["id"] for i in since.json()["sis_imports"]] == [second["id"]]
    assert [i["id"] for i in before.json()["sis_imports"]] == [first["id"]]
    assert none.json()["sis_imports"] == []
    assert len(nonsense.json()["sis_imports"]) == 2  # CanvasTime.try_parse: no filter


async def test_more_than_24_errors_inline_24_then_their_pair() -> None:
    """Errors (failure) are per file; a zip of 30 unreadable CSVs makes 30 of them."""
    app, clock = sis_app()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as out:
        for n in range(30):
            out.writestr(f"junk{n:02d}.csv", "a,b\n1,2\n")
    async with client_for(app) as client:
        created = await client.post(
            IMPORTS, content=archive.getvalue(), headers={"Content-Type": "application/zip"}
        )
        final, _ = await run_to_end(client, clock, created.json()["id"])
        download = await client.get(final["errors_attachment"]["url"])
    assert final["workflow_state"] == "failed_with_messages"
    errors = final["processing_errors"]
    assert errors[:24] == [
        [f"junk{n:02d}.csv", "Couldn't find Canvas CSV import headers"] for n in range(24)
    ]
    assert errors[24:] == [
        ["and 6 more errors that were not included", "Download the error file to see all errors."]
    ]
    assert final["data"]["counts"]["error_count"] == 30
    assert len(errors_rows(download.text)) == 31
    assert "processing_warnings" not in final
