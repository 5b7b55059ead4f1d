"""What the simulator's SIS Import API costs in CPU: one import of N enrollment rows, in process.

    .venv/bin/python benchmarks/bench_sis_sim.py [--rows 100000] [--polls 20]

The import rate is set so high that the rows are due at the first poll after `--polls` equal
steps of the frozen clock: the figure is the simulator's own work (parse, apply every row to the
world, finish), which decides how far a benchmark of the engine can push
`SimConfig.sis_import_rate` before the simulator, not the model, is the limit. The machine's
load (printed) moves it; compare within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

import httpx

from canvas_tui.simulator import ADMIN_TOKEN, LatencyModel, SimConfig, build_app
from canvas_tui.simulator.testing import asgi_transport
from canvas_tui.simulator.world import World


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def run(rows: int, polls: int) -> dict[str, Any]:
    world = World.generate(7, users=max(2000, rows // 3), courses=max(120, rows // 250))
    clock = Clock()
    seconds = 100.0
    config = SimConfig(
        clock=clock,
        sis_import_rate=rows / seconds,
        sis_import_start_delay=0.0,
        cost_jitter=0.0,
        latency=LatencyModel.uniform(0.0),  # the simulator's work only, no simulated waits
    )
    sim = build_app(config, world)
    users = [u.sis_user_id for u in world.users.values() if u.id >= 1000 and u.sis_user_id]
    courses = [c.sis_course_id for c in world.courses.values() if c.workflow_state == "available"]
    lines = ["course_id,user_id,role,section_id,status"]
    for index in range(rows):
        lines.append(
            f"{courses[index % len(courses)]},{users[(index * 7) % len(users)]},student,,active"
        )
    data = ("\n".join(lines) + "\n").encode()
    headers = {"User-Agent": "bench", "Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(
        transport=asgi_transport(sim), base_url="http://sim", headers=headers
    ) as client:
        started = time.perf_counter()
        created = await client.post(
            "/api/v1/accounts/1/sis_imports",
            params={"extension": "csv"},
            content=data,
            headers={"Content-Type": "text/csv"},
        )
        upload_s = time.perf_counter() - started
        import_id = created.json()["id"]
        slowest = 0.0
        body: dict[str, Any] = {}
        for step in range(1, polls + 1):
            clock.now = seconds * step / polls
            poll_started = time.perf_counter()
            body = (await client.get(f"/api/v1/accounts/1/sis_imports/{import_id}")).json()
            slowest = max(slowest, time.perf_counter() - poll_started)
        total = time.perf_counter() - started
    assert body["workflow_state"] == "imported", body["workflow_state"]
    assert body["data"]["counts"]["enrollments"] == rows
    return {
        "rows": rows,
        "bytes": len(data),
        "upload_s": round(upload_s, 3),
        "total_cpu_s": round(total, 3),
        "rows_per_cpu_s": round(rows / total),
        "slowest_poll_s": round(slowest, 3),
        "load_average": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--polls", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.rows, args.polls)), indent=2))


if __name__ == "__main__":
    main()
