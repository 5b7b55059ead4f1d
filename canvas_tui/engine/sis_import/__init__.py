"""The SIS import channel: the plan's changes applied by Canvas's SIS Import API, every row
accounted for like a REST request (CANVAS_API.md §6).

The modules, from the bottom up: csvfile.py (a record as a row of enrollments.csv, or why it
stays on REST), messages.py (Canvas's messages tied back to rows), choose.py (REST or import, by
expected time), channel.py (building the file, uploading, polling, settling the records),
attach.py (wiring it into a run: `sync --via`, a resumed journal). Import them directly; this
file re-exports nothing.
"""
