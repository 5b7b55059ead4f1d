"""Reconcile: diff the source against the live Canvas rosters, then apply only the changes.

For every course (or section, for section-only rows) the source names, the whole roster is read
in every state (`state[]`: the default list hides completed and deleted rows, CANVAS_API.md §2.6),
a page at a time through the same client and governor as a sync. Each source record is matched to
the enrollments with the same user, role and section (the identity Canvas reuses on a re-POST,
§2.4) and gets one action: create, reactivate, update, inactivate, conclude, delete or none.
Every enrollment no record claims is a *drop*, and follows `[plan] drop_policy` (never by default).

Who owns an enrollment. Only enrollments the SIS made may be dropped: those with a
`sis_import_id` (Canvas's SIS import made them) and those canvas-tui itself wrote for an SIS row.
Canvas keeps no mark on API-made rows, so canvas-tui's journals are the record: any journal in the
journal directory (`[sync] journal_dir`, default `runs/`), the configured `[sync] journal` and the
current run's journal, whose row ended done with a create/reactivate/update, names its enrollment
id. An enrollment that is neither is manual and is left alone unless `manual_enrollments =
"include"`. The failure mode is the safe one: a journal deleted or moved elsewhere turns its
enrollments into "manual", which are kept. A POST that Canvas answered with an older hand-made row
(same user, role and section) counts as canvas-tui's: the SIS asserted that enrollment.

Brake: a plan whose drops exceed `brake_max_share` of any course's live roster, or
`brake_max_count` in all, is not applied unless the operator allows that many drops
(`--allow-drops N` headless, an approval dialog in the console).

Applying: the plan's steps become the run's journal (the source rows, then one row per drop), rows
that need nothing are marked done at once, and the rest go through the same runner, governor,
journal and controls as a sync. A record edited by the operator, or resumed from a journal in a
later process, no longer has a current step and falls back to the lookup-based SIS actions.
"""

from __future__ import annotations

from canvas_tui.engine.plan.diff import (
    ACTIONS,
    Brake,
    Plan,
    Step,
    build_plan,
    evaluate_brake,
    plan_drop,
    plan_record,
)
from canvas_tui.engine.plan.executor import (
    DROP_SOURCE,
    PLAN_RATIO,
    PlanExecutor,
    PlannedSource,
    SyncDecision,
    apply_plan,
    choose_mode,
    compute_plan,
    full_mode_lookups,
    journal_paths,
    known_enrollment_ids,
    plan_session,
    prepare_sync,
    read_items,
)
from canvas_tui.engine.plan.render import format_plan, write_plan
from canvas_tui.engine.plan.rosters import (
    Roster,
    RosterIndex,
    default_scopes,
    fetch_rosters,
    needs_default,
    scope_of,
)

__all__ = [
    "ACTIONS",
    "DROP_SOURCE",
    "PLAN_RATIO",
    "Brake",
    "Plan",
    "PlanExecutor",
    "PlannedSource",
    "Roster",
    "RosterIndex",
    "Step",
    "SyncDecision",
    "apply_plan",
    "build_plan",
    "choose_mode",
    "compute_plan",
    "default_scopes",
    "evaluate_brake",
    "fetch_rosters",
    "format_plan",
    "full_mode_lookups",
    "journal_paths",
    "known_enrollment_ids",
    "needs_default",
    "plan_drop",
    "plan_record",
    "plan_session",
    "prepare_sync",
    "read_items",
    "scope_of",
    "write_plan",
]
