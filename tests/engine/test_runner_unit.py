"""The runner's state machine and commands, with an in-process executor (no HTTP at all).

Scenarios against the simulator and the real client live in test_runner_sim.py; these pin the
dispatch rules themselves: the in-flight bound, pause/resume, skip/retry, cancel and abort.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from canvas_tui.canvas.errors import CanvasError, Category
from canvas_tui.engine.actions import ActionResult, Observer
from canvas_tui.engine.journal import Journal
from canvas_tui.engine.runner import Runner
from canvas_tui.engine.state import Event as RunEvent
from canvas_tui.engine.state import GovernorState, Phase, RecordChanged, RunPhaseChanged, RunState
from canvas_tui.records import EnrollmentRecord, State
from tests.engine.helpers import items
from tests.helpers import eventually_async, never_within_async


class FixedGovernor:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self.cap: int | None = None

    @property
    def limit(self) -> int:
        return self._limit if self.cap is None else min(self._limit, self.cap)

    def set_cap(self, cap: int | None) -> None:
        self.cap = cap

    def state(self) -> GovernorState:
        return GovernorState(self.limit, 0, None, 600.0, None, self.cap)


class Scripted:
    """Answers per user: `fail` maps user number -> error; `hold` keeps records until released."""

    def __init__(self, fail: dict[int, CanvasError] | None = None, hold: bool = False) -> None:
        self.fail = dict(fail or {})
        self.hold = hold
        self.release = asyncio.Event()
        self.in_flight = 0
        self.max_in_flight = 0
        self.sent: list[int] = []

    async def apply(self, record: EnrollmentRecord, observer: Observer | None) -> ActionResult:
        n = int(record.user.split(":U")[1])
        self.sent.append(n)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.hold:
                await self.release.wait()
            else:
                await asyncio.sleep(0.001)
            if n in self.fail:
                raise self.fail[n]
            return ActionResult("create", 1000 + n)
        finally:
            self.in_flight -= 1


async def test_every_record_ends_and_counts_reconcile(journal: Journal) -> None:
    journal.load(items(60, bad_every=7), description="in.csv")
    not_found = CanvasError(Category.USER_NOT_FOUND, "The specified resource does not exist.", 404)
    executor = Scripted(fail={3: not_found, 5: not_found})
    runner = Runner(journal, executor, FixedGovernor(4))
    events: list[RunEvent] = []
    runner.subscribe(events.append)
    state = await runner.run()
    assert state.phase == Phase.FINISHED
    assert state.counts[State.DONE] == 60 - 8 - 2
    assert state.counts[State.FAILED] == 8 + 2
    assert state.counts[State.PENDING] == state.counts[State.IN_FLIGHT] == 0
    assert state.total == 60 == state.finished
    assert state.failures_by_category == {"invalid_input": 8, "user_not_found": 2}
    assert executor.max_in_flight <= 4
    assert sorted(executor.sent) == [n for n in range(1, 61) if n % 7]
    row = journal.get(1)
    assert row is not None
    assert row.canvas_enrollment_id == 1001
    assert row.action == "create"
    assert any(isinstance(e, RecordChanged) and e.state == State.DONE for e in events)
    assert isinstance(events[-1], RunPhaseChanged)
    assert events[-1].phase == Phase.FINISHED


async def test_pause_stops_dispatch_and_resume_continues(journal: Journal) -> None:
    journal.load(items(20), description="in.csv")
    executor = Scripted(hold=True)
    runner = Runner(journal, executor, FixedGovernor(3))
    task = asyncio.create_task(runner.run())
    await eventually_async(lambda: executor.in_flight == 3, what="three records in flight")
    runner.pause()
    assert runner.snapshot().phase == Phase.PAUSED
    executor.release.set()  # in-flight records finish...
    await eventually_async(
        lambda: runner.snapshot().counts[State.DONE] == 3, what="the three in flight done"
    )
    # ...and nothing new goes out while paused
    await never_within_async(lambda: len(executor.sent) > 3, 0.2, what="a send while paused")
    # send_one dispatches exactly one record while paused
    assert runner.send_one()
    await eventually_async(
        lambda: runner.snapshot().counts[State.DONE] == 4, what="the one record sent done"
    )
    await never_within_async(
        lambda: len(executor.sent) > 4, 0.1, what="a second send after send_one"
    )
    assert runner.send_one(20)
    await eventually_async(lambda: 20 in executor.sent, what="record 20 sent")
    runner.resume()
    state = await asyncio.wait_for(task, 5)
    assert state.phase == Phase.FINISHED
    assert state.counts[State.DONE] == 20
    assert sorted(executor.sent) == list(range(1, 21))


async def test_a_pause_while_a_batch_is_being_claimed_sends_none_of_it(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim is written before requests go out; an operator's pause that lands during that
    write must hold the batch back, not let it go out after "Paused" was shown."""
    journal.load(items(10), description="in.csv")
    executor = Scripted()
    runner = Runner(journal, executor, FixedGovernor(4))
    real_claim = journal.claim

    async def claim_then_pause(ids: list[int]) -> list[int]:
        claimed = await real_claim(ids)
        runner.pause()  # the key press arrives while the claim commits
        return claimed

    monkeypatch.setattr(journal, "claim", claim_then_pause)
    task = asyncio.create_task(runner.run())
    await eventually_async(lambda: runner.snapshot().phase == Phase.PAUSED, what="the pause")
    await never_within_async(lambda: executor.sent, 0.2, what="a send of the claimed batch")
    counts = runner.snapshot().counts
    assert counts[State.PENDING] == 10 and counts[State.IN_FLIGHT] == 0
    assert journal.counts()[State.IN_FLIGHT] == 0  # the claims were given back
    monkeypatch.setattr(journal, "claim", real_claim)
    runner.resume()
    state = await asyncio.wait_for(task, 5)
    assert state.counts[State.DONE] == 10
    assert executor.sent[:4] == [1, 2, 3, 4]  # the held-back batch goes first, in order


async def test_skip_retry_and_retry_failed_by_category(journal: Journal) -> None:
    journal.load(items(10), description="in.csv")
    executor = Scripted(
        fail={
            2: CanvasError(
                Category.CONCLUDED, "Can't add an enrollment to a concluded course.", 400
            ),
            3: CanvasError(Category.USER_NOT_FOUND, "not found", 404),
            4: CanvasError(Category.USER_NOT_FOUND, "not found", 404),
        }
    )
    runner = Runner(journal, executor, FixedGovernor(2))
    runner.pause()  # nothing goes out until resumed: skip while still pending
    assert runner.skip(9)
    assert not runner.skip(9)  # already final
    runner.resume()
    state = await runner.run()
    assert state.counts == {
        State.PENDING: 0,
        State.IN_FLIGHT: 0,
        State.DONE: 6,
        State.FAILED: 3,
        State.SKIPPED: 1,
    }
    assert 9 not in executor.sent
    assert not runner.skip(1)  # done records cannot be skipped
    # The operator fixed the users: retry that category only.
    executor.fail.pop(3)
    executor.fail.pop(4)
    assert runner.retry_failed("user_not_found") == 2
    assert runner.retry(9)
    assert not runner.retry(1)
    state = await runner.run()
    assert state.counts[State.DONE] == 9
    assert state.failures_by_category == {"concluded_course": 1}
    assert journal.failed_ids() == [2]
    assert sorted(executor.sent) == [1, 2, 3, 3, 4, 4, 5, 6, 7, 8, 9, 10]


async def test_enqueue_requeues_any_final_record_even_done(journal: Journal) -> None:
    journal.load(items(4, bad_every=4), description="in.csv")
    executor = Scripted(fail={2: CanvasError(Category.USER_NOT_FOUND, "not found", 404)})
    runner = Runner(journal, executor, FixedGovernor(2))
    state = await runner.run()
    assert state.counts[State.DONE] == 2 and state.counts[State.FAILED] == 2
    assert not runner.retry(1)  # a plain retry leaves DONE alone...
    assert runner.enqueue([1]) == 1  # ...enqueue sends it again (its enrollment is gone)
    assert runner.enqueue([2]) == 1  # failed, too
    assert runner.enqueue([1]) == 0  # already pending
    assert runner.enqueue([4]) == 0  # the source row is invalid: it needs an edit, not a resend
    assert runner.snapshot().counts[State.PENDING] == 2
    state = await runner.run()
    assert state.counts[State.DONE] == 2 and state.counts[State.FAILED] == 2
    assert state.counts[State.PENDING] == 0
    assert sorted(executor.sent) == [1, 1, 2, 2, 3]


async def test_enqueue_takes_many_records_in_one_command(journal: Journal) -> None:
    journal.load(items(4, bad_every=4), description="in.csv")
    executor = Scripted(fail={2: CanvasError(Category.USER_NOT_FOUND, "not found", 404)})
    runner = Runner(journal, executor, FixedGovernor(2))
    await runner.run()
    # done, failed, invalid and unknown ids in one batch: only the sendable final ones move
    assert runner.enqueue([1, 2, 4, 99]) == 2
    assert runner.enqueue([1, 2]) == 0  # already pending
    assert runner.enqueue([]) == 0
    assert runner.snapshot().counts[State.PENDING] == 2
    await runner.run()
    assert sorted(executor.sent) == [1, 1, 2, 2, 3]


async def test_cap_is_passed_to_the_governor_and_bounds_dispatch(journal: Journal) -> None:
    journal.load(items(30), description="in.csv")
    executor = Scripted()
    governor = FixedGovernor(8)
    runner = Runner(journal, executor, governor)
    runner.set_concurrency_cap(2)
    assert governor.cap == 2
    await runner.run()
    assert executor.max_in_flight <= 2
    runner.set_concurrency_cap(None)
    assert governor.cap is None


async def test_fatal_error_aborts_and_leaves_the_rest_pending(journal: Journal) -> None:
    journal.load(items(50), description="in.csv")
    executor = Scripted(fail={5: CanvasError(Category.AUTH, "Invalid access token.", 401)})
    runner = Runner(journal, executor, FixedGovernor(1))
    state = await runner.run()
    assert state.phase == Phase.ABORTED
    assert state.abort_reason is not None
    assert "Invalid access token" in state.abort_reason
    assert state.counts[State.DONE] == 4
    assert state.counts[State.PENDING] == 46  # record 5 included: resumable
    assert state.counts[State.FAILED] == 0
    # Resuming with a good token finishes the rest.
    executor.fail.clear()
    state = await runner.run()
    assert state.phase == Phase.FINISHED
    assert state.counts[State.DONE] == 50


async def test_cancel_waits_for_in_flight_and_retry_sleep_stops(journal: Journal) -> None:
    journal.load(items(10), description="in.csv")

    class Retrying(Scripted):
        async def apply(self, record: EnrollmentRecord, observer: Observer | None) -> ActionResult:
            self.sent.append(int(record.user.split(":U")[1]))
            await runner.gate.sleep(30)  # a long retry wait the operator cuts short
            return ActionResult("create", 1)

    executor = Retrying()
    runner = Runner(journal, executor, FixedGovernor(3))
    task = asyncio.create_task(runner.run())
    await eventually_async(lambda: len(executor.sent) == 3, what="three records sent")
    runner.cancel()
    state = await asyncio.wait_for(task, 5)
    assert state.phase == Phase.CANCELLED
    assert state.counts[State.PENDING] == 10
    assert state.counts[State.IN_FLIGHT] == 0


async def test_resume_resends_in_flight_records_only(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    j = Journal(path)
    j.load(items(6), description="in.csv")
    await j.claim([1, 2])  # as if a crash happened while 1 and 2 were in flight
    j.transition([3], State.DONE, only_from=[State.PENDING])
    await j.flush()
    j.close()
    j = Journal(path)
    executor = Scripted()
    state = await Runner(j, executor, FixedGovernor(4)).run()
    assert sorted(executor.sent) == [1, 2, 4, 5, 6]
    assert state.counts[State.DONE] == 6
    j.close()


async def test_edit_and_retry_renormalizes_the_row(journal: Journal) -> None:
    journal.load(items(3, bad_every=3), description="in.csv")
    executor = Scripted()
    runner = Runner(journal, executor, FixedGovernor(2))
    await runner.run()
    row = journal.get(3)
    assert row is not None and row.state == State.FAILED
    assert not runner.retry(3)  # a row the source rejected cannot be re-sent as it is
    assert runner.retry_failed() == 0
    assert not runner.edit_and_retry(3, {"status": "still-bogus"})
    assert runner.edit_and_retry(3, {"status": "active"})
    state = await runner.run()
    assert state.counts[State.DONE] == 3
    record = journal.record(3)
    assert record is not None and record.status == "active"


class AnsweringGovernor(FixedGovernor):
    """A governor whose limit only an answer raises (the bucket has leaked empty)."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.reads = 0
        self.leaks = False
        self.listeners: list[Callable[[], None]] = []

    @property
    def limit(self) -> int:
        self.reads += 1
        return self._limit

    def refill_wait(self) -> float:
        return 1.5  # what an empty bucket with every place taken reports: no leak helps

    def leak_raises_limit(self) -> bool:
        return self.leaks

    def listen(self, callback: Callable[[], None]) -> Callable[[], None]:
        self.listeners.append(callback)
        return lambda: self.listeners.remove(callback)

    def answer(self, limit: int) -> None:
        self._limit = limit
        for listener in list(self.listeners):
            listener()


async def _every_place_taken(
    journal: Journal,
) -> tuple[Scripted, AnsweringGovernor, asyncio.Task[RunState]]:
    """A run whose governor allows two in flight, both taken and held."""
    journal.load(items(6), description="in.csv")
    executor = Scripted(hold=True)
    governor = AnsweringGovernor(2)
    task = asyncio.create_task(Runner(journal, executor, governor).run())
    await eventually_async(lambda: executor.in_flight == 2, what="two records in flight")
    return executor, governor, task


async def _third_record_goes(
    executor: Scripted,
    governor: AnsweringGovernor,
    task: asyncio.Task[RunState],
    *,
    within: float,
) -> None:
    await eventually_async(lambda: executor.in_flight == 3, what="a third record", timeout=within)
    executor.release.set()
    state = await task
    assert state.phase == Phase.FINISHED and not governor.listeners


async def test_a_full_dispatcher_waits_for_answers_not_a_timer(journal: Journal) -> None:
    """Every place taken and nothing leaking: the dispatcher sleeps until an answer raises the
    limit (issue 14: it woke 4 times a second), and an answer that does wakes it at once."""
    executor, governor, task = await _every_place_taken(journal)
    reads = governor.reads
    await asyncio.sleep(0.6)  # at IDLE_POLL the dispatcher looked at the limit ~2 times
    assert governor.reads == reads
    governor.answer(2)  # an answer that leaves the limit as it was wakes nothing
    await asyncio.sleep(0.05)
    assert governor.reads == reads + 1  # (the listener's own look)
    governor.answer(3)
    await _third_record_goes(executor, governor, task, within=0.5)


async def test_an_answer_that_lets_the_leak_bind_brings_the_poll_back(journal: Journal) -> None:
    """The dispatcher slept on answers alone (the AIMD ceiling bound the limit); an answer that
    fills the bucket below that ceiling leaves the limit as it was, but from then on the leak
    raises it unannounced: the dispatcher must go back to polling, not sleep out SAFETY_POLL."""
    executor, governor, task = await _every_place_taken(journal)
    await asyncio.sleep(0.05)  # asleep on answers alone
    governor.leaks = True
    governor.answer(2)
    await asyncio.sleep(0.05)
    governor._limit = 3  # the leak, which no one announces
    await _third_record_goes(executor, governor, task, within=0.6)
