"""`canvas-tui watch` on a Kafka topic, against a real Kafka-protocol broker (tests/watch/broker.py)
and the simulator in process: changes produced reach Canvas, a bad message fails alone and the
stream goes on, and the group's offsets are committed once the journal holds the outcomes, so a
restart resumes after them."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from canvas_tui.config import CanvasConfig, Config, Secret, SourceConfig, WatchConfig
from canvas_tui.engine.session import open_session
from canvas_tui.engine.topic import TopicPoller
from canvas_tui.engine.watch import WatchService
from canvas_tui.simulator import ADMIN_TOKEN, Simulator, World, build_app
from canvas_tui.simulator.testing import asgi_transport
from tests.helpers import eventually_async, fast_config
from tests.watch.broker import (
    change,
    committed,
    new_topic,
    produce,
    tansu_broker,
    tansu_process,
)
from tests.watch.helpers import Running, pairs, state_in, with_plan

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def broker() -> Iterator[str]:
    with tansu_broker() as address:
        yield address


@pytest.fixture
def app() -> Simulator:
    return build_app(fast_config(), World.generate(7))


@asynccontextmanager
async def running(config: Config, app: Simulator, journal: Path) -> AsyncIterator[Running]:
    """The service on `config`'s topic, against `app` in process, until the block ends."""
    session = open_session(config, journal_path=journal, transport=asgi_transport(app))
    events: list[dict[str, Any]] = []
    service = WatchService(
        session,
        TopicPoller(config.source),
        emit=lambda event, **fields: events.append({"event": event, **fields}),
    )
    task = asyncio.create_task(service.run())
    try:
        yield Running(service, task, events)
    finally:
        service.stop()
        try:
            await asyncio.wait_for(task, 60)
        finally:
            await session.close()


def kafka_config(broker: str, topic: str, group: str = "canvas-tui", **watch: Any) -> Config:
    settings: dict[str, Any] = {"interval": 0.05, "drift_at": None}
    settings.update(watch)
    return Config(
        canvas=CanvasConfig(base_url="http://127.0.0.1", token=Secret(ADMIN_TOKEN)),
        source=SourceConfig(kind="kafka", brokers=(broker,), topic=topic, group=group),
        watch=WatchConfig(**settings),
    )


def _records(journal: Path) -> list[tuple[str, int, str, str | None]]:
    """(source, line, state, message) of every record, in order."""
    db = sqlite3.connect(journal)
    try:
        return [
            (str(s), int(n), str(st), m)
            for s, n, st, m in db.execute(
                "SELECT s.name, r.line, r.state, r.message FROM records r "
                "JOIN sources s ON s.id = r.source_id ORDER BY r.record_id"
            )
        ]
    finally:
        db.close()


async def test_changes_on_the_topic_reach_canvas_and_offsets_follow(
    broker: str, app: Simulator, tmp_path: Path
) -> None:
    world = app.world
    chosen = pairs(world, 6)
    topic = new_topic(broker)
    config = with_plan(kafka_config(broker, topic), brake_max_share=1.0)
    journal = tmp_path / "w.journal"
    async with running(config, app, journal) as run:
        # both partitions: adds, then a drop and a conclude as later messages
        produce(broker, topic, [(n % 2, change(p)) for n, p in enumerate(chosen)])
        await eventually_async(
            lambda: all(state_in(world, p) == "active" for p in chosen),
            what="six adds active in Canvas",
            abort_if=run.done_or_failed,
        )
        produce(
            broker,
            topic,
            [(0, change(chosen[0], "deleted")), (1, change(chosen[1], "completed"))],
        )
        await eventually_async(
            lambda: (
                state_in(world, chosen[0]) in (None, "deleted")
                and state_in(world, chosen[1]) == "completed"
            ),
            what="the drop and the conclude in Canvas",
            abort_if=run.done_or_failed,
        )
        poller = run.service.poller
        assert isinstance(poller, TopicPoller)
        # every outcome is journaled: the group's offsets reach the end of each partition
        await eventually_async(
            lambda: poller.committed == {0: 4, 1: 4},
            what="offsets committed to the end",
            abort_if=run.done_or_failed,
        )
    assert committed(broker, topic, "canvas-tui") == {0: 4, 1: 4}
    records = _records(journal)
    assert len(records) == 8
    assert {r[2] for r in records} == {"done"}
    # provenance: the topic and partition, and the message's offset
    assert sorted((r[0], r[1]) for r in records) == sorted(
        [(f"{topic}:0", o) for o in range(4)] + [(f"{topic}:1", o) for o in range(4)]
    )


async def test_a_bad_message_fails_alone_and_the_stream_goes_on(
    broker: str, app: Simulator, tmp_path: Path
) -> None:
    world = app.world
    chosen = pairs(world, 3)
    topic = new_topic(broker, partitions=1)
    journal = tmp_path / "w.journal"
    async with running(kafka_config(broker, topic), app, journal) as run:
        produce(
            broker,
            topic,
            [
                (0, change(chosen[0])),
                (0, b"{not json"),
                (0, None),  # a tombstone
                (0, change(chosen[1], "sometimes")),
                (0, b'["an", "array"]'),
                (0, change(chosen[2])),
            ],
        )
        await eventually_async(
            lambda: (
                state_in(world, chosen[0]) == "active" and state_in(world, chosen[2]) == "active"
            ),
            what="the good messages around the bad ones in Canvas",
            abort_if=run.done_or_failed,
        )
        poller = run.service.poller
        assert isinstance(poller, TopicPoller)
        await eventually_async(
            lambda: poller.committed == {0: 6},
            what="the offset committed past the bad messages",
            abort_if=run.done_or_failed,
        )
    assert state_in(world, chosen[1]) is None
    records = _records(journal)
    states = [(r[1], r[2]) for r in records]
    assert states == [
        (0, "done"),
        (1, "failed"),
        (2, "skipped"),
        (3, "failed"),
        (4, "failed"),
        (5, "done"),
    ]
    messages = {r[1]: r[3] or "" for r in records}
    assert messages[1].startswith(f"{topic}:0:1: not a JSON object")
    assert "tombstone" in messages[2]
    assert 'Improper status "sometimes"' in messages[3]
    assert "JSON array" in messages[4]
    assert {r[0] for r in records} == {f"{topic}:0"}


async def test_a_restart_resumes_after_the_committed_offsets(
    broker: str, app: Simulator, tmp_path: Path
) -> None:
    world = app.world
    chosen = pairs(world, 5)
    topic = new_topic(broker)
    config = kafka_config(broker, topic, group="registrar")
    journal = tmp_path / "w.journal"
    async with running(config, app, journal) as run:
        produce(broker, topic, [(n % 2, change(p)) for n, p in enumerate(chosen[:3])])
        await eventually_async(
            lambda: all(state_in(world, p) == "active" for p in chosen[:3]),
            what="three adds active",
            abort_if=run.done_or_failed,
        )
    # the stop acknowledged every outcome
    assert committed(broker, topic, "registrar") == {0: 2, 1: 1}
    produce(broker, topic, [(0, change(chosen[3])), (1, change(chosen[4]))])
    async with running(config, app, journal) as run:
        await eventually_async(
            lambda: all(state_in(world, p) == "active" for p in chosen[3:]),
            what="the two changes sent while it was stopped",
            abort_if=run.done_or_failed,
        )
        poller = run.service.poller
        assert isinstance(poller, TopicPoller)
        assert poller.redelivered == 0  # it started at the committed offsets
    assert len(_records(journal)) == 5  # nothing journaled twice
    stats = app.stats()
    assert stats["enrollments_created"] == 5
    assert stats["duplicates"] == 0
    assert committed(broker, topic, "registrar") == {0: 3, 1: 2}


async def test_a_broker_outage_is_the_source_out_and_a_stop_still_ends(
    app: Simulator, tmp_path: Path
) -> None:
    chosen = pairs(app.world, 1)
    with tansu_process() as broker:
        topic = new_topic(broker.address, partitions=1)
        config = kafka_config(broker.address, topic)
        async with running(config, app, tmp_path / "w.journal") as run:
            produce(broker.address, topic, [(0, change(chosen[0]))])
            await eventually_async(
                lambda: (
                    state_in(app.world, chosen[0]) == "active" and run.service.health()["ready"]
                ),
                what="the change in Canvas, the service ready",
                abort_if=run.done_or_failed,
            )
            broker.stop()
            await eventually_async(
                lambda: run.named("source_unavailable"),
                what="the outage reported",
                timeout=60,
                abort_if=run.done_or_failed,
            )
            health = run.service.health()
            assert not health["ready"]
            assert health["live"]
            assert "kafka" in str(health["source_error"])
        # the block's end stopped the service while the broker was still gone
        assert run.task.result() == 0


async def test_brokers_unreachable_at_the_start_are_the_source_out(
    app: Simulator, tmp_path: Path
) -> None:
    from canvas_tui.simulator.testing import free_port

    config = kafka_config(f"127.0.0.1:{free_port()}", "enrollments")  # nothing listens there
    async with running(config, app, tmp_path / "w.journal") as run:
        await eventually_async(
            lambda: run.named("source_unavailable"),
            what="the brokers reported out",
            abort_if=run.done_or_failed,
        )
        assert "kafka 127.0.0.1:" in run.named("source_unavailable")[0]["message"]
        assert not run.service.health()["ready"]
    assert run.task.result() == 0
