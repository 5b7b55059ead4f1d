"""`canvas-tui watch` on a Kafka topic (`[source] kind = "kafka"`): a consumer in a group whose
committed offsets follow the journal's outcomes.

Delivery is at least once, which is right for an API whose writes are idempotent (Canvas's
enrollment create finds the same row again; an end looks the enrollment up first):

- A read takes the messages the consumer has fetched (aiokafka fetches in the background), turns
  each into a record or a problem (sources/messages.py) and hands them to the service as one
  batch. Its cursor is the position reached in each partition (`{"0": 58}`: offsets below 58
  are in the journal). The service commits the batch's records, the snapshot and that cursor
  in one journal transaction (engine/watch.py), so a message is journaled once: a message
  delivered again below the journal's position (after a restart, a rebalance) is skipped, and
  its change is the one already journaled (pending and resumed, or finished).
- The group's offset in a partition is committed to Kafka only once every message before it has
  its outcome in the journal (done, failed or skipped): it is the offset of the first message
  whose record is still pending or in flight, else the journal's position. A crash at any
  moment, SIGKILL included, redelivers every message whose outcome was not journaled; the
  consumer group's lag is the changes not yet settled in Canvas.
- A batch the journal did not take (a write failed) is read again: the consumer seeks back to
  the journal's position before the next read.
- A topic deleted and created again starts its offsets at 0: a partition whose end offset is
  below the journal's position is read from the start again, with a warning.

The consumer runs on an event loop of its own, in a daemon thread: the service's reads happen
in worker threads (engine/watch.py), and the group's heartbeats do not wait on the service.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from canvas_tui.config import CsvMode, SourceConfig
from canvas_tui.engine.journal import Journal
from canvas_tui.engine.watch_sources import Batch, Keep, WatchState, decode_cursor, encode_cursor
from canvas_tui.records import InputError, Source, SourceItem, State
from canvas_tui.sources import layout_of
from canvas_tui.sources.messages import message_item, message_source

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_RECORDS = 2000  # messages in one batch (one journal transaction)
START_TIMEOUT = 60.0  # joining the group: the broker's rebalance delay is a few seconds
CALL_TIMEOUT = 10.0
# The consumer reconnects by itself and a fetch from a broker that is gone just returns nothing:
# every PROBE_EVERY seconds a read asks the partitions' leaders for their end offsets, so a
# broker outage is the source being out (`source_unavailable`, /readyz 503), not silence.
PROBE_EVERY = 5.0
_UNSETTLED = (State.PENDING.value, State.IN_FLIGHT.value)

Message = tuple[int, int, bytes | None]  # partition, offset, value


def positions_of(cursor: object) -> dict[int, int]:
    """The journal's position per partition, from the watch cursor (a JSON object as text)."""
    if not isinstance(cursor, str) or not cursor:
        return {}
    try:
        data = json.loads(cursor)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {int(p): int(o) for p, o in data.items()}


def _cursor_text(positions: Mapping[int, int]) -> str:
    return json.dumps({str(p): o for p, o in sorted(positions.items())})


class TopicPoller:
    """The watch service's poller for a topic (engine/watch_sources.py `Poller`, plus `acknowledge`
    and `close`, which the service calls for a source that wants them)."""

    def __init__(self, spec: SourceConfig, *, max_records: int = MAX_RECORDS) -> None:
        if not spec.brokers or not spec.topic:
            raise InputError("a kafka source needs [source] brokers and topic")
        try:
            import aiokafka  # noqa: F401 -- an optional extra: say so now, not at the first read
        except ImportError:
            raise InputError(
                "a kafka source needs aiokafka: pip install 'canvas-tui[kafka]'"
            ) from None
        self.brokers = spec.brokers
        self.topic = spec.topic
        self.group = spec.group
        self.layout = layout_of(spec)
        self.max_records = max_records
        self.description = f"kafka:{spec.topic} (group {spec.group})"
        # a message is one change: nothing drops for its absence
        self.csv_mode: CsvMode | None = None
        self.redelivered = 0  # messages skipped because the journal holds them already
        self.committed: dict[int, int] = {}  # partition -> the offset last committed to Kafka
        self._handed: dict[int, int] = {}  # partition -> next offset after the last batch read
        self._checked: set[int] = set()  # partitions whose end offset was held against the journal
        self._consumer: Any = None
        self._probed = 0.0  # when the brokers last answered a probe (monotonic)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()

    # ---- the consumer's own loop ----------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run `coro` on the consumer's loop and wait for it (from any other thread)."""
        with self._guard:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="kafka", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            loop = self._loop
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise InputError(
                f"kafka {','.join(self.brokers)}: no answer within {timeout:.0f} s"
            ) from None

    async def _started(self) -> Any:
        if self._consumer is not None:
            return self._consumer
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=list(self.brokers),
            group_id=self.group,
            client_id="canvas-tui",
            enable_auto_commit=False,  # offsets follow the journal's outcomes (acknowledge)
            auto_offset_reset="earliest",  # a new group reads what the topic retains
            isolation_level="read_committed",  # a producer's aborted transaction is no change
        )
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._checked.clear()
        return consumer

    def _kafka(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        """`_call`, with Kafka's errors as the source being out (the service backs off)."""
        from aiokafka.errors import KafkaError

        try:
            return self._call(coro, timeout)
        except (KafkaError, OSError) as exc:
            raise InputError(f"kafka {','.join(self.brokers)}: {exc}") from None

    # ---- reading ----------------------------------------------------------------------------

    async def _fetch(self, positions: dict[int, int]) -> tuple[list[Message], set[int]]:
        """(consumer loop) The next messages, and the partitions whose journal position no
        longer fits the topic (it was created again)."""
        from aiokafka import TopicPartition

        consumer = await self._started()
        assigned = consumer.assignment()
        for tp in assigned:
            handed = self._handed.pop(tp.partition, None)
            at = positions.get(tp.partition)
            if handed is not None and handed > (at if at is not None else -1):
                # the last batch never reached the journal: read it again
                if at is None:
                    await consumer.seek_to_committed(tp)
                else:
                    consumer.seek(tp, at)
        reset: set[int] = set()
        fresh = [tp for tp in assigned if tp.partition not in self._checked]
        if fresh:
            ends = await consumer.end_offsets(fresh)
            for tp in fresh:
                self._checked.add(tp.partition)
                at = positions.get(tp.partition)
                if at is not None and ends[tp] < at:
                    reset.add(tp.partition)
                    await consumer.seek_to_beginning(tp)
        now = time.monotonic()
        if assigned and now - self._probed >= PROBE_EVERY:
            await asyncio.wait_for(consumer.end_offsets(list(assigned)), CALL_TIMEOUT)
            self._probed = now
        fetched = await consumer.getmany(timeout_ms=0, max_records=self.max_records)
        messages: list[Message] = []
        for tp, batch in fetched.items():
            assert isinstance(tp, TopicPartition)
            messages.extend((tp.partition, m.offset, m.value) for m in batch)
        return messages, reset

    def read(self, state: WatchState, keep: Keep) -> Batch | None:
        positions = positions_of(state.cursor)
        messages, reset = self._kafka(self._fetch(dict(positions)), START_TIMEOUT)
        for partition in reset:
            log.warning(
                "kafka topic %s partition %d ends below the journal's position %d: the topic "
                "was created again; reading it from the start",
                self.topic,
                partition,
                positions.pop(partition),
            )
        items: list[SourceItem] = []
        first: dict[int, int] = {}
        redelivered = 0
        for partition, offset, value in messages:
            self._handed[partition] = offset + 1
            if offset < positions.get(partition, -1):
                redelivered += 1  # journaled already, before a restart or a rebalance
                continue
            first.setdefault(partition, offset)
            positions[partition] = offset + 1
            item = message_item(value, message_source(self.topic, partition), offset, self.layout)
            if keep(item):
                items.append(item)
        if redelivered:
            self.redelivered += redelivered
            log.warning(
                "kafka: %d message(s) of %s delivered again were journaled before (a restart "
                "or a rebalance): skipped, their changes are the journaled ones",
                redelivered,
                self.topic,
            )
        if not first and not reset:
            return None
        span = ", ".join(f"{p}:{o}-{positions[p] - 1}" for p, o in sorted(first.items()))
        what = f"messages {span or '(none)'}"
        if redelivered:
            what += f" ({redelivered} redelivered, journaled before)"
        return Batch(items, False, what, {"watch_cursor": encode_cursor(_cursor_text(positions))})

    def whole(self) -> Source | None:
        """A stream has no whole to compare with Canvas: the drift check says so."""
        return None

    def check(self) -> None:
        """Brokers that do not answer at start are waited out, as later (the config was checked
        when this was made)."""

    # ---- committing -----------------------------------------------------------------------

    async def acknowledge(self, store: Journal) -> dict[int, int]:
        """Commit to Kafka, per partition, the offset before which every message has its
        outcome in the journal. Returns what was committed now."""
        if self._consumer is None:
            return {}
        topic = self.topic

        def settled(conn: sqlite3.Connection) -> dict[int, int]:
            found = conn.execute("SELECT value FROM meta WHERE key = 'watch_cursor'").fetchone()
            if found is None:
                return {}
            positions = positions_of(decode_cursor(str(found[0])))
            # the first message of each partition whose record has no outcome yet
            for name, line in conn.execute(
                "SELECT s.name, MIN(r.line) FROM records r JOIN sources s ON s.id = r.source_id "
                "WHERE r.state IN (?, ?) GROUP BY r.source_id",
                _UNSETTLED,
            ):
                head, _, partition = str(name).rpartition(":")
                if head == topic and partition.isdigit() and int(partition) in positions:
                    positions[int(partition)] = min(positions[int(partition)], int(line))
            return positions

        targets = await store.write(settled)
        due = {p: o for p, o in targets.items() if o > self.committed.get(p, -1)}
        if not due:
            return {}
        loop = self._loop
        assert loop is not None
        future = asyncio.run_coroutine_threadsafe(self._commit(due), loop)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), CALL_TIMEOUT)
        except TimeoutError:  # the brokers are away: the next poll commits again
            log.warning("kafka: committing offsets got no answer; trying again")
            return {}

    async def _commit(self, due: dict[int, int]) -> dict[int, int]:
        """(consumer loop) Commit the offsets of the partitions this member holds."""
        from aiokafka import TopicPartition
        from aiokafka.errors import KafkaError

        consumer = self._consumer
        if consumer is None:
            return {}
        assigned = {tp.partition for tp in consumer.assignment()}
        offsets = {TopicPartition(self.topic, p): o for p, o in due.items() if p in assigned}
        if not offsets:
            return {}
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:  # a rebalance under way: the next poll commits again
            log.warning("kafka: committing offsets failed (%s); trying again", exc)
            return {}
        done = {tp.partition: o for tp, o in offsets.items()}
        self.committed.update(done)
        return done

    def close(self) -> None:
        """Leave the group (its partitions go to another member at once) and stop the loop."""
        loop, thread = self._loop, self._thread
        if loop is None:
            return
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                asyncio.run_coroutine_threadsafe(consumer.stop(), loop).result(CALL_TIMEOUT)
            except Exception:  # a broker gone: the group forgets this member by itself
                log.debug("kafka: leaving the group failed", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(CALL_TIMEOUT)
        loop.close()
        self._loop = self._thread = None
