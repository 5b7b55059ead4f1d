"""Every way `POST accounts/:id/sis_imports` refuses, with Canvas's status and body
(instructure/canvas-lms app/controllers/sis_imports_api_controller.rb: check_account, create),
and the ways it reads the upload."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest

from canvas_tui.simulator import NO_PERMISSION_TOKEN, NO_SIS_TOKEN
from canvas_tui.simulator.world import DOC_COURSE
from tests.simulator.conftest import client_for
from tests.simulator.sis_helpers import (
    IMPORTS,
    START,
    enrollments_csv,
    enrollments_of,
    run_to_end,
    sis_app,
    status,
    upload,
)

ROW = enrollments_csv([(DOC_COURSE, "13834", "student", "", "active")])


async def test_a_sub_account_is_refused_with_400() -> None:
    app, _ = sis_app()
    async with client_for(app) as client:
        response = await client.post(
            "/api/v1/accounts/2/sis_imports", params={"extension": "csv"}, content=ROW
        )
    assert response.status_code == 400
    assert response.json() == {"errors": ["SIS imports can only be executed on root accounts"]}


async def test_sis_imports_disabled_is_403_on_every_endpoint() -> None:
    app, _ = sis_app(sis_imports_enabled=False)
    body = {"errors": ["SIS imports are not enabled for this account"]}
    async with client_for(app) as client:
        created = await upload(client, ROW)
        listed = await client.get(IMPORTS)
    assert (created.status_code, created.json()) == (403, body)
    assert (listed.status_code, listed.json()) == (403, body)


@pytest.mark.parametrize("token", [NO_PERMISSION_TOKEN, NO_SIS_TOKEN])
async def test_a_caller_without_import_sis_gets_the_401_unauthorized_body(token: str) -> None:
    app, _ = sis_app()
    async with client_for(app, token=token) as client:
        response = await upload(client, ROW)
    assert response.status_code == 401
    assert response.json() == {
        "status": "unauthorized",
        "errors": [{"message": "user not authorized to perform that action"}],
    }


async def test_no_token_and_unknown_account() -> None:
    app, _ = sis_app()
    async with client_for(app, token=None) as anonymous, client_for(app) as client:
        unauthenticated = await upload(anonymous, ROW)
        unknown = await client.post(
            "/api/v1/accounts/999/sis_imports", params={"extension": "csv"}, content=ROW
        )
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["www-authenticate"] == 'Bearer realm="canvas-lms"'
    assert unknown.status_code == 404
    assert unknown.json() == {"errors": [{"message": "The specified resource does not exist."}]}


async def test_a_multipart_post_without_attachment() -> None:
    app, _ = sis_app()
    async with client_for(app) as client:
        response = await client.post(
            IMPORTS, data={"import_type": "instructure_csv"}, files={"file": ("x.csv", ROW)}
        )
    assert response.status_code == 400
    assert response.json() == {"error": True, "error_message": "Missing attachment"}


async def test_a_raw_post_whose_charset_is_not_utf8() -> None:
    app, _ = sis_app()
    async with client_for(app) as client:
        refused = await client.post(
            IMPORTS, content=ROW, headers={"Content-Type": "text/csv; charset=ISO-8859-1"}
        )
        # `extension` skips the charset check altogether
        accepted = await client.post(
            IMPORTS,
            params={"extension": "csv"},
            content=ROW,
            headers={"Content-Type": "text/csv; charset=ISO-8859-1"},
        )
    assert refused.status_code == 400
    assert refused.json() == {"error": "Invalid content type, UTF-8 required"}
    assert accepted.status_code == 200


async def test_another_import_type_is_an_unhandled_500() -> None:
    app, _ = sis_app()
    async with client_for(app) as client:
        response = await upload(client, ROW, import_type="ims_xml")
        listed = await client.get(IMPORTS)
    assert response.status_code == 500
    body = response.json()
    assert body["errors"] == [
        {"message": "An error occurred.", "error_code": "internal_server_error"}
    ]
    assert isinstance(body["error_report_id"], int)
    assert listed.json() == {"sis_imports": []}


@pytest.mark.parametrize(
    ("params", "status", "body"),
    [
        (
            {"batch_mode": "1"},
            400,
            {"message": "Batch mode specified, but the given batch_mode_term_id cannot be found."},
        ),
        (
            {"batch_mode": "true", "batch_mode_term_id": "sis_term_id:NOPE"},
            404,
            {"errors": [{"message": "The specified resource does not exist."}]},
        ),
        (
            {"batch_mode": "1", "batch_mode_term_id": "sis_term_id:S25"},  # a deleted term
            404,
            {"errors": [{"message": "The specified resource does not exist."}]},
        ),
        (
            {"batch_mode": "1", "batch_mode_term_id": "4"},
            404,
            {"errors": [{"message": "The specified resource does not exist."}]},
        ),
    ],
)
async def test_batch_mode_needs_an_active_term(
    params: dict[str, str], status: int, body: dict[str, Any]
) -> None:
    app, _ = sis_app()
    async with client_for(app) as client:
        response = await upload(client, ROW, **params)
        listed = await client.get(IMPORTS)
    assert (response.status_code, response.json()) == (status, body)
    assert listed.json() == {"sis_imports": []}  # refused before the batch exists


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"multi_term_batch_mode": "1"},
            "change_threshold is required to use multi term_batch mode.",
        ),
        ({"diffing_drop_status": "gone"}, "Invalid diffing_drop_status"),
        ({"diffing_user_remove_status": "gone"}, "Invalid diffing_user_remove_status"),
        (
            {"batch_mode_enrollment_drop_status": "gone"},
            "Invalid batch_mode_enrollment_drop_status",
        ),
    ],
)
async def test_option_refusals_leave_a_batch_stuck_initializing(
    params: dict[str, str], message: str
) -> None:
    """These return from inside SisBatch.create_with_attachment's block: the batch was saved
    `initializing` and is never processed."""
    app, clock = sis_app()
    async with client_for(app) as client:
        response = await upload(client, ROW, **params)
        clock.now += 3600
        listed = (await client.get(IMPORTS)).json()["sis_imports"]
        rows = await enrollments_of(client, DOC_COURSE, "13834")
    assert (response.status_code, response.json()) == (400, {"message": message})
    assert [(i["workflow_state"], i["progress"]) for i in listed] == [("initializing", 0)]
    assert rows == []


async def test_deleted_last_completed_is_a_valid_diffing_drop_status() -> None:
    app, _ = sis_app()
    async with client_for(app) as client:
        response = await upload(
            client,
            ROW,
            diffing_data_set_identifier="fall",
            diffing_drop_status="deleted_last_completed",
        )
    assert response.status_code == 200
    assert response.json()["diffing_drop_status"] == "deleted_last_completed"
    assert response.json()["diffing_threshold_exceeded"] is None


async def test_a_diffing_identifier_over_128_bytes_is_a_validation_error() -> None:
    app, _ = sis_app()
    async with client_for(app) as client:
        response = await upload(client, ROW, diffing_data_set_identifier="x" * 129)
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["diffing_data_set_identifier"]


async def test_the_created_object_echoes_the_options() -> None:
    app, _ = sis_app()
    async with client_for(app) as client:
        response = await upload(
            client,
            ROW,
            batch_mode="1",
            batch_mode_term_id="sis_term_id:F26",
            change_threshold="10",
            skip_deletes="true",
            override_sis_stickiness="1",
            add_sis_stickiness="1",
        )
    body = response.json()
    assert response.status_code == 200
    assert (body["batch_mode"], body["batch_mode_term_id"], body["change_threshold"]) == (
        True,
        1,
        10,
    )
    assert (body["skip_deletes"], body["override_sis_stickiness"], body["add_sis_stickiness"]) == (
        True,
        True,
        True,
    )
    assert body["clear_sis_stickiness"] is None
    assert body["user"]["id"] == 1


async def test_raw_bodies_take_their_kind_from_the_media_type() -> None:
    app, clock = sis_app()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr("enrollments.csv", ROW)
        out.writestr("notes.txt", b"hello")
        out.writestr("__MACOSX/._enrollments.csv", b"junk")
    async with client_for(app) as client:
        as_zip = await client.post(
            IMPORTS, content=archive.getvalue(), headers={"Content-Type": "application/zip"}
        )
        # no extension and an unknown media type: Canvas assumes zip
        octets = await client.post(
            IMPORTS, content=ROW, headers={"Content-Type": "application/octet-stream"}
        )
        zipped, _ = await run_to_end(client, clock, as_zip.json()["id"])
        assumed, _ = await run_to_end(client, clock, octets.json()["id"])
    assert zipped["workflow_state"] == "imported_with_messages"
    assert zipped["processing_warnings"] == [["notes.txt", "Skipping unknown file type"]]
    assert zipped["data"]["counts"]["enrollments"] == 1
    assert assumed["workflow_state"] == "failed_with_messages"


async def test_sis_import_requests_pay_the_throttle_and_need_a_user_agent() -> None:
    app, _ = sis_app()
    async with client_for(app) as client:
        paid = await upload(client, ROW)
        assert "x-request-cost" in paid.headers and "x-rate-limit-remaining" in paid.headers
        app.storm(fill=app.settings.hwm)
        throttled = await upload(client, ROW)
        app.calm()
    assert throttled.status_code == 429
    async with client_for(app) as client:
        no_agent = await client.post(
            IMPORTS, params={"extension": "csv"}, content=ROW, headers={"User-Agent": ""}
        )
    assert no_agent.status_code == 403


async def test_a_multipart_zip_is_read_byte_for_byte() -> None:
    app, clock = sis_app()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr("enrollments.csv", ROW)
        out.writestr("padding.bin", bytes(range(256)) * 64)  # every byte value, \r\n included
    async with client_for(app) as client:
        created = await client.post(
            IMPORTS, files={"attachment": ("upload.zip", archive.getvalue(), "application/zip")}
        )
        final, _ = await run_to_end(client, clock, created.json()["id"])
    assert final["data"]["counts"]["enrollments"] == 1
    assert final["processing_warnings"] == [["padding.bin", "Skipping unknown file type"]]


async def test_csv_attachments_name_the_files_once_the_import_is_prepared() -> None:
    """lib/api/v1/sis_import.rb lists the batch's downloadable attachments as csv_attachments.
    ImportRefactored#prepare fills them when the job starts: a CSV upload is its own attachment
    under the posted name; a zip's CSV members are new ones named by their base name."""
    app, clock = sis_app(start_delay=1.0)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr("term/enrollments.csv", ROW)
        out.writestr("notes.txt", b"hello")
    async with client_for(app, token=None) as anonymous, client_for(app) as client:
        posted = await client.post(
            IMPORTS, files={"attachment": ("run-42-enrollments.csv", ROW, "text/csv")}
        )
        zipped = await client.post(
            IMPORTS, files={"attachment": ("upload.zip", archive.getvalue(), "application/zip")}
        )
        assert "csv_attachments" not in posted.json()  # not prepared before the job starts
        clock.now = START + 1.0
        running = await status(client, posted.json()["id"])
        final_zip, _ = await run_to_end(client, clock, zipped.json()["id"])
        file = running["csv_attachments"][0]
        download = await anonymous.get(file["url"])  # attachment_json's uuid verifier
    assert [(a["display_name"], a["filename"]) for a in running["csv_attachments"]] == [
        ("run-42-enrollments.csv", "run-42-enrollments.csv")
    ]
    assert running["data"]["downloadable_attachment_ids"] == [file["id"]]
    assert (download.status_code, download.content) == (200, ROW)
    assert [a["display_name"] for a in final_zip["csv_attachments"]] == ["enrollments.csv"]
