"""A new operator's first hour with the console (issue 12): it sends nothing until asked, it
fits an 80x24 terminal, and every figure says what it is."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.containers import VerticalScroll
from textual.widgets import ProgressBar
from textual.widgets._footer import FooterKey

from canvas_tui.config import ConfigError, load_config
from canvas_tui.engine.state import Phase
from canvas_tui.records import State
from canvas_tui.tui.app import ConsoleApp
from canvas_tui.tui.screens.dialogs import ConfirmScreen, HelpScreen
from canvas_tui.tui.widgets.queue import QueueView
from tests.helpers import eventually_async, never_within_async
from tests.tui.conftest import PLACEMENTS, make_harness, state_of, text_of

SIZES = pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])


def _ready(app: ConsoleApp) -> bool:
    return (
        app.state is not None and app.outlook is not None and app.idle_label(app.state) == "READY"
    )


@PLACEMENTS
async def test_a_console_opened_on_a_source_sends_nothing_until_the_start_key(
    tmp_path: Path, engine_process: bool
) -> None:
    h = make_harness(tmp_path, good=40, bad_every=10, engine_process=engine_process)
    app = h.app(autostart=False)  # what `canvas-tui console SOURCE` does by default
    async with app.run_test(size=(80, 24)) as pilot:
        await eventually_async(lambda: _ready(app), what="the READY screen", pause=pilot.pause)
        # READY says what a start will do: records, mode, requests and time, drops
        progress = text_of(app.query_one("#progress-text"))
        detail = text_of(app.query_one("#progress-detail"))
        assert "READY" in progress and "S: start" in progress
        assert "44 records, full mode" in progress  # 45 rows, one invalid at load
        # every row leaves limit_section_privileges and the dates blank: full mode reads each
        # user's enrollments before writing (a blind POST would reset them)
        assert "88 requests · 0 drops" in detail and "takes ≈" in detail
        assert app.outlook is not None and app.outlook.time.low > 0
        # neither time nor the other write keys send anything
        assert app.check_action("toggle_pause", ()) is False
        await pilot.press("p", "n", "x")
        await never_within_async(
            lambda: h.sim.stats()["requests"] != 0,
            1.0,
            what="a request before the start key",
            pause=pilot.pause,
        )
        assert app.state is not None and app.state.counts[State.PENDING] == 44

        await pilot.press("S")
        await eventually_async(
            lambda: app.state is not None and app.state.phase is Phase.FINISHED,
            what="the run finished",
            pause=pilot.pause,
        )
        stats = h.sim.stats()
        assert stats["requests_by_status"], stats
        assert stats["enrollments_created"] == 40
        assert app.idle_label(app.state) is None  # the runner's own phase shows now
        await pilot.press("q")


def test_autostart_is_off_unless_the_config_turns_it_on(tmp_path: Path) -> None:
    assert load_config(None, env={}).console.autostart is False
    path = tmp_path / "canvas-tui.toml"
    path.write_text("[console]\nautostart = true\n", encoding="utf-8")
    assert load_config(path, env={}).console.autostart is True
    path.write_text("[console]\nauto_start = true\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="autostart"):
        load_config(path, env={})


def test_the_example_config_documents_autostart() -> None:
    example = Path(__file__).resolve().parents[2] / "config.example.toml"
    config = load_config(example, env={"CANVAS_API_TOKEN": "x"})
    assert config.console.autostart is False
    assert "[console]" in example.read_text(encoding="utf-8")


def _fully_visible(app: ConsoleApp, action: str) -> bool:
    width = app.size.width
    keys = [k for k in app.screen.query(FooterKey) if k.action == action]
    return bool(keys) and all(k.region.x >= 0 and k.region.right <= width for k in keys)


@SIZES
async def test_the_console_fits_the_terminal(tmp_path: Path, size: tuple[int, int]) -> None:
    h = make_harness(tmp_path, good=300, time_scale=2.0)
    app = h.app()
    async with app.run_test(size=size) as pilot:
        await eventually_async(
            lambda: app.state is not None and app.state.phase is Phase.RUNNING,
            what="the run running",
            pause=pilot.pause,
        )
        await eventually_async(
            lambda: state_of(app).finished > 0, what="a record finished", pause=pilot.pause
        )
        await pilot.press("p")  # a run that stays going (paused) while the screens are checked
        await eventually_async(
            lambda: app.state is not None and app.state.phase is Phase.PAUSED,
            what="the run paused",
            pause=pilot.pause,
        )
        # how to get help and how to get out are always on screen
        assert _fully_visible(app, "help") and _fully_visible(app, "quit_safely")
        footer = {k.description for k in app.screen.query(FooterKey)}
        assert {"Keys", "Quit"} <= footer
        # the dashboard keeps its bar, and no line is cut short
        assert app.query_one(ProgressBar).query_one("Bar").region.width >= 10
        for widget_id in ("progress-text", "progress-detail", "concurrency", "headroom"):
            widget = app.query_one(f"#{widget_id}")
            for line in text_of(widget).splitlines():
                assert len(line.rstrip()) <= widget.content_size.width, (widget_id, line)
        # the queue keeps the columns that say how a record went
        titles = [c.title for c in app.query_one(QueueView).table.columns]
        assert {"#", "state", "user", "course", "req", "result"} <= set(titles)
        assert app.query_one(QueueView).table.region.width <= size[0]

        # the help screen scrolls to its last line
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        scroll = app.screen.query_one(VerticalScroll)
        await eventually_async(
            lambda: scroll.region.height > 0, what="the help laid out", pause=pilot.pause
        )
        if size == (80, 24):
            await eventually_async(
                lambda: scroll.max_scroll_y > 0,
                what="the help to scroll (the keys do not fit)",
                pause=pilot.pause,
            )
            await pilot.press("down")
            await eventually_async(
                lambda: scroll.scroll_y == 1, what="the help one line down", pause=pilot.pause
            )
            await pilot.press("pagedown")
            await eventually_async(
                lambda: scroll.scroll_y > 1, what="the help a page down", pause=pilot.pause
            )
        await pilot.press("end")
        last = scroll.children[-1]
        await eventually_async(
            # the last line is on screen
            lambda: (
                scroll.scroll_y == scroll.max_scroll_y
                and last.region.bottom <= scroll.region.bottom
            ),
            what="the help at its end",
            pause=pilot.pause,
        )
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)

        # ctrl+c asks the same question as q
        await pilot.press("ctrl+c")
        await eventually_async(
            lambda: isinstance(app.screen, ConfirmScreen),
            what="the confirm dialog",
            timeout=3,
            pause=pilot.pause,
        )
        assert "in-flight requests finish first" in text_of(app.screen.query("Static").last())
        await pilot.press("n")
        assert app.return_value is None
        await pilot.press("x", "y")  # cancel, so the quit below needs no second question
        await eventually_async(
            lambda: app.state is not None and app.state.phase is Phase.CANCELLED,
            what="the run cancelled",
            pause=pilot.pause,
        )
        await pilot.press("q")


async def test_edit_labels_never_break_a_field_name() -> None:
    from textual.app import App
    from textual.widgets import Label

    from canvas_tui.tui.screens.dialogs import EditScreen

    fields = {"user_id": "S1", "limit_section_privileges": "", "user_integration_id": ""}

    class Host(App[None]):
        def on_mount(self) -> None:
            self.push_screen(EditScreen("Edit record 3", fields))

    app = Host()
    async with app.run_test(size=(80, 24)) as pilot:
        await eventually_async(
            lambda: (
                isinstance(app.screen, EditScreen)
                and all(lb.size.width for lb in app.screen.query(".field Label"))
            ),
            what="the edit dialog laid out",
            pause=pilot.pause,
        )
        labels = [lb for lb in app.screen.query(".field Label") if isinstance(lb, Label)]
        assert len(labels) == len(fields)
        for label in labels:
            assert label.size.height == 1 and label.size.width >= len(str(label.render()))


@pytest.mark.parametrize("via", ["rest", "sis-import"])
def test_the_demo_leaves_nothing_in_the_temp_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    import argparse
    import tempfile

    from canvas_tui.resources import resource_path
    from canvas_tui.tui import launch as console

    made: list[Path] = []

    def mkdtemp(prefix: str = "") -> str:
        path = tmp_path / f"{prefix}scratch"
        path.mkdir()
        made.append(path)
        return str(path)

    opened: list[ConsoleApp] = []

    def run(self: ConsoleApp) -> int:  # the engine really starts; the screen is not drawn
        opened.append(self)
        return 0

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    monkeypatch.setattr(ConsoleApp, "run", run)
    args = argparse.Namespace(
        seed=7, time_scale=1.0, throttle_status=429, via=via, sis_import_rate=None
    )
    assert console.demo_main(args) == 0
    assert opened and opened[0].autostart is True  # the demo may start on its own
    # a bulk load shows the plan first (an import carries the plan's changes) and says how
    assert opened[0]._plan is (via != "rest")
    assert ("via sis-import" in opened[0].sub_title) is (via != "rest")
    # the trace key (T) reads the demo's own journal and data (its journal is not resumable)
    scope = opened[0].trace_scope
    assert scope is not None and scope.source is not None
    assert [p.name for p in scope.journals] == ["journal.sqlite"]
    assert scope.source == resource_path("demo.csv")
    assert made and not made[0].exists()


async def test_the_read_only_view_shows_no_made_up_rates(tmp_path: Path) -> None:
    h = make_harness(tmp_path, good=20)
    app = h.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await eventually_async(
            lambda: app.state is not None and app.state.phase is Phase.FINISHED,
            what="the run finished",
            pause=pilot.pause,
        )
        await pilot.press("q")
    triage = h.app(read_only=True)
    async with triage.run_test(size=(80, 24)) as pilot:
        await eventually_async(
            lambda: triage.state is not None,
            what="the journal's state in the read-only console",
            pause=pilot.pause,
        )

        def made_up_rates() -> bool:
            charts = [text_of(triage.query_one(c)) for c in ("#rate-spark", "#remaining-spark")]
            detail = text_of(triage.query_one("#progress-detail"))
            return "peak" in detail or any("█" in chart for chart in charts)

        await never_within_async(
            made_up_rates, 0.4, what="a rate or a chart in the read-only view", pause=pilot.pause
        )
        detail = text_of(triage.query_one("#progress-detail"))
        assert "records/s —" in detail
        for chart in ("#rate-spark", "#remaining-spark"):
            assert "no samples yet" in text_of(triage.query_one(chart))
        assert "READ-ONLY" in text_of(triage.query_one("#progress-text"))
        await pilot.press("q")
