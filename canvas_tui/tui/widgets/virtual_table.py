"""A table that renders only the lines on screen, asking its owner for one window of rows at a time.

The built-in DataTable keeps every cell in Python and repaints slowly at 100,000 rows (STYLE.md §5);
this view holds nothing but the visible window, so its cost does not grow with the row count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

Cell = str | Text
Row = Sequence[Cell]
# (offset, limit) -> at most `limit` items starting at `offset`; `cells(item)` draws one
Fetch = Callable[[int, int], Sequence[Any]]
Cells = Callable[[Any], Row]


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    width: int
    justify: str = "left"  # "left" | "right"


def _fit(cell: Cell, width: int, justify: str) -> Text:
    text = cell.copy() if isinstance(cell, Text) else Text(cell)
    text.truncate(width, overflow="ellipsis")
    if justify == "right":
        text.pad_left(width - text.cell_len)
    else:
        text.pad_right(width - text.cell_len)
    return text


class VirtualTable(ScrollView, can_focus=True):
    """Items come from `fetch(offset, limit)`, are drawn by `cells(item)`; `total` counts them."""

    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "jump_first", "Top", show=False),
        Binding("end,G", "jump_last", "Bottom", show=False),
        Binding("enter", "select", "Open", show=False),
    ]

    DEFAULT_CSS = """
    VirtualTable {
        background: $surface;
        scrollbar-gutter: stable;
    }
    VirtualTable > .virtual-table--header {
        text-style: bold;
        background: $panel;
    }
    VirtualTable > .virtual-table--cursor {
        background: $accent 40%;
    }
    VirtualTable:focus > .virtual-table--cursor {
        background: $accent;
    }
    """
    COMPONENT_CLASSES = {"virtual-table--header", "virtual-table--cursor"}

    cursor: reactive[int] = reactive(0, always_update=True, repaint=False)

    class Highlighted(Message):
        def __init__(self, table: VirtualTable, index: int) -> None:
            super().__init__()
            self.table = table
            self.index = index

    class Selected(Message):
        def __init__(self, table: VirtualTable, index: int) -> None:
            super().__init__()
            self.table = table
            self.index = index

    def __init__(
        self,
        columns: Sequence[Column],
        fetch: Fetch,
        cells: Cells = lambda item: item,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.columns = list(columns)
        self._fetch = fetch
        self._cells = cells
        self._total = 0
        self._window_start = 0
        self._window: list[Any] = []
        self._window_valid = False
        # the last column stretches to the view's width; the rest are fixed
        self._fixed_width = sum(c.width + 1 for c in self.columns[:-1])
        self._row_width = self._fixed_width + self.columns[-1].width
        self.fetches = 0  # how many windows were read: the benchmark and tests watch it

    # ---- data ------------------------------------------------------------------------------

    @property
    def total(self) -> int:
        return self._total

    @property
    def current(self) -> Any | None:
        """The item under the cursor."""
        return self.row_at(self.cursor)

    def set_total(self, total: int) -> None:
        """Tell the view how many rows there are now; keeps the cursor inside them."""
        if total != self._total or self.virtual_size.height != total + 1:
            self._total = total
            # one extra line: the header is drawn as line 0 of the virtual area
            self.virtual_size = Size(self._row_width, total + 1)
            if self.cursor >= total:
                self.cursor = max(0, total - 1)

    def reload(self) -> None:
        """Forget the cached window and repaint: rows changed in the store."""
        self._window_valid = False
        self.refresh()

    def row_at(self, index: int) -> Any | None:
        if not 0 <= index < self._total:
            return None
        self._ensure_window(index)
        offset = index - self._window_start
        return self._window[offset] if 0 <= offset < len(self._window) else None

    def _ensure_window(self, index: int) -> None:
        end = self._window_start + len(self._window)
        if self._window_valid and self._window_start <= index < end:
            return
        height = max(self.size.height, 10)
        start = max(0, min(index, int(self.scroll_y)) - height // 2)
        self._window = list(self._fetch(start, height * 2))
        self._window_start = start
        self._window_valid = True
        self.fetches += 1

    # ---- drawing ---------------------------------------------------------------------------

    def _line(self, cells: Row, style: Style) -> Strip:
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        last = len(self.columns) - 1
        for i, (col, cell) in enumerate(zip(self.columns, cells, strict=False)):
            width = col.width
            if i == last:
                width = max(width, self.size.width - self._fixed_width)
            text.append_text(_fit(cell, width, col.justify))
            if i != last:
                text.append(" ")
        segments = list(text.render(self.app.console))
        strip = Strip(segments).extend_cell_length(max(self._row_width, self.size.width))
        return strip.apply_style(style) if style else strip

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        base = self.rich_style
        if y == 0:  # header stays put while the body scrolls
            header = self.get_component_rich_style("virtual-table--header")
            strip = self._line([c.title for c in self.columns], base + header)
            return strip.crop(scroll_x, scroll_x + width)
        index = scroll_y + y - 1
        item = self.row_at(index)
        if item is None:
            return Strip([Segment(" " * width, base)], width)
        style = base
        if index == self.cursor:
            style = base + self.get_component_rich_style("virtual-table--cursor")
        return self._line(self._cells(item), style).crop(scroll_x, scroll_x + width)

    # ---- cursor ----------------------------------------------------------------------------

    def watch_cursor(self, old: int, new: int) -> None:
        self._scroll_to_cursor()
        self.refresh()
        self.post_message(self.Highlighted(self, new))

    def _scroll_to_cursor(self) -> None:
        body = max(1, self.size.height - 1)
        top = int(self.scroll_y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + body:
            self.scroll_to(y=self.cursor - body + 1, animate=False)

    def move_to(self, index: int) -> None:
        self.cursor = max(0, min(index, self._total - 1))

    def action_cursor(self, delta: int) -> None:
        self.move_to(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self.move_to(self.cursor + direction * max(1, self.size.height - 2))

    def action_jump_first(self) -> None:
        self.move_to(0)

    def action_jump_last(self) -> None:
        self.move_to(self._total - 1)

    def action_select(self) -> None:
        if 0 <= self.cursor < self._total:
            self.post_message(self.Selected(self, self.cursor))

    def on_click(self, event: events.Click) -> None:
        index = int(self.scroll_y) + event.y - 1
        if 0 <= index < self._total and event.y > 0:
            self.move_to(index)

    def on_resize(self, event: events.Resize) -> None:
        self._window_valid = False
