"""REST or SIS import: the expected time of each for the changes an import could carry.

REST is the governor's own model (engine/estimate.py): the requests those changes need, at the
latency and cost the plan's roster reads measured, writes taken as `WRITE_FACTOR` times a GET
(the geometric middle of its range, as the console's estimate does). An import is
`start_seconds` (the upload, Canvas's job queue, the last poll) plus rows / `rows_per_second`:
Canvas runs it server-side, outside the token's throttle, at a rate the API does not tell, so it
is configured (`[sis_import] rows_per_second`, a conservative default). `auto` takes the faster;
the crossover is the size from which the import wins with those figures.

Pure arithmetic: nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from canvas_tui.engine.estimate import (
    DEFAULT_COST,
    DEFAULT_LATENCY,
    WRITE_FACTOR,
    Bucket,
    format_duration,
    send_seconds,
)

WRITE = math.sqrt(WRITE_FACTOR[0] * WRITE_FACTOR[1])  # a write over a GET, the range's middle


@dataclass(frozen=True, slots=True)
class ImportModel:
    rows_per_second: float = 100.0  # Canvas's import rate, rows a second (configured)
    start_seconds: float = 30.0  # upload, queue and the last poll

    def seconds(self, rows: int) -> float:
        return self.start_seconds + rows / max(self.rows_per_second, 1e-9) if rows else 0.0


@dataclass(frozen=True, slots=True)
class RestModel:
    latency: float = DEFAULT_LATENCY  # a GET's seconds, as measured
    cost: float = DEFAULT_COST  # a GET's X-Request-Cost, as measured
    bucket: Bucket = field(default_factory=Bucket)

    def seconds(self, requests: float) -> float:
        return send_seconds(
            requests, latency=self.latency * WRITE, cost=self.cost * WRITE, bucket=self.bucket
        )


@dataclass(frozen=True, slots=True)
class Choice:
    via: str  # "rest" or "sis-import"
    why: str
    rest_seconds: float
    import_seconds: float
    crossover: int | None  # changes from which the import is the faster, None: never


def crossover(rest: RestModel, imp: ImportModel, requests_per_change: float) -> int | None:
    """The smallest number of changes an import carries faster than REST sends them."""

    def wins(n: int) -> bool:
        return imp.seconds(n) < rest.seconds(n * requests_per_change)

    high = 1
    while not wins(high):
        high *= 2
        if high > 1 << 30:
            return None
    low = high // 2  # not wins(low) unless low == 0
    while high - low > 1:
        mid = (low + high) // 2
        if wins(mid):
            high = mid
        else:
            low = mid
    return high


def choose_channel(
    requested: str,
    *,
    rows: int,
    requests: int,
    rest: RestModel,
    imp: ImportModel,
    rest_only: int = 0,
) -> Choice:
    """`requested`: rest | sis-import | auto. `rows`: changes the import can carry; `requests`:
    what REST needs for those same changes; `rest_only`: changes only REST can send."""
    rest_s = rest.seconds(requests)
    import_s = imp.seconds(rows)
    per_change = requests / rows if rows else 1.0
    cross = crossover(rest, imp, per_change) if rows else None
    figures = (
        f"{rows} changes an import can carry: REST about {format_duration(rest_s)} "
        f"({requests} requests at {rest.latency * WRITE:.2f}s, cost {rest.cost * WRITE:.2f} "
        f"each), an import about {format_duration(import_s)} (at {imp.rows_per_second:g} "
        f"rows/s after {imp.start_seconds:g}s)"
    )
    from_n = (
        f"; an import pays off from {cross} changes"
        if cross is not None
        else "; at these figures an import never pays off"
    )
    beside = f"; {rest_only} more go by REST in any case" if rest_only else ""
    if requested == "rest":
        return Choice("rest", "REST (--via rest)", rest_s, import_s, cross)
    if not rows:
        why = (
            "REST: no change here can go in an import"
            if requested == "auto"
            else "REST: --via sis-import, but no change here can go in an import"
        )
        return Choice("rest", why + beside, rest_s, import_s, cross)
    if requested == "sis-import":
        return Choice(
            "sis-import",
            f"SIS import (--via sis-import): {figures}{beside}",
            rest_s,
            import_s,
            cross,
        )
    if import_s < rest_s:
        return Choice(
            "sis-import", f"SIS import (auto): {figures}{from_n}{beside}", rest_s, import_s, cross
        )
    return Choice("rest", f"REST (auto): {figures}{from_n}{beside}", rest_s, import_s, cross)
