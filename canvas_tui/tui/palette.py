"""The command palette's provider: every console action (tui/actions.py), by its help text."""

from __future__ import annotations

from functools import partial

from textual.app import App
from textual.command import DiscoveryHit, Hit, Hits, Provider

from canvas_tui.tui.actions import ACTIONS, effective_key
from canvas_tui.tui.contract import ConsoleAware


class ConsoleCommands(ConsoleAware, Provider):
    """The command palette's view of the registry: the actions available now."""

    def _commands(self) -> list[tuple[str, str, str]]:
        host = self.console_app
        keymap = host.keymap_overrides
        out = []
        for a in ACTIONS:
            if a.id in {"help", "quit", "edit"}:
                continue
            if not host.action_available(a.action.split("(")[0]):
                continue
            out.append((f"{a.help}", a.action, effective_key(a, keymap)))
        return out

    async def discover(self) -> Hits:
        for text, action, key in self._commands():
            yield DiscoveryHit(text, partial(_run, self.app, action), help=f"key: {key}")

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, action, key in self._commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(text),
                    partial(_run, self.app, action),
                    help=f"key: {key}",
                )


async def _run(app: App[object], action: str) -> None:
    await app.run_action(action)
