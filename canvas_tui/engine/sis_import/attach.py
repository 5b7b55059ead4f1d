"""Wiring the SIS import channel into a run: after a plan is queued (`use_channel`), and when a
journal with an unfinished import is resumed (`resume_imports`)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from canvas_tui.canvas.client import CanvasClient
from canvas_tui.config import Config
from canvas_tui.engine.estimate import DEFAULT_COST, DEFAULT_LATENCY, Bucket
from canvas_tui.engine.journal import Journal, JournalError
from canvas_tui.engine.plan.diff import Plan
from canvas_tui.engine.runner import Runner
from canvas_tui.engine.sis_import.channel import (
    Collector,
    ImportOptions,
    Prepared,
    SisImportChannel,
    change_threshold,
    create,
    prepare,
)
from canvas_tui.engine.sis_import.choose import Choice, ImportModel, RestModel, choose_channel
from canvas_tui.records import State


class ChannelSession(Protocol):
    config: Config
    client: CanvasClient | None
    store: Journal
    runner: Runner


def options_of(config: Config) -> ImportOptions:
    sis = config.sis_import
    return ImportOptions(
        account=sis.account,
        change_threshold=change_threshold(config.plan.brake_max_share),
        poll_min=sis.poll_min,
        poll_max=max(sis.poll_min, sis.poll_max),
        find_wait=sis.find_wait,
    )


def models(session: ChannelSession, plan: Plan | None) -> tuple[RestModel, ImportModel]:
    """REST's model from what the plan's reads measured; the import's from the config."""
    client = session.client
    assert client is not None, "a writable session"
    governor = client.governor.state()
    latency = plan.read_latency if plan is not None and plan.read_latency else DEFAULT_LATENCY
    cost = governor.average_cost if governor.average_cost is not None else DEFAULT_COST
    rest = RestModel(latency=latency, cost=cost, bucket=Bucket(leak=governor.leak))
    sis = session.config.sis_import
    return rest, ImportModel(sis.rows_per_second, sis.start_seconds)


async def use_channel(
    session: ChannelSession,
    plan: Plan,
    via: str,
    *,
    collected: Collector | None = None,
    changed: Iterable[int] = (),
) -> Choice:
    """Split the queued plan's pending records between an import and REST and, when the
    import is chosen (`via`: sis-import, or auto and faster), keep its file in the journal and
    add the channel to the runner. Returns the choice and why. `collected`: the file as the
    plan wrote it (else it is written from the journal's pending records); `changed`: source
    positions whose row changed since the plan."""
    client = session.client
    assert client is not None, "a writable session"
    sync = session.config.sync
    store = session.store

    def from_journal() -> Prepared:
        return prepare(
            store.iter_records(State.PENDING),
            plan,
            active_state=sync.enrollment_state,
            notify=sync.notify,
        )

    if collected is not None:
        prepared = collected.finish(changed, len(plan.drops))
    else:
        prepared = await asyncio.to_thread(from_journal)
    choice = _choose(session, plan, via, prepared)
    if choice.via == "sis-import":
        try:
            await create(store, prepared)
        except JournalError:
            if collected is None:
                raise
            # the journal's records are not the plan's positions after all (it cannot happen
            # for a fresh load; never guess): write the file from the journal instead
            prepared = await asyncio.to_thread(from_journal)
            await create(store, prepared)
        session.runner.reload_counts()
        session.runner.add_channel(
            SisImportChannel(
                store,
                client,
                session.runner,
                options_of(session.config),
                rest_records=prepared.rest,
            )
        )
        store.set_meta(via="sis-import")
        if prepared.rest:
            choice = Choice(
                choice.via,
                f"{choice.why} (by REST: {prepared.rest_summary()})",
                choice.rest_seconds,
                choice.import_seconds,
                choice.crossover,
            )
    return choice


def preview_channel(session: ChannelSession, plan: Plan, via: str, collected: Collector) -> Choice:
    """The channel `start_early` takes for this plan (the same figures; nothing is kept or
    uploaded), so the plan screen can say it before Apply."""
    # what `finish((), drops)` makes of it, without changing it: the drops go by REST
    return _choose(session, plan, via, collected.prepared, rest_also=len(plan.drops))


def _choose(
    session: ChannelSession, plan: Plan, via: str, prepared: Prepared, rest_also: int = 0
) -> Choice:
    rest, imp = models(session, plan)
    return choose_channel(
        via,
        rows=len(prepared.file),
        requests=prepared.requests,
        rest=rest,
        imp=imp,
        rest_only=prepared.rest + rest_also,
    )


@dataclass(slots=True)
class Early:
    """The channel chosen before the journal is loaded, and the import it uploads meanwhile."""

    choice: Choice
    channel: SisImportChannel | None = None  # None: REST was chosen
    import_id: int | None = None


async def start_early(
    session: ChannelSession, plan: Plan, via: str, collected: Collector | None
) -> Early | None:
    """Before the load: choose the channel from the file the plan wrote and, for an import,
    keep the file and start its upload, so Canvas imports while the journal loads. A journal
    that already holds an unfinished import (a run stopped before its load ended) keeps that
    one: it is never uploaded again. None: decide after the load (`use_channel`)."""
    client = session.client
    assert client is not None, "a writable session"
    store = session.store
    options = options_of(session.config)
    unfinished = next((i for i in store.imports() if i.state != "finished"), None)
    if unfinished is not None:
        channel = SisImportChannel(store, client, session.runner, options)
        channel.start_upload()
        what = (
            f"SIS import {unfinished.sis_import_id}"
            if unfinished.sis_import_id is not None
            else f"the SIS import {unfinished.filename}"
        )
        why = f"SIS import: {what} of the stopped run stands ({unfinished.rows} rows); not uploaded again"
        return Early(Choice("sis-import", why, 0.0, 0.0, None), channel, unfinished.id)
    if collected is None:
        return None
    choice = preview_channel(session, plan, via, collected)
    prepared = collected.finish((), len(plan.drops))
    if choice.via != "sis-import":
        return Early(choice)
    import_id = await create(store, prepared, take=False)
    channel = SisImportChannel(store, client, session.runner, options, rest_records=prepared.rest)
    channel.start_upload()
    if prepared.rest:
        choice = Choice(
            choice.via,
            f"{choice.why} (by REST: {prepared.rest_summary()})",
            choice.rest_seconds,
            choice.import_seconds,
            choice.crossover,
        )
    return Early(choice, channel, import_id)


async def finish_early(session: ChannelSession, early: Early, changed: Iterable[int]) -> Choice:
    """After the load: the import's records go in flight (the rest stay for REST), and those
    whose source row changed since the plan are sent again by REST once the import settles."""
    if early.channel is None or early.import_id is None:
        return early.choice
    store = session.store
    await store.take_import_records(early.import_id)
    rows = set(store.import_rows(early.import_id).values())
    early.channel.requeue_after(rows & {position + 1 for position in changed})
    session.runner.reload_counts()
    session.runner.add_channel(early.channel)
    store.set_meta(via="sis-import")
    return early.choice


async def resume_imports(session: ChannelSession) -> str | None:
    """A resumed journal with an import that has not finished: poll it (or find its upload)
    rather than send its records again. Returns what the run will do, or None."""
    client = session.client
    unfinished = [i for i in session.store.imports() if i.state != "finished"]
    if client is None or not unfinished:
        return None
    for record in unfinished:  # a run stopped between its load and taking them
        await session.store.take_import_records(record.id)
    session.runner.reload_counts()
    session.runner.add_channel(
        SisImportChannel(session.store, client, session.runner, options_of(session.config))
    )
    first = unfinished[0]
    if first.sis_import_id is not None:
        return f"resuming: polling SIS import {first.sis_import_id} ({first.rows} rows); not uploaded again"
    if first.state == "uploading":
        return (
            f"resuming: the upload of {first.filename} may have reached Canvas; looking for it "
            "before anything is uploaded"
        )
    return f"resuming: uploading the SIS import of {first.rows} rows it had prepared"
