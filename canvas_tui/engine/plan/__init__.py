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

# The modules, from the bottom up: rosters.py (reading and indexing the rosters), diff.py (Step,
# Plan, the brake, and the rule of what a SIS row means against its enrollments, which
# engine/actions.py shares), verdict.py (the roster inspector's view over that rule), render.py
# (writing a plan down), executor.py (choosing the mode, computing the plan against Canvas,
# applying it through the engine). Import them directly; this file re-exports nothing.
