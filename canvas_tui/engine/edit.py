"""An operator's edit of a record: re-read the edited source row through the source's own rules.

The edit is applied to the raw row (source column -> value) and normalized exactly as the source
would have, so an edited record is never looser than a loaded one.
"""

from __future__ import annotations

from collections.abc import Mapping

from canvas_tui.engine.state import RecordRow
from canvas_tui.records import EnrollmentRecord, InputError, Provenance, RowProblem
from canvas_tui.sources.normalize import Layout, RowNormalizer


def edited_record(
    row: RecordRow, fields: Mapping[str, str], layout: Layout | None = None
) -> tuple[EnrollmentRecord | RowProblem, dict[str, str]]:
    """The record the edited row now stands for (or why it still cannot be sent), and the row.

    `fields` maps source column names to new values; a column the row lacks is added.
    """
    raw = {**row.raw, **fields}
    columns = list(raw)
    try:
        normalizer = RowNormalizer(row.source, columns, layout or Layout(), header_line=0)
    except InputError as exc:
        return RowProblem(Provenance(row.source, row.line, raw), str(exc)), raw
    return normalizer.normalize([raw[c] for c in columns], row.line), raw
