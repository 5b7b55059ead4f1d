"""The suite's two waits say what they waited for when they fail, and end as soon as they can."""

from __future__ import annotations

import itertools

import pytest

from tests.helpers import eventually, eventually_async, never_within, never_within_async


def test_eventually_returns_the_first_true_value() -> None:
    counter = itertools.count()
    assert eventually(lambda: next(counter) >= 3 and "ready", what="three looks", interval=0) == (
        "ready"
    )


def test_eventually_names_what_it_waited_for_and_the_state() -> None:
    with pytest.raises(
        AssertionError, match=r"timed out after 0.05s waiting for the moon; state: 7"
    ):
        eventually(lambda: False, what="the moon", timeout=0.05, detail=lambda: 7)


def test_eventually_gives_up_at_once_when_told_why() -> None:
    with pytest.raises(AssertionError, match=r"gave up waiting for the moon .*: the sky fell"):
        eventually(lambda: False, what="the moon", timeout=30, abort_if=lambda: "the sky fell")


def test_never_within_fails_when_the_thing_happens() -> None:
    counter = itertools.count()
    with pytest.raises(AssertionError, match=r"a third look happened after .*must not within 5s"):
        never_within(lambda: next(counter) >= 2, 5, what="a third look", interval=0)
    never_within(lambda: False, 0.05, what="nothing")


async def test_the_async_waits_behave_the_same() -> None:
    counter = itertools.count()
    assert await eventually_async(lambda: next(counter) >= 2, what="two looks", interval=0)
    with pytest.raises(AssertionError, match="waiting for the moon"):
        await eventually_async(lambda: None, what="the moon", timeout=0.05)
    await never_within_async(lambda: False, 0.05, what="nothing")
    with pytest.raises(AssertionError, match="something happened"):
        await never_within_async(lambda: True, 5, what="something")
