"""The built-in Canvas simulator: throttle, pagination, error shapes and faults as Canvas has them.

In process: `httpx.AsyncClient(transport=asgi_transport(build_app(SimConfig())))`; on a socket:
`canvas-tui simulate` or `testing.serve_in_thread(app)`.
"""

from canvas_tui.simulator.app import LatencyModel, SimConfig, Simulator, build_app
from canvas_tui.simulator.faults import FaultRates, SimulatedConnectionReset, parse_faults
from canvas_tui.simulator.world import (
    ADMIN_TOKEN,
    DEMO_TOKEN,
    NO_PERMISSION_TOKEN,
    NO_SIS_TOKEN,
    World,
)

__all__ = [
    "ADMIN_TOKEN",
    "DEMO_TOKEN",
    "NO_PERMISSION_TOKEN",
    "NO_SIS_TOKEN",
    "FaultRates",
    "LatencyModel",
    "SimConfig",
    "SimulatedConnectionReset",
    "Simulator",
    "World",
    "build_app",
    "parse_faults",
]
