"""Small modal dialogs: confirm, ask for a line of text, pick one option, edit fields, key help."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from canvas_tui.tui.actions import ACTIONS, STEPPER_ACTIONS, effective_key

DIALOG_CSS = """
{name} {{
    align: center middle;
    background: $background 60%;
}}
{name} > Vertical {{
    width: 72;
    max-width: 90%;
    height: auto;
    max-height: 90%;
    border: thick $accent;
    background: $surface;
    padding: 1 2;
}}
{name} .title {{
    text-style: bold;
    margin-bottom: 1;
}}
{name} .buttons {{
    height: auto;
    margin-top: 1;
    align-horizontal: right;
}}
{name} Button {{
    margin-left: 1;
}}
"""


class ConfirmScreen(ModalScreen[bool]):
    """Yes/no before a bulk or destructive action; `y`/Enter confirm, `n`/Escape decline."""

    DEFAULT_CSS = DIALOG_CSS.format(name="ConfirmScreen")
    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, title: str, body: str = "", *, yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self._title = title
        self._body = body
        self._yes = yes
        self._no = no

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self._title, classes="title")
            if self._body:
                yield Static(self._body)
            with Horizontal(classes="buttons"):
                yield Button(f"{self._no} (n)", id="no")
                yield Button(f"{self._yes} (y)", id="yes", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#yes", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class PromptScreen(ModalScreen[str | None]):
    """One line of text; Enter submits, Escape cancels (None)."""

    DEFAULT_CSS = DIALOG_CSS.format(name="PromptScreen")
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self, title: str, *, value: str = "", placeholder: str = "", help: str = ""
    ) -> None:
        super().__init__()
        self._title = title
        self._value = value
        self._placeholder = placeholder
        self._help = help

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self._title, classes="title")
            yield Input(self._value, placeholder=self._placeholder, id="prompt")
            if self._help:
                yield Static(Text(self._help, style="dim"))

    def on_mount(self) -> None:
        self.query_one(Input).cursor_blink = False
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class ChoiceScreen(ModalScreen[str | None]):
    """Pick one of several options (id, label); Escape cancels."""

    DEFAULT_CSS = (
        DIALOG_CSS.format(name="ChoiceScreen")
        + """
    ChoiceScreen OptionList { height: auto; max-height: 16; }
    """
    )
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, options: Sequence[tuple[str, str]], body: str = "") -> None:
        super().__init__()
        self._title = title
        self._options = list(options)
        self._body = body

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self._title, classes="title")
            if self._body:
                yield Static(self._body)
            yield OptionList(*(Option(label, id=key) for key, label in self._options))

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class EditScreen(ModalScreen[dict[str, str] | None]):
    """Edit a record's source fields; returns only the fields that changed (None on cancel)."""

    DEFAULT_CSS = (
        DIALOG_CSS.format(name="EditScreen")
        + """
    EditScreen .field { height: auto; }
    EditScreen .field Label { padding-top: 1; text-wrap: nowrap; }
    EditScreen .field Input { width: 1fr; }
    """
    )
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Retry with changes"),
    ]

    def __init__(self, title: str, fields: Mapping[str, str]) -> None:
        super().__init__()
        self._title = title
        self._fields = dict(fields)

    def compose(self) -> ComposeResult:
        # as wide as the longest name: a field name has no spaces to wrap at, so a narrower
        # label broke it mid-word (limit_section_privileges)
        label_width = max((len(name) for name in self._fields), default=10) + 2
        with Vertical():
            yield Label(self._title, classes="title")
            with VerticalScroll():
                for name, value in self._fields.items():
                    with Horizontal(classes="field"):
                        label = Label(name)
                        label.styles.width = label_width
                        yield label
                        yield Input(value, id=f"field-{name}", name=name)
            yield Static(Text("Enter or ctrl+s: retry with these values · Escape: cancel", "dim"))
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Retry with changes", id="save", variant="primary")

    def on_mount(self) -> None:
        for box in self.query(Input):
            box.cursor_blink = False
        first = self.query(Input).first(Input)
        first.focus()

    def changed(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for box in self.query(Input):
            name = box.name or ""
            if box.value != self._fields.get(name, ""):
                out[name] = box.value.strip()
        return out

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_save()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        else:
            self.dismiss(None)

    def action_save(self) -> None:
        self.dismiss(self.changed())

    def action_cancel(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    """Every key, from the same registry as the bindings, with the operator's remaps applied,
    and what each figure on the dashboard means. It scrolls: ↑ ↓ PgUp PgDn Home End."""

    DEFAULT_CSS = (
        DIALOG_CSS.format(name="HelpScreen")
        + """
    HelpScreen > Vertical { width: 84; height: 90%; padding: 0 1; }
    HelpScreen .title { margin-bottom: 0; }
    HelpScreen VerticalScroll { height: 1fr; }
    """
    )
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def __init__(self, keymap: Mapping[str, str], legend: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__()
        self._keys = keymap
        self._legend = legend

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan", min_width=10, no_wrap=True)
        table.add_column()
        for action in ACTIONS:
            table.add_row(effective_key(action, self._keys), action.help)
        table.add_row("", "")
        table.add_row(Text("Queue", style="bold"), "")
        table.add_row("↑ ↓ PgUp PgDn", "Move in the queue; Home/End: first/last")
        table.add_row("enter", "Open the selected record (failed ones in the stepper)")
        table.add_row(Text("Failure stepper", style="bold"), "")
        for action in STEPPER_ACTIONS:
            table.add_row(effective_key(action, self._keys), action.help)
        table.add_row("r s e E", "Retry, skip, edit+retry this record, export all failures")
        table.add_row("ctrl+p", "Command palette: every action by name")
        table.add_row("ctrl+c", "Quit safely, as q (ctrl+q too)")
        with Vertical():
            yield Label("Keys  (↑ ↓ PgUp PgDn End to scroll · Esc to close)", classes="title")
            with VerticalScroll(id="help-scroll"):
                yield Static(table, classes="help-keys")
                if self._legend:
                    legend = Table.grid(padding=(0, 2))
                    legend.add_column(style="bold", min_width=10, no_wrap=True)
                    legend.add_column()
                    for name, meaning in self._legend:
                        legend.add_row(name, meaning)
                    yield Label("The dashboard", classes="title")
                    yield Static(legend, classes="help-legend")
                yield Static(Text('Remap any key in the config: [keys] pause = "space"', "dim"))

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()

    def action_close(self) -> None:
        self.dismiss(None)
