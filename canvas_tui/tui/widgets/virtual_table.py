"""A table that renders only the lines on screen, asking its owner for one window of rows at a time.

The built-in DataTable keeps every cell in Python and repaints slowly at 100,000 rows (STYLE.md §5);
this view holds nothing but the visible window, so its cost does not grow with the row count.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events, work
from textual.binding import Binding
from textual.geometry import Region, Size
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
class _PaintStyles:
    base: Style
    width: int


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
        /* always there: a scrollbar that came and went with the row count (a state filter
           of a few rows, then thousands) asked for a layout pass each time */
        overflow-y: scroll;
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

    class Selected(Message):
        def __init__(self, table: VirtualTable, index: int) -> None:
            super().__init__()
            self.table = table
            self.index = index

        @property
        def control(self) -> VirtualTable:
            return self.table

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
        self.fetches = 0  # how many windows were read (in threads)
        self._pending: tuple[int, int, int] | None = None
        self.moves = 0  # cursor updates handled: the benchmark times keys by it
        self.generation = 0  # bumps when the rows' meaning changes (filter, sort)
        self._strips: dict[
            tuple[int, bool, bool, int], Strip
        ] = {}  # drawn rows of the current window
        self._paint_styles: _PaintStyles | None = None

    # ---- data ------------------------------------------------------------------------------

    @property
    def total(self) -> int:
        return self._total

    @property
    def window_rows(self) -> int:
        """How many rows the cached window holds (0 before the first read)."""
        return len(self._window) if self._window_valid else 0

    def set_total(self, total: int) -> None:
        """Tell the view how many rows there are now; keeps the cursor inside them."""
        if total != self._total or self.virtual_size.height != total + 1:
            shown_before = self._total
            self._total = total
            # one extra line: the header is drawn as line 0 of the virtual area
            self._set_virtual_size(Size(self._row_width, total + 1))
            if min(shown_before, total) < int(self.scroll_y) + self.size.height:
                self.refresh()  # rows appear on (or leave) the screen
            if self.cursor >= total:
                self.cursor = max(0, total - 1)

    def _set_virtual_size(self, size: Size) -> None:
        """The scrollable size, without the layout pass that assigning `virtual_size` asks for:
        the view's own size does not change with its row count (a filtered count changes on
        most ticks of a sync), only its scroll range and scrollbar do, and `_scroll_update`
        (what ScrollView does on a resize) updates those; showing or hiding the scrollbar still
        asks for a layout through its `display`."""
        self.set_reactive(ScrollView.virtual_size, size)
        self._scroll_update(size)

    def reload(self) -> None:
        """Rows changed in the store: read the window again (the old one shows meanwhile)."""
        start, limit = self.window_span()
        self._request(start, limit)

    def set_columns(self, columns: Sequence[Column]) -> None:
        """Show other columns (the owner's `cells` must draw them): the drawn rows go."""
        self.columns = list(columns)
        self._fixed_width = sum(c.width + 1 for c in self.columns[:-1])
        self._row_width = self._fixed_width + self.columns[-1].width
        self.virtual_size = Size(self._row_width, self._total + 1)
        self._strips.clear()
        self.refresh()

    def invalidate(self) -> None:
        """The rows mean something else now (a new filter or order): drop the window and any
        read in flight; placeholders show until the new rows arrive."""
        self.generation += 1
        self._window_valid = False
        self._window = []
        self._strips.clear()
        self.refresh()

    def window_span(self) -> tuple[int, int]:
        """(offset, limit) of the window worth caching around what is on screen."""
        height = max(self.size.height, 10)
        return max(0, int(self.scroll_y) - height), height * 3

    def replace_window(self, start: int, items: Sequence[Any], generation: int) -> None:
        """Install a window read elsewhere (off the UI thread); ignored if it is stale."""
        if generation != self.generation:
            return
        items = list(items)
        window = self._window
        if self._window_valid and start == self._window_start and len(items) == len(window):
            self._update_rows(start, window, items)
            return
        self._window_start = start
        self._window = items
        self._window_valid = True
        self._strips.clear()
        self.refresh()

    def _update_rows(self, start: int, window: list[Any], items: list[Any]) -> None:
        """The same span read again: only the rows that changed take the new item and have their
        line repainted; the others keep their object, so their drawn lines stay cached (during
        a sync most ticks change a few rows of the window, not all of them)."""
        changed = [i for i, (old, new) in enumerate(zip(window, items, strict=True)) if old != new]
        if not changed:
            return
        for i in changed:
            window[i] = items[i]
        # a drawn line is keyed by its item's id: drop those of the items replaced
        kept = {id(item) for item in window}
        self._strips = {key: strip for key, strip in self._strips.items() if key[0] in kept}
        for i in changed:
            self.refresh_line(start + i + 1)  # line 0 is the header

    def row_at(self, index: int) -> Any | None:
        """The item at `index` if its window is in memory; otherwise None, and a read of that
        window starts in a thread (drawing never waits on the store: a sort over 100,000 rows
        must not hold up a key press)."""
        if not 0 <= index < self._total:
            return None
        end = self._window_start + len(self._window)
        if self._window_valid and self._window_start <= index < end:
            return self._window[index - self._window_start]
        height = max(self.size.height, 10)
        self._request(max(0, min(index, int(self.scroll_y)) - height), height * 3)
        return None

    @property
    def current(self) -> Any | None:
        """The item under the cursor, read at once if its window is not in memory yet (an
        operator's command on the selected record must not act on a placeholder)."""
        item = self.row_at(self.cursor)
        if item is None and 0 <= self.cursor < self._total:
            found = list(self._fetch(self.cursor, 1))
            item = found[0] if found else None
        return item

    def _request(self, start: int, limit: int) -> None:
        wanted = (start, limit, self.generation)
        if self._pending == wanted:
            return
        self._pending = wanted
        self._load_window(start, limit, self.generation)

    @work(exclusive=True, group="virtual-table-window", exit_on_error=False)
    async def _load_window(self, start: int, limit: int, generation: int) -> None:
        items = await asyncio.to_thread(self._fetch, start, limit)
        self.fetches += 1
        if self._pending == (start, limit, generation):
            self._pending = None
        self.replace_window(start, items, generation)

    # ---- drawing ---------------------------------------------------------------------------

    def _line(self, cells: Row, style: Style, view_width: int) -> Strip:
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        last = len(self.columns) - 1
        for i, (col, cell) in enumerate(zip(self.columns, cells, strict=False)):
            width = col.width
            if i == last:
                width = max(width, view_width - self._fixed_width)
            text.append_text(_fit(cell, width, col.justify))
            if i != last:
                text.append(" ")
        segments = list(text.render(self.app.console))
        strip = Strip(segments).extend_cell_length(max(self._row_width, view_width))
        return strip.apply_style(style) if style else strip

    def render_lines(self, crop: Region) -> list[Strip]:
        # the widget's styles once per paint, not once per line: each is a walk up the DOM
        self._paint_styles = _PaintStyles(self.rich_style, self.size.width)
        try:
            return super().render_lines(crop)
        finally:
            self._paint_styles = None

    def _styles(self) -> _PaintStyles:
        return self._paint_styles or _PaintStyles(self.rich_style, self.size.width)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        paint = self._styles()
        width = paint.width
        base = paint.base
        if y == 0:  # header stays put while the body scrolls
            header = self.get_component_rich_style("virtual-table--header")
            strip = self._line([c.title for c in self.columns], base + header, width)
            return strip.crop(scroll_x, scroll_x + width)
        index = scroll_y + y - 1
        item = self.row_at(index)
        if item is None:
            if index < self._total:  # its window is being read
                return Strip([Segment("…".ljust(width), base + Style(dim=True))], width)
            return Strip([Segment(" " * width, base)], width)
        selected = index == self.cursor
        key = (id(item), selected and self.has_focus, selected, width)
        cached = self._strips.get(key)
        if cached is not None:
            strip = cached
        else:
            style = base
            if selected:
                style = base + self.get_component_rich_style("virtual-table--cursor")
            strip = self._strips[key] = self._line(self._cells(item), style, width)
        return strip.crop(scroll_x, scroll_x + width)

    # ---- cursor ----------------------------------------------------------------------------

    def watch_cursor(self, old: int, new: int) -> None:
        self.moves += 1
        top = int(self.scroll_y)
        body = max(1, self.size.height - 1)
        if top <= new < top + body:
            # only two lines change: repaint those, not the whole view
            self.refresh_line(old + 1)
            self.refresh_line(new + 1)
        else:
            self._scroll_to_cursor()
            self.refresh()

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
        self.reload()
