"""Admission across namespaces (sources/fairness.py): fewest waiting first, so a burst in one namespace cannot
make another's few requests wait behind it."""

from __future__ import annotations

import asyncio

import pytest

from keyplane.sources.fairness import FairGate, FairQueue


def test_the_key_with_fewest_waiting_goes_first_and_each_key_stays_fifo() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(4):
        queue.push("burst", f"b{i}")
    queue.push("probe", "p0")
    queue.push("other", "o0")
    queue.push("probe", "p1")
    order = [queue.pop() for _ in range(len(queue))]
    assert order == ["o0", "p0", "p1", "b0", "b1", "b2", "b3"]
    assert not queue


def test_among_keys_with_as_many_waiting_the_first_in_turn_goes_and_then_has_fewer() -> None:
    queue: FairQueue[str] = FairQueue()
    for i in range(3):
        queue.push("a", f"a{i}")
        queue.push("b", f"b{i}")
    queue.push("c", "c0")
    # Two bursts as large: the one served first has fewer left, so it finishes first (shortest first);
    # the other waits for it, not for anything queued after it.
    assert [queue.pop() for _ in range(4)] == ["c0", "a0", "a1", "a2"]
    queue.push("c", "c1")  # a namespace's next request, arriving while "b" still waits
    assert [queue.pop() for _ in range(len(queue))] == ["c1", "b0", "b1", "b2"]


def test_a_key_that_empties_rejoins_at_the_end() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.push("a", "a0")
    queue.push("b", "b0")
    assert queue.pop() == "a0"  # as many waiting: the first in turn
    queue.push("a", "a1")  # "a" had left the rotation: among equals it now comes after "b"
    assert [queue.pop() for _ in range(2)] == ["b0", "a1"]


def test_remove_and_empty_pop() -> None:
    queue: FairQueue[str] = FairQueue()
    queue.push("a", "a0")
    assert queue.remove("a", "a0") and not queue.remove("a", "a0") and not queue
    with pytest.raises(IndexError):
        queue.pop()


async def test_gate_admits_a_late_namespace_before_the_rest_of_a_burst() -> None:
    gate = FairGate(1)
    admitted: list[str] = []
    release = asyncio.Event()

    async def request(key: str, label: str) -> None:
        async with gate.slot(key):
            admitted.append(label)
            await release.wait()

    first = asyncio.create_task(request("burst", "b0"))
    await asyncio.sleep(0)
    tasks = [asyncio.create_task(request("burst", f"b{i}")) for i in range(1, 6)]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(request("probe", "p0")))
    await asyncio.sleep(0)
    assert admitted == ["b0"] and gate.in_flight == 1
    release.set()
    await asyncio.gather(first, *tasks)
    assert admitted[:3] == ["b0", "p0", "b1"]  # FIFO would have put p0 last, round-robin after b1
    assert gate.in_flight == 0


async def test_gate_capacity_and_cancelled_waiters() -> None:
    gate = FairGate(2)
    held = asyncio.Event()
    inside = 0
    most = 0

    async def request(key: str) -> None:
        nonlocal inside, most
        async with gate.slot(key):
            inside += 1
            most = max(most, inside)
            await held.wait()
            inside -= 1

    tasks = [asyncio.create_task(request(f"ns{i % 3}")) for i in range(9)]
    await asyncio.sleep(0)
    tasks[5].cancel()  # a waiter that gives up leaves no slot taken
    await asyncio.sleep(0)
    held.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert most == 2
    assert isinstance(results[5], asyncio.CancelledError)
    assert gate.in_flight == 0


async def test_a_slot_granted_to_a_cancelled_waiter_is_handed_on() -> None:
    gate = FairGate(1)
    order: list[str] = []

    async def request(key: str) -> None:
        async with gate.slot(key):
            order.append(key)
            await asyncio.sleep(0)

    holding = gate.slot("a")
    await holding.__aenter__()
    doomed = asyncio.create_task(request("b"))
    third = asyncio.create_task(request("c"))
    await asyncio.sleep(0)
    await holding.__aexit__(None, None, None)  # grants "b" its slot (no await in between)...
    doomed.cancel()  # ...which it gives up before it runs
    await asyncio.gather(doomed, third, return_exceptions=True)
    assert order == ["c"] and gate.in_flight == 0


async def test_a_quiet_namespace_takes_a_reserve_slot_at_once_and_a_busy_one_cannot() -> None:
    gate = FairGate(2, reserve=1)
    release = asyncio.Event()
    admitted: list[str] = []

    async def request(key: str, label: str) -> None:
        async with gate.slot(key):
            admitted.append(label)
            await release.wait()

    burst = [asyncio.create_task(request("burst", f"b{i}")) for i in range(5)]
    await asyncio.sleep(0)
    assert admitted == ["b0", "b1"]  # the pool is full; the burst, with requests in flight, queues
    assert gate.in_reserve == 0
    probe = [asyncio.create_task(request("probe", "p0")), asyncio.create_task(request("probe", "p1"))]
    await asyncio.sleep(0)
    # p0 finds the pool full and a queue ahead of it, and goes out on the reserve; p1, with p0 in flight,
    # waits in line (at its head: fewest waiting), as does a second quiet namespace once the reserve is taken.
    assert admitted == ["b0", "b1", "p0"] and gate.in_reserve == 1
    other = asyncio.create_task(request("other", "o0"))
    await asyncio.sleep(0)
    assert admitted == ["b0", "b1", "p0"]
    release.set()
    await asyncio.gather(*burst, *probe, other)
    assert admitted.index("p1") < admitted.index("b2") and admitted.index("o0") < admitted.index("b2")
    assert gate.in_flight == 0 and gate.in_reserve == 0


async def test_the_reserve_is_taken_again_once_freed() -> None:
    gate = FairGate(1, reserve=1)
    hold = gate.slot("busy")
    await hold.__aenter__()
    for _ in range(3):  # one quiet request after another: each goes out on the reserve
        async with gate.slot("quiet"):
            assert gate.in_reserve == 1 and gate.in_flight == 1
    assert gate.in_reserve == 0
    await hold.__aexit__(None, None, None)
    assert gate.in_flight == 0


async def test_the_reserve_holds_as_many_quiet_namespaces_as_its_slots_and_no_more() -> None:
    gate = FairGate(1, reserve=2)
    hold = gate.slot("busy")
    await hold.__aenter__()
    quiet = [gate.slot(f"quiet-{i}") for i in range(2)]
    for slot in quiet:
        await slot.__aenter__()
    assert gate.in_reserve == 2
    third = asyncio.create_task(gate.slot("quiet-2").__aenter__())
    await asyncio.sleep(0)
    assert not third.done()  # both reserve slots are taken: it waits in line
    await quiet[0].__aexit__(None, None, None)
    await hold.__aexit__(None, None, None)
    await third  # the busy namespace's slot passes to it
    assert gate.in_flight == 1 and gate.in_reserve == 1


@pytest.mark.parametrize(("capacity", "reserve"), [(0, 0), (1, -1)])
def test_a_gate_needs_a_slot_and_no_negative_reserve(capacity: int, reserve: int) -> None:
    with pytest.raises(ValueError, match="capacity must be at least 1 and reserve at least 0"):
        FairGate(capacity, reserve=reserve)


def test_requests_are_keyed_by_the_namespace_of_their_path() -> None:
    from keyplane.sources.kube import namespace_of, resource_path

    assert namespace_of(resource_path("v1", "secrets", "team-a", "keyplane-identity")) == "team-a"
    assert namespace_of(resource_path("keyplane.dev/v1alpha1", "identityproviders", "b", "okta") + "/status") == "b"
    assert namespace_of(resource_path("apps/v1", "deployments", "c")) == "c"
    assert namespace_of("/api/v1/namespaces") == ""
    assert namespace_of(resource_path("keyplane.dev/v1alpha1", "ssodomains", None)) == ""
