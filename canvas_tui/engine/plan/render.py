"""Writing a plan down: the console summary, and PREFIX.json / PREFIX.csv."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from canvas_tui.engine.estimate import format_duration
from canvas_tui.engine.plan.diff import ACTIONS, Action, Plan
from canvas_tui.engine.plan.rosters import scope_label

# ---- writing it down ------------------------------------------------------------------------


CSV_COLUMNS = (
    "kind",
    "action",
    "course",
    "section",
    "user",
    "role",
    "status",
    "canvas_state",
    "enrollment_ids",
    "via",
    "drop",
    "manual",
    "reason",
    "source",
    "line",
)


def write_plan(
    plan: Plan, prefix: Path, *, extra: Mapping[str, Any] | None = None
) -> tuple[Path, Path]:
    """PREFIX.json (summary, per course, every change) and PREFIX.csv (every step), streamed:
    the steps are derived one at a time, never held (the JSON is `json.dumps(..., indent=2)`
    of the whole document, written a change at a time)."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    json_path = prefix.with_name(prefix.name + ".json")
    csv_path = prefix.with_name(prefix.name + ".csv")
    head = {
        "summary": plan.summary(),
        "by_course": {c: dict(n) for c, n in plan.by_course().items()},
        "brake_by_course": {
            c: {"drops": d, "live": n} for c, (d, n) in plan.brake.by_course.items()
        },
    }
    # one pass over the steps writes both files: each is derived from the source again
    with (
        json_path.open("w", encoding="utf-8") as handle,
        csv_path.open("w", newline="", encoding="utf-8") as table,
    ):
        writer = csv.DictWriter(table, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        handle.write("{")
        for key, value in head.items():
            handle.write(f"\n  {json.dumps(key)}: {_nested(value)},")
        handle.write('\n  "changes": [')
        written = 0
        for step in plan.iter_steps():
            row = step.row()
            writer.writerow(row)
            if step.action is not Action.NONE:
                handle.write(("," if written else "") + "\n    " + _nested(row, 4))
                written += 1
        handle.write("\n  ]" if written else "]")
        for key, value in (extra or {}).items():
            handle.write(f",\n  {json.dumps(key)}: {_nested(value)}")
        handle.write("\n}\n")
    return json_path, csv_path


def _nested(value: Any, depth: int = 2) -> str:
    """`value` as `json.dumps(..., indent=2)` writes it `depth` spaces in."""
    return json.dumps(value, indent=2).replace("\n", "\n" + " " * depth)


def format_plan(plan: Plan, *, max_courses: int = 40) -> list[str]:
    """The console summary: per action, per course, the brake."""
    records = plan.record_counts()
    canvas_only = plan.canvas_only
    lines = [
        # the words `check` and `sync` use too: records, invalid (fail), duplicates (skipped)
        f"plan: {records.total()} records, {plan.invalid_rows} invalid, "
        f"{plan.duplicate_rows} duplicates; {plan.scopes} rosters in {plan.roster_pages} pages "
        f"({plan.roster_requests} requests, {format_duration(plan.elapsed)})",
        # "none": the record is already in place in Canvas
        "  records: " + "  ".join(f"{a} {records.get(a, 0)}" for a in ACTIONS),
        f"  in Canvas only: {len(canvas_only)} (drops: {len(plan.drops)} by drop_policy "
        f"{plan.policy.drop_policy}; manual, left alone: "
        f"{sum(1 for s in canvas_only if s.manual and s.action is Action.NONE)})",
        f"  requests to apply: {plan.change_requests}",
    ]
    changed = [
        (c, n) for c, n in plan.by_course().items() if sum(n.values()) != n.get(Action.NONE, 0)
    ]
    if changed:
        lines.append("  per course (changes only):")
        for course, n in changed[:max_courses]:
            parts = ", ".join(f"{a} {n[a]}" for a in ACTIONS if a is not Action.NONE and n.get(a))
            lines.append(f"    {course}: {parts}")
        if len(changed) > max_courses:
            lines.append(f"    ... {len(changed) - max_courses} more courses (see the JSON)")
    for scope, error in plan.roster_errors.items():
        lines.append(f"  roster of {scope_label(scope)} unavailable: {error}")
    if plan.brake.tripped:
        reasons = plan.brake.reasons
        lines.append(f"  BRAKE: {plan.brake.drops} drops exceed the thresholds:")
        lines.extend(f"    {r}" for r in reasons[:max_courses])
        if len(reasons) > max_courses:
            lines.append(f"    ... {len(reasons) - max_courses} more (see the JSON)")
    return lines
