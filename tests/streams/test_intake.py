"""The intake hands the storer everything that arrived, a batch at a time, and bounds it."""

from __future__ import annotations

import asyncio

import pytest

from streams.intake import Intake, IntakeClosed


async def test_a_batch_is_everything_buffered_up_to_the_batch_size_in_order() -> None:
    intake: Intake[int] = Intake(batch_size=3, capacity=10)
    for item in range(5):
        await intake.put(item)
    assert await intake.take() == [0, 1, 2]
    assert await intake.take() == [3, 4]


async def test_take_waits_for_the_first_item_and_returns_it_alone() -> None:
    intake: Intake[int] = Intake(batch_size=100, capacity=100)
    taking = asyncio.create_task(intake.take())
    await asyncio.sleep(0.01)
    assert not taking.done()
    await intake.put(7)
    assert await asyncio.wait_for(taking, 1) == [7]


async def test_a_full_intake_holds_the_reader_until_a_batch_is_taken() -> None:
    intake: Intake[int] = Intake(batch_size=2, capacity=2)
    await intake.put(1)
    await intake.put(2)
    putting = asyncio.create_task(intake.put(3))
    await asyncio.sleep(0.01)
    assert not putting.done() and len(intake) == 2
    assert await intake.take() == [1, 2]
    await asyncio.wait_for(putting, 1)
    assert await intake.take() == [3]


async def test_closing_wakes_a_waiting_reader_and_refuses_more() -> None:
    intake: Intake[int] = Intake(batch_size=1, capacity=1)
    await intake.put(1)
    putting = asyncio.create_task(intake.put(2))
    await asyncio.sleep(0.01)
    intake.close()
    with pytest.raises(IntakeClosed):
        await asyncio.wait_for(putting, 1)
    with pytest.raises(IntakeClosed):
        await intake.put(3)


def test_capacity_below_a_batch_is_a_mistake() -> None:
    with pytest.raises(ValueError):
        Intake(batch_size=10, capacity=5)
