"""A pass's independent writes go out together, and a failure comes back as itself."""

from __future__ import annotations

import asyncio

import pytest

from keyplane.sources.kube import KubeError
from keyplane.writer.concurrency import concurrently


async def test_a_conflict_is_raised_as_itself_and_the_other_writes_stop() -> None:
    """The namespace writer retries a 409 at once and backs off on anything else: it must see the 409."""
    started = []

    async def write(item: int) -> None:
        started.append(item)
        if item == 0:
            raise KubeError(409, "conflict")
        await asyncio.sleep(10)

    with pytest.raises(KubeError) as raised:
        await asyncio.wait_for(concurrently(*(write(item) for item in range(5))), timeout=5)
    assert raised.value.status == 409 and len(started) == 5


async def test_configuration_writes_finish_before_the_caller_goes_on() -> None:
    order: list[str] = []

    async def write(name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        order.append(name)

    await concurrently(write("configmaps", 0.01), write("bundle", 0.0))
    order.append("statuses")
    assert order == ["bundle", "configmaps", "statuses"]
