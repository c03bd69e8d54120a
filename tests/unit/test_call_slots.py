"""``CallSlots``: at most ``limit`` calls at once; a free slot to the client with the fewest calls so
far; nobody passed over more than ``max_bypass`` times; cancellation never loses a slot."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.messaging.slots import CallSlots


async def _queue_behind(slots: CallSlots, clients: list[str], order: list[str]) -> list[asyncio.Task[None]]:
    """One task per client, started in this order, each recording its client in ``order`` when it
    gets a slot and holding it for one turn of the loop."""

    async def call(client: str) -> None:
        async with slots.slot(client):
            order.append(client)
            await asyncio.sleep(0)

    tasks = []
    for client in clients:
        tasks.append(asyncio.create_task(call(client)))
        await asyncio.sleep(0)  # in this order
    return tasks


def test_the_client_with_fewest_calls_goes_first() -> None:
    async def scenario() -> list[str]:
        slots = CallSlots(1)
        order: list[str] = []
        for _ in range(3):  # "busy" has had three calls
            async with slots.slot("busy"):
                pass
        async with slots.slot("holder"):  # holds the one slot while the others queue
            tasks = await _queue_behind(slots, ["busy", "new", "busy2"], order)
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == ["new", "busy2", "busy"]


def test_equals_go_in_arrival_order() -> None:
    async def scenario() -> list[str]:
        slots = CallSlots(1)
        order: list[str] = []
        async with slots.slot("holder"):
            tasks = await _queue_behind(slots, ["a", "b", "c", "d"], order)
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == ["a", "b", "c", "d"]


def test_a_waiter_passed_over_max_bypass_times_goes_next() -> None:
    async def scenario() -> list[str]:
        slots = CallSlots(1, max_bypass=2)
        order: list[str] = []
        for _ in range(5):
            async with slots.slot("busy"):
                pass
        async with slots.slot("holder"):
            tasks = await _queue_behind(slots, ["busy", "n1", "n2", "n3", "n4"], order)
        await asyncio.gather(*tasks)
        return order

    # "busy" (five calls) sees n1 and n2 served, then goes before n3 and n4.
    assert asyncio.run(scenario()) == ["n1", "n2", "busy", "n3", "n4"]


def test_a_cancelled_waiter_gives_no_slot_away_and_loses_none() -> None:
    async def scenario() -> tuple[list[str], int]:
        slots = CallSlots(1)
        order: list[str] = []
        async with slots.slot("holder"):
            tasks = await _queue_behind(slots, ["a", "b"], order)
            tasks[0].cancel()
            await asyncio.sleep(0)
        await asyncio.gather(*tasks, return_exceptions=True)
        async with slots.slot("after"):  # the slot came back
            order.append("after")
        return order, slots._free

    assert asyncio.run(scenario()) == (["b", "after"], 1)


def test_a_waiter_cancelled_as_it_is_given_the_slot_passes_it_on() -> None:
    async def scenario() -> list[str]:
        slots = CallSlots(1)
        order: list[str] = []
        async with slots.slot("holder"):
            tasks = await _queue_behind(slots, ["a", "b"], order)
        tasks[0].cancel()  # "a" was handed the slot on release, but has not run yet
        await asyncio.gather(*tasks, return_exceptions=True)
        return order

    assert asyncio.run(scenario()) == ["b"]


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        CallSlots(0)


@settings(max_examples=150, deadline=None)
@given(
    limit=st.integers(1, 4),
    calls=st.lists(st.tuples(st.sampled_from("abcde"), st.integers(0, 3), st.booleans()), max_size=30),
)
def test_never_more_than_the_limit_and_every_call_finishes(
    limit: int, calls: list[tuple[str, int, bool]]
) -> None:
    """Any mix of clients, hold times and cancellations: at most ``limit`` hold a slot at once, every
    call not cancelled gets one, and at the end every slot is free again."""

    async def scenario() -> tuple[int, int, int]:
        slots = CallSlots(limit, max_bypass=3)
        holding = peak = done = 0

        async def call(client: str, ticks: int) -> None:
            nonlocal holding, peak, done
            async with slots.slot(client):
                holding += 1
                peak = max(peak, holding)
                try:
                    for _ in range(ticks):
                        await asyncio.sleep(0)
                finally:
                    holding -= 1
            done += 1

        tasks = [asyncio.create_task(call(client, ticks)) for client, ticks, _ in calls]
        await asyncio.sleep(0)
        for task, (_, _, cancel) in zip(tasks, calls, strict=True):
            if cancel and not task.done():
                task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        cancelled = sum(isinstance(r, asyncio.CancelledError) for r in results)
        assert done + cancelled == len(calls)
        return peak, slots._free, done

    peak, free, _ = asyncio.run(scenario())
    assert peak <= limit
    assert free == limit
