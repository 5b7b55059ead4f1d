"""The dashboard: how far the run is, how close Canvas's limiter is, and what is failing.

It renders one `RunState` snapshot per tick (STYLE.md §4) and keeps no state of its own. Every
figure carries its label here or a legend on `?` (LEGEND, shown by the help screen). Under 120
columns the failures move into the records panel (the screen's `-narrow` class).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import ProgressBar, Static

from canvas_tui.engine.estimate import Bucket, TimeRange, remaining_range
from canvas_tui.engine.state import Phase, RunState
from canvas_tui.records import State
from canvas_tui.text import printable
from canvas_tui.tui import format as fmt
from canvas_tui.tui.widgets.import_panel import running, update_fitted
from canvas_tui.tui.widgets.import_panel import time_left as import_time_left

PHASE_STYLES: dict[Phase, str] = {
    Phase.LOADING: "bold blue",
    Phase.RUNNING: "bold green",
    Phase.PAUSED: "bold yellow",
    Phase.CANCELLING: "bold magenta",
    Phase.FINISHED: "bold green",
    Phase.CANCELLED: "bold magenta",
    Phase.ABORTED: "bold red",
}
SENDING = frozenset({Phase.RUNNING, Phase.CANCELLING})
MEASURED_AFTER = 20  # finished records before their requests per record replace the prior

# What each figure means: the help screen (`?`) shows these under "The dashboard".
LEGEND: tuple[tuple[str, str], ...] = (
    ("Records", "every source row, by state; they add up to the total"),
    ("READY", "opened, nothing sent: the start key sends; the estimate says how much"),
    (
        "ETA",
        "time left as a range: the governor's model with the latency and cost measured "
        "so far, and the rate records really finish at; it narrows as the run goes",
    ),
    ("records/s", "records finished per second (5 s average); the chart: one column a second"),
    ("requests", "HTTP requests sent, lookups and retries included"),
    (
        "headroom",
        "Canvas's X-Rate-Limit-Remaining of its high-water mark; the chart: one "
        "column a second, full = an idle bucket",
    ),
    ("in flight", "requests out now / how many the governor allows now (cap: your limit)"),
    ("cost", "Canvas's X-Request-Cost per request, averaged: throttle units it charges"),
    ("throttled", "requests Canvas refused for the rate limit (run total, last 60 s)"),
    ("retries", "requests sent again after a throttle, a 5xx or a network error"),
    ("req (queue)", "HTTP requests sent for that record"),
    (
        "front",
        "records moved to the front (F): what moved, and how many have yet to end; the "
        "others wait until they all have. While READY under via auto: via, the channel a start "
        "takes, and why",
    ),
    (
        "SIS import",
        "the run's SIS import as Canvas reports it: its workflow state, its progress, the rows "
        "uploaded, Canvas's counts, and its warnings and errors so far (each becomes its "
        "record's failure once Canvas finishes). It cannot be paused: p offers abort",
    ),
)


@dataclass(frozen=True, slots=True)
class Outlook:
    """What the start key will do, shown while the console is READY."""

    records: int  # pending records a start sends
    mode: str  # "full mode" or "plan mode"
    requests: int
    time: TimeRange
    drops: int
    start_key: str = "S"
    # the channel a start takes when the config left it to the figures (`via = "auto"`), and
    # why in a few words ("" when none was asked for: REST, as ever)
    channel: str = ""
    channel_why: str = ""


def bucket_of(state: RunState) -> Bucket:
    gov = state.governor
    return Bucket(hwm=gov.high_water_mark, leak=gov.leak, margin=gov.margin)


def time_left(state: RunState, prior_per_record: float = 1.0) -> TimeRange:
    """The ETA range: the model with what the run measured, and the rate it really goes at."""
    gov = state.governor
    left = state.counts.get(State.PENDING, 0) + state.counts.get(State.IN_FLIGHT, 0)
    finished = state.finished
    per_record = state.requests / finished if finished >= MEASURED_AFTER else prior_per_record
    level = gov.high_water_mark - gov.remaining if gov.remaining is not None else 0.0
    # the last minutes' mean, not the 5 s headline: a throttle storm must not read as hours
    history = state.rate_history
    observed = sum(history) / len(history) if len(history) >= 5 else None
    return remaining_range(
        left,
        requests_per_record=per_record,
        latency=state.latency,
        cost=gov.average_cost,
        bucket=bucket_of(state),
        level=max(0.0, level),
        observed_rate=observed,
        progress=finished / state.total if state.total else 0.0,
    )


def counts_table(state: RunState, failures: int = 0) -> Table:
    """The records by state; with `failures`, the top failure categories under them."""
    table = Table.grid(padding=(0, 1), expand=True)
    table.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
    table.add_column(justify="right", no_wrap=True)
    for s in State:
        n = state.counts.get(s, 0)
        table.add_row(Text(fmt.STATE_LABELS[s], style=fmt.STATE_STYLES[s]), fmt.count(n))
    table.add_row(Text("total", style="bold"), Text(fmt.count(state.total), style="bold"))
    items = sorted(state.failures_by_category.items(), key=lambda kv: (-kv[1], kv[0]))
    for category, n in [(k, v) for k, v in items if v][:failures]:
        table.add_row(Text(fmt.category_title(category), style="red"), fmt.count(n))
    return table


def progress_text(
    state: RunState,
    idle: str | None = None,
    outlook: Outlook | None = None,
    prior_per_record: float = 1.0,
) -> Text:
    """Two lines: the phase (or the console's own `idle` label) and what it means in time."""
    label = idle or state.phase.value.upper()
    style = "bold cyan" if idle == "READY" else PHASE_STYLES[state.phase]
    text = Text.assemble(Text(f" {label} ", style=f"reverse {style}"), " ")
    phase = state.phase
    if idle == "READY" and outlook is not None:
        text.append(f"{outlook.start_key}: start", style="bold")
        text.append(f"\n{fmt.count(outlook.records)} records, {outlook.mode}")
        return text
    text.append(f"elapsed {fmt.duration(state.elapsed)}")
    importing = state.sis_import is not None and running(state.sis_import)
    if idle is None and phase is Phase.RUNNING and importing:
        # the records in flight are Canvas's to import: REST's model says nothing of them
        left = import_time_left(state.sis_import) if state.sis_import else None
        text.append("\nSIS import ", style="dim")
        text.append(
            "≈" + fmt.duration(left) + " left" if left is not None else "queued", style="bold"
        )
    elif idle is None and phase is Phase.RUNNING:
        eta = time_left(state, prior_per_record)
        text.append("\nETA ", style="dim")
        text.append(fmt.duration_range(eta.low, eta.high), style="bold")
    elif idle is None and phase is Phase.PAUSED:
        eta = time_left(state, prior_per_record)
        text.append("\npaused: ", style="dim")
        text.append(f"{fmt.duration_range(eta.low, eta.high)} left", style="bold")
    elif idle is None and phase is Phase.LOADING:
        text.append("\nchecking the token…", style="dim")
    elif idle is None and phase is Phase.CANCELLING:
        text.append(f"\nfinishing {state.governor.in_flight} in flight", style="dim")
    elif idle == "PLAN DECLINED":
        text.append("\nnothing was sent", style="bold")
    elif idle == "WATCHING":  # an attached `watch` between changes
        text.append(f"\n{fmt.count(state.finished)}/{fmt.count(state.total)} final", style="bold")
        text.append(" · waiting for the next change", style="dim")
    else:
        text.append(f"\n{fmt.count(state.finished)}/{fmt.count(state.total)} final", style="bold")
    if state.abort_reason:
        text.append(f"\n{printable(state.abort_reason)}", style="bold red")
    elif state.paused_reason:
        text.append(f"\n{printable(state.paused_reason)}", style="bold yellow")
    return text


def detail_text(state: RunState, idle: str | None = None, outlook: Outlook | None = None) -> Text:
    """Two lines under the phase: the outlook while READY, else the rate and the requests."""
    if idle == "READY" and outlook is not None:
        return Text.assemble(
            ("≈", "dim"),
            (f"{fmt.count(outlook.requests)} requests", "bold"),
            (" · ", "dim"),
            (f"{fmt.count(outlook.drops)} drops", "bold"),
            ("\ntakes ≈", "dim"),
            (fmt.duration_range(outlook.time.low, outlook.time.high), "bold"),
        )
    peak = max(state.rate_history, default=0.0)
    text = Text()
    if idle is None and state.phase in SENDING:
        text.append(fmt.rate(state.rate).removesuffix("/s"), style="bold")
        text.append(" records/s", style="dim")
    else:
        text.append("records/s ", style="dim")
        text.append("—", style="bold")
    if state.rate_history:
        text.append(" · peak ", style="dim")
        text.append(fmt.rate(peak).removesuffix("/s"))
    text.append(f"\n{fmt.count(state.requests)}", style="bold")
    text.append(" requests sent", style="dim")
    return text


def front_text(state: RunState, width: int = 80) -> Text:
    """The records an operator moved to the front: what, and how many are left to end. One
    line when it fits `width`, else two (the panel keeps a row for it): what moved, then the
    count, never cut mid-figure."""
    front = state.front
    if front is None:
        return Text()
    if front.left:
        count = f"{fmt.count(front.left)} of {fmt.count(front.moved)} left"
        wait = " · the rest wait"
    else:
        count, wait = f"all {fmt.count(front.moved)} ended", ""
    label = printable(front.label)
    one = Text.assemble(("front ", "dim"), (label, "bold"), " · ", (count, "bold"), (wait, "dim"))
    if len(one) <= width:
        return one
    room = max(1, width - len("front "))
    if len(label) > room:
        label = label[: room - 1] + "…"
    two = Text.assemble(("front ", "dim"), (label, "bold"), "\n", (count, "bold"))
    if len(count) + len(wait) <= width:
        two.append(wait, style="dim")
    return two


def channel_text(outlook: Outlook | None, width: int = 80) -> Text:
    """READY under `via = "auto"`: the channel a start takes and why, in the front line's place
    (one line, or two when narrow)."""
    if outlook is None or not outlook.channel:
        return Text()
    text = Text.assemble(("via ", "dim"), (outlook.channel, "bold"))
    why = outlook.channel_why
    if why and len(text) + len(why) + 3 <= width:
        text.append(f" · {why}", style="dim")
    elif why:
        text.append(f"\n{why[: width - 1] + '…' if len(why) > width else why}", style="dim")
    return text


def spark_text(label: str, values: list[float], top: float, width: int) -> Text:
    """A labelled one-line chart, or the label and `no samples yet`."""
    if not values:
        return Text.assemble((label, "dim"), (" no samples yet", "dim italic"))
    chart = fmt.spark(values, max(1, width - len(label) - 1), top)
    return Text.assemble((label, "dim"), " ", (chart, "cyan"))


def headroom_text(state: RunState, width: int = 24) -> Text:
    gov = state.governor
    if gov.remaining is None:
        return Text.assemble(("headroom ", "dim"), ("no answer yet", "italic"))
    fraction = gov.remaining / gov.high_water_mark if gov.high_water_mark else 0.0
    style = "green" if fraction > 0.5 else "yellow" if fraction > 0.2 else "red"
    figures = f" {gov.remaining:,.0f}/{gov.high_water_mark:,.0f}"
    bar = max(3, width - len("headroom ") - len(figures))
    return Text.assemble(("headroom ", "dim"), (fmt.bar(fraction, bar), style), figures)


def concurrency_text(state: RunState) -> Text:
    gov = state.governor
    cap = "no cap" if gov.cap is None else f"cap {gov.cap}"
    cost = "—" if gov.average_cost is None else f"{gov.average_cost:.2f}"
    return Text.assemble(
        ("in flight ", "dim"),
        (str(gov.in_flight), "bold"),
        f"/{gov.limit} · {cap}\n",
        ("cost ", "dim"),
        (cost, "bold"),
        (" units/request", "dim"),
    )


def pressure_table(state: RunState) -> Table:
    table = Table.grid(padding=(0, 1))
    table.add_column(min_width=9)
    table.add_column(justify="right", min_width=5)
    table.add_column(justify="right", min_width=8)
    table.add_row("", Text("run", style="dim"), Text("last 60s", style="dim"))
    throttled = "bold red" if state.throttled_last_minute else ""
    retried = "bold yellow" if state.retries_last_minute else ""
    table.add_row(
        Text("throttled", style="dim"),
        fmt.count(state.throttled),
        Text(fmt.count(state.throttled_last_minute), style=throttled),
    )
    table.add_row(
        Text("retries", style="dim"),
        fmt.count(state.retries),
        Text(fmt.count(state.retries_last_minute), style=retried),
    )
    return table


def failures_table(state: RunState, rows: int = 7) -> Table | Text:
    items = sorted(state.failures_by_category.items(), key=lambda kv: (-kv[1], kv[0]))
    items = [(k, v) for k, v in items if v]
    if not items:
        return Text("no failures", style="green")
    table = Table.grid(padding=(0, 1))
    table.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
    table.add_column(justify="right")
    shown = items if len(items) <= rows else items[: rows - 1]
    for category, n in shown:
        table.add_row(fmt.category_title(category), Text(fmt.count(n), style="red"))
    if len(shown) < len(items):
        rest = sum(n for _, n in items[len(shown) :])
        table.add_row(Text(f"{len(items) - len(shown)} more", style="dim"), fmt.count(rest))
    return table


class Dashboard(Horizontal):
    DEFAULT_CSS = """
    Dashboard {
        height: 10;
    }
    Dashboard > Vertical {
        border: round $primary 50%;
        border-title-color: $text;
        padding: 0 1;
        height: 100%;
    }
    Dashboard #counts-panel { width: 24; }
    Dashboard #progress-panel { width: 3fr; }
    Dashboard #limit-panel { width: 3fr; }
    Dashboard #failures-panel { width: 2fr; min-width: 26; }
    Dashboard ProgressBar { width: 100%; }
    Dashboard ProgressBar Bar { width: 1fr; }
    Dashboard #counts { height: 8; }
    Dashboard #progress-text, Dashboard #progress-detail, Dashboard #concurrency { height: 2; }
    Dashboard #headroom, Dashboard #rate-spark, Dashboard #remaining-spark { height: 1; }
    /* the line above the spark: blank until a move; two lines when narrow (the panel has a
       spare row) */
    Dashboard #front { height: 1; }
    Dashboard #pressure { height: 3; }
    Dashboard #failures { height: 1fr; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._shown: dict[str, object] = {}
        self._statics: dict[str, Static] = {}  # by id: a DOM query per figure per tick adds up

    def compose(self) -> ComposeResult:
        with Vertical(id="counts-panel") as panel:
            panel.border_title = "Records"
            yield Static(id="counts")
        with Vertical(id="progress-panel") as panel:
            panel.border_title = "Progress"
            yield ProgressBar(total=1, show_eta=False, id="progress")
            yield Static(id="progress-text")
            yield Static(id="progress-detail")
            yield Static(id="front")
            yield Static(id="rate-spark")
        with Vertical(id="limit-panel") as panel:
            panel.border_title = "Canvas rate limit"
            yield Static(id="headroom")
            yield Static(id="concurrency")
            yield Static(id="pressure")
            yield Static(id="remaining-spark")
        with Vertical(id="failures-panel") as panel:
            panel.border_title = "Failures by category"
            yield Static(id="failures")

    def _set(self, widget_id: str, key: object, content: Callable[[], RenderableType]) -> None:
        """Repaint one Static only when what it shows changed; sizes are fixed in CSS, so no
        layout pass is needed (a layout pass per tick was the console's largest idle cost)."""
        if self._shown.get(widget_id) == key:
            return
        self._shown[widget_id] = key
        self._static(widget_id).update(content(), layout=False)

    def _static(self, widget_id: str) -> Static:
        found = self._statics.get(widget_id)
        if found is None:
            found = self._statics[widget_id] = self.query_one(f"#{widget_id}", Static)
        return found

    def _width(self, widget_id: str) -> int:
        return self._static(widget_id).content_size.width or 24

    def show(
        self,
        state: RunState,
        *,
        idle: str | None = None,
        outlook: Outlook | None = None,
    ) -> None:
        """Render one snapshot; call inside `app.batch_update()`. `idle`: the console's own label
        when no run was started here (READY, READ-ONLY, ...), whatever phase the runner is in."""
        narrow = self.screen.has_class("-narrow")
        counts = tuple(state.counts.get(s, 0) for s in State)
        failures = tuple(sorted(state.failures_by_category.items()))
        self._set(
            "counts",
            (counts, state.total, narrow and failures),
            lambda: counts_table(state, 2 if narrow else 0),
        )
        total, finished = max(state.total, 1), state.finished
        if self._shown.get("progress") != (total, finished):
            self._shown["progress"] = (total, finished)
            self.query_one("#progress", ProgressBar).update(total=total, progress=finished)
        prior = outlook.requests / outlook.records if outlook and outlook.records else 1.0
        progress = progress_text(state, idle, outlook, prior)
        self._set("progress-text", progress, lambda: progress)
        detail = detail_text(state, idle, outlook)
        self._set("progress-detail", detail, lambda: detail)
        width = self._width("front")
        front = (
            channel_text(outlook, width)
            if state.front is None and idle == "READY"
            else front_text(state, width)
        )
        if self._shown.get("front") != front:
            self._shown["front"] = front
            # two rows when narrow: the panel's spare row
            update_fitted(self._static("front"), front, 2 if "\n" in front.plain else 1)
        rates = list(state.rate_history)
        rate_spark = spark_text(
            "records/s", rates, max(rates, default=0.0), self._width("rate-spark")
        )
        self._set("rate-spark", rate_spark, lambda: rate_spark)
        headroom = headroom_text(state, self._width("headroom"))
        self._set("headroom", headroom, lambda: headroom)
        concurrency = concurrency_text(state)
        self._set("concurrency", concurrency, lambda: concurrency)
        pressure = (
            state.throttled,
            state.retries,
            state.throttled_last_minute,
            state.retries_last_minute,
        )
        self._set("pressure", pressure, lambda: pressure_table(state))
        remaining = spark_text(
            "headroom",
            list(state.remaining_history),
            state.governor.high_water_mark,
            self._width("remaining-spark"),
        )
        self._set("remaining-spark", remaining, lambda: remaining)
        self._set("failures", failures, lambda: failures_table(state))
