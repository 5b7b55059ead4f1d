"""The plan screen: what a planned sync will change, and the drops the operator must approve.

Shown before anything is loaded or sent. `a` applies the plan through the same engine, journal
and controls as any sync; Escape sends nothing. When the brake trips, the button says how many
drops the operator is approving — the console's `--allow-drops N`.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static
from textual.widgets.button import ButtonVariant

from canvas_tui.engine.plan.diff import Plan
from canvas_tui.engine.plan.render import format_plan
from canvas_tui.tui.screens.dialogs import DIALOG_CSS

SHOWN_DROPS = 200  # the rest are in `canvas-tui plan --out`


def drops_table(plan: Plan, limit: int = SHOWN_DROPS) -> Table:
    table = Table(expand=True, box=None, pad_edge=False)
    for column in ("action", "course", "section", "user", "role", "now"):
        table.add_column(column)
    for step in plan.drops[:limit]:
        table.add_row(
            step.action, step.course, step.section, step.user, step.role, step.canvas_state or ""
        )
    return table


class PlanScreen(ModalScreen[bool]):
    """Dismisses True to apply the plan, False to send nothing."""

    DEFAULT_CSS = (
        DIALOG_CSS.format(name="PlanScreen")
        + """
    PlanScreen > Vertical { width: 110; }
    PlanScreen > Vertical > .title { dock: top; }
    PlanScreen #answer { dock: bottom; height: auto; }
    PlanScreen VerticalScroll { height: auto; max-height: 100%; }
    PlanScreen .brake { color: $error; text-style: bold; }
    """
    )
    BINDINGS = [
        Binding("a", "answer(True)", "Apply"),
        Binding("escape,n", "answer(False)", "Send nothing"),
    ]

    def __init__(self, plan: Plan, mode: str = "") -> None:
        super().__init__()
        self.plan = plan
        self._mode = mode

    def compose(self) -> ComposeResult:
        plan = self.plan
        drops = len(plan.drops)
        with Vertical():
            yield Label(f"Plan: {self._mode or 'diff against the live rosters'}", classes="title")
            with VerticalScroll():
                yield Static(Text("\n".join(format_plan(plan))), id="summary")
                if drops:
                    more = drops - SHOWN_DROPS
                    title = f"Would-be drops ({drops})" + (
                        f", first {SHOWN_DROPS}" if more > 0 else ""
                    )
                    yield Label(title, classes="title")
                    yield Static(drops_table(plan), id="drops")
            # the title and the answer are docked: on a short terminal the plan scrolls
            # between them, and the buttons stay on screen (80x24 included)
            with Vertical(id="answer"):
                if plan.brake.tripped:
                    yield Label(
                        f"The brake is on: {drops} drops exceed the thresholds. "
                        "Applying approves them.",
                        classes="brake",
                    )
                with Horizontal(classes="buttons"):
                    yield Button("Send nothing (esc)", id="no")
                    label = (
                        f"Approve {drops} drops and apply (a)"
                        if plan.brake.tripped
                        else "Apply (a)"
                    )
                    variant: ButtonVariant = "error" if plan.brake.tripped else "warning"
                    yield Button(label, id="yes", variant=variant)

    def on_mount(self) -> None:
        # never default to approving drops: Enter on a tripped brake sends nothing
        self.query_one("#no" if self.plan.brake.tripped else "#yes", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
