"""The JSON report: a schema_version and a JSON Schema in the repo that every report meets, and
`--report-records` (issue 12, item 10; `abort_reason` on a signal: tests/test_headless.py)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from canvas_tui.engine.report import SCHEMA_VERSION
from canvas_tui.simulator import Simulator
from tests.helpers import sync

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "canvas_tui" / "schemas" / "report.schema.json"


def validate(report: Path) -> dict:  # type: ignore[type-arg]
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    document = json.loads(report.read_text())
    jsonschema.validate(document, schema, cls=jsonschema.Draft202012Validator)
    return document  # type: ignore[no-any-return]


def test_reports_of_a_run_and_a_dry_run_meet_the_schema(sim: Simulator) -> None:
    assert sync("mixed.csv", "--report", "run.json") == 1
    run = validate(Path("run.json"))
    assert run["schema_version"] == SCHEMA_VERSION == 2
    assert run["records_listed"] == "all" and len(run["records"]) == run["total"] == 50
    # schema 2 leaves out what says nothing: no nulls, and the run's own source once
    assert all(None not in r.values() for r in run["records"])
    assert all("source" not in r for r in run["records"]) and run["source"]
    assert sync("mixed.csv", "--dry-run", "--report", "dry.json") == 2
    assert validate(Path("dry.json"))["phase"] is None


@pytest.mark.parametrize(("choice", "listed"), [("not-done", 4), ("failed", 4), ("none", 0)])
def test_report_records_leaves_rows_out_of_the_json_but_not_the_csv(
    sim: Simulator, choice: str, listed: int
) -> None:
    assert sync("mixed.csv", "--report", "r.json", "--report-records", choice) == 1
    report = validate(Path("r.json"))
    assert report["records_listed"] == choice
    assert len(report["records"]) == listed
    assert all(r["state"] == "failed" for r in report["records"])
    assert report["counts"]["failed"] == 4  # the summary still counts every record
    failures = Path("r.failures.csv").read_text().splitlines()
    assert len(failures) == 1 + 4
