"""`canvas-tui serve`: the console in a browser, for a help desk without a terminal.

textual-serve runs the console once per browser tab (a process each, its screen sent to xterm.js
over a websocket). What this adds to it:

- it listens on loopback unless told otherwise;
- every request needs the access token: a random one, printed once in the URL to open. The page
  that the URL opens sets it as an HttpOnly, SameSite=Strict cookie, which the page's own
  requests (its scripts, its websocket) carry; anything without it is refused (403), and a
  websocket from another origin too. The token is not the Canvas token, and neither is ever
  written to a log, a page or a process's arguments (the aiohttp access log, which would print
  the URL, is off);
- while a process drives the run (a `sync`, a `watch`), every tab is a console attached to that
  one engine (engine/attach.py): it follows the run and never loads, plans or runs anything, so
  no tab starts a second run; `--control` lets tabs pause, resume or retry through it. With no
  run going, a tab is a `--read-only` console over the journal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import secrets
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TextIO

from aiohttp import web
from textual_serve.server import Server

from canvas_tui.config import ConfigError, load_config
from canvas_tui.engine.attach import socket_path
from canvas_tui.engine.journal import journals_in
from canvas_tui.exit_codes import ExitCode, error_line
from canvas_tui.paths import default_journal_dir

COOKIE = "canvas_tui_access"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def latest_journal(directory: Path) -> Path | None:
    """The journal of the most recent run in `directory` (by modification time)."""
    return max(journals_in(directory), key=lambda p: p.stat().st_mtime, default=None)


def tab_command(journal: Path, config: Path | None, *, control: bool = False) -> str:
    """What a tab runs. While a process drives the run (a `sync`, a `watch`: its attach socket
    is there), a console attached to that process's engine: every tab follows the one engine,
    none loads or runs anything (read-only; with `control`, its commands go to that engine).
    Otherwise a read-only console over the journal. No secret is on it: the Canvas token, if
    any, stays where the config says (a file, the environment)."""
    argv = [sys.executable, "-m", "canvas_tui", "console"]
    if socket_path(journal).exists():
        argv += ["--attach", str(journal)]
        if control:
            argv.append("--control")
    else:
        argv += ["--journal", str(journal), "--read-only"]
    if config is not None:
        argv += ["--config", str(config)]
    return shlex.join(argv)


def main(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Exit 0 when stopped (Ctrl+C, SIGTERM); 2 on a usage or config error."""
    out = out or sys.stdout
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(error_line(str(exc)), file=sys.stderr)
        return ExitCode.USAGE
    if args.host not in LOOPBACK and not args.allow_remote:
        print(
            error_line(
                f"--host {args.host} would serve the console beyond this machine: add "
                "--allow-remote to mean it (and put TLS in front: the access token travels "
                "in the URL and a cookie)"
            ),
            file=sys.stderr,
        )
        return ExitCode.USAGE
    if args.journal:
        journal: Path | None = Path(args.journal).expanduser().resolve()
    else:
        found = latest_journal(config.sync.journal_dir or default_journal_dir())
        journal = found.resolve() if found is not None else config.sync.journal
    if journal is None or not journal.is_file():
        print(
            error_line(
                f"no journal to serve ({journal or 'none in the journal directory'}): "
                "give --journal FILE"
            ),
            file=sys.stderr,
        )
        return ExitCode.USAGE
    token = secrets.token_urlsafe(24)
    config_path = config.path.resolve() if config.path is not None else None
    served = journal

    def tab() -> str:
        return tab_command(served, config_path, control=args.control)

    server = GuardedServer(
        tab,
        host=args.host,
        port=args.port,
        token=token,
        title=f"canvas-tui · {journal.name}",
    )
    mode = "tabs may pause, resume and retry the run" if args.control else "read-only"
    print(
        f"Serving the console over {journal} ({mode}) on {server.public_url}\n"
        f"Open: {server.public_url}/?token={token}\n"
        "The token is shown this once; anyone with the URL can read this run. Ctrl+C stops.",
        file=out,
        flush=True,
    )
    server.serve()
    return ExitCode.OK


class GuardedServer(Server):
    """textual-serve's server with the access token checked on every request, and each tab's
    command chosen when the tab opens (`tab_command`: a run may start or end meanwhile)."""

    def __init__(
        self, tab: Callable[[], str], *, host: str, port: int, token: str, title: str
    ) -> None:
        super().__init__(tab(), host=host, port=port, title=title)
        self._tab = tab
        self._token = token

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        self.command = self._tab()  # read by the tab's AppService as it starts
        response: web.WebSocketResponse = await super().handle_websocket(request)
        return response

    def _allowed(self, request: web.Request) -> bool:
        offered = request.query.get("token") or request.cookies.get(COOKIE) or ""
        return hmac.compare_digest(offered.encode(), self._token.encode())

    @web.middleware
    async def _guard(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        if not self._allowed(request):
            return web.Response(status=403, text="canvas-tui: the access token is required\n")
        origin = request.headers.get("Origin")
        if request.path == "/ws" and origin is not None and origin != self.public_url:
            return web.Response(status=403, text="canvas-tui: a websocket from another origin\n")
        response = await handler(request)
        if request.query.get("token"):
            # the page's scripts and websocket carry it from here on; the URL need not
            response.set_cookie(COOKIE, self._token, httponly=True, samesite="Strict")
        if not response.prepared:
            response.headers["Cache-Control"] = "no-store"
            response.headers["Referrer-Policy"] = "no-referrer"
        return response

    async def _make_app(self) -> web.Application:
        app: web.Application = await super()._make_app()
        app.middlewares.append(self._guard)
        return app

    async def on_startup(self, app: web.Application) -> None:
        """textual-serve prints its logo and the command here; `main` has said what matters."""

    def serve(self, debug: bool = False) -> None:
        """textual-serve's `serve` without the access log, which would print the token."""
        self.debug = debug
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, self.request_exit)
        web.run_app(
            self._make_app(),
            host=self.host,
            port=self.port,
            handle_signals=False,
            loop=loop,
            access_log=None,
            print=lambda *args: None,
        )
