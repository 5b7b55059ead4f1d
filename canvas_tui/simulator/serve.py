"""`canvas-tui simulate`: serve the simulator on a loopback port for any client."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import uvicorn

from canvas_tui.simulator.app import LatencyModel, SimConfig, build_app
from canvas_tui.simulator.faults import parse_faults
from canvas_tui.simulator.testing import quiet_simulated_resets
from canvas_tui.simulator.world import ADMIN_TOKEN

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def config_from_args(args: argparse.Namespace) -> SimConfig:
    config = SimConfig(
        seed=args.seed,
        time_scale=args.time_scale,
        throttle_status=args.throttle_status,
        hwm=args.hwm,
        faults=parse_faults(args.faults),
        tokens=tuple(args.token or ()),
        no_sis_tokens=tuple(getattr(args, "no_sis_token", None) or ()),
        sis_import_rate=getattr(args, "sis_import_rate", 250.0),
        sis_import_start_delay=getattr(args, "sis_import_start_delay", 2.0),
        sis_imports_enabled=not getattr(args, "no_sis_imports", False),
    )
    if args.post_cost is not None:
        config.post_cost = args.post_cost
    if args.latency is not None:
        config.latency = LatencyModel.uniform(args.latency)
    return config


def demo_token_path() -> Path:
    """Where `simulate` leaves the demo token: examples/demo.toml names it as `token_file`."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "canvas-tui" / "simulator-token"


def write_demo_token() -> Path:
    """The demo token goes in a 0600 file, so configs point at it (`token_file`) and it is never
    printed, as a real token would never be."""
    path = demo_token_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(ADMIN_TOKEN + "\n")
    return path


def main(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
        app = build_app(config)
    except ValueError as exc:
        print(f"canvas-tui simulate: {exc}", file=sys.stderr)
        return 2
    if args.host not in LOOPBACK:
        print(f"canvas-tui simulate: note: serving on {args.host}, not loopback", file=sys.stderr)
    host = f"[{args.host}]" if ":" in args.host else args.host
    world = app.world
    print(f"Canvas simulator at http://{host}:{args.port}/api/v1/", flush=True)
    print(
        f"  world seed {config.seed}: {len(world.users)} users, {len(world.courses)} courses, "
        f"{len(world.sections)} sections, {len(world.enrollments)} enrollments",
        flush=True,
    )
    print(
        f"  throttle {config.throttle_status} at hwm {config.hwm:g}, time scale {config.time_scale:g}"
        f"; stats at http://{host}:{args.port}/__sim__/stats",
        flush=True,
    )
    if config.sis_imports_enabled:
        print(
            f"  SIS imports at {config.sis_import_rate:g} rows per world second, starting "
            f"{config.sis_import_start_delay:g} world seconds after the upload",
            flush=True,
        )
    else:
        print("  SIS imports disabled on the root account", flush=True)
    if args.token:
        print(f"  accepting the {len(args.token)} token(s) given with --token", flush=True)
    if getattr(args, "no_sis_token", None):
        print(
            f"  accepting {len(args.no_sis_token)} token(s) without SIS rights (--no-sis-token)",
            flush=True,
        )
    else:
        print(f"  demo admin token in {write_demo_token()} (set token_file to it)", flush=True)
    quiet_simulated_resets()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", lifespan="off")
    return 0
