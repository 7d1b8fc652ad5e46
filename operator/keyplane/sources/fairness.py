"""Per-namespace fairness for the operator's API requests: the namespace with the fewest waiting goes first.

The operator keeps at most a pool's worth of requests in flight (`KubeAPI`). Under a burst of
thousands of objects in a few namespaces, the requests queued behind that limit are hundreds deep;
served first-come-first-served, one IdentityProvider applied in another namespace would wait for the
whole burst's queue before each of its own writes. Served round-robin it waited for one turn of every busy
namespace before each of them: on a real API server under a burst, about half a second a request, and its
way to Ready is several requests in a row (its pass's ConfigMap and bundle, then its status): p99 11-15 s.
Served fewest-waiting first (p99 7-10 s there), a namespace with one or two requests waiting goes before
those with hundreds; among namespaces with as many, the next in turn, which then has fewer, so of two equal
backlogs one drains before the other (shortest first). The burst still gets all the capacity nobody else
wants; it waits at most for what the smaller namespaces have queued, and each namespace's writer sends one
pass at a time, so that is bounded. Being first in line was still not enough on a loaded API server (the
head waited up to 0.7 s for a slot, p99 5.9-8.0 s): a few reserve slots admit a namespace with nothing in
flight at once (`FairGate`, p99 about 4 s there).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

T = TypeVar("T")


class FairQueue(Generic[T]):
    """Items queued under keys; `pop` takes the oldest item (FIFO within a key) of the key with the fewest
    items, and among keys with as many, of the next in turn.

    A key joins the end of the rotation when it gets its first item and leaves it when it has none left.
    """

    def __init__(self) -> None:
        self._queues: OrderedDict[Hashable, deque[T]] = OrderedDict()

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def __bool__(self) -> bool:
        return bool(self._queues)

    def push(self, key: Hashable, item: T) -> None:
        self._queues.setdefault(key, deque()).append(item)

    def pop(self) -> T:
        if not self._queues:
            raise IndexError("pop from an empty FairQueue")
        # `min` keeps the first of equals: the rotation's order among keys with as many items.
        key, queue = min(self._queues.items(), key=lambda entry: len(entry[1]))
        item = queue.popleft()
        if queue:
            self._queues.move_to_end(key)  # its turn is over; the others go first
        else:
            del self._queues[key]
        return item

    def remove(self, key: Hashable, item: T) -> bool:
        """Take a waiting item out (its waiter gave up); False if it is not queued."""
        queue = self._queues.get(key)
        if queue is None or item not in queue:
            return False
        queue.remove(item)
        if not queue:
            del self._queues[key]
        return True


class FairGate:
    """At most `capacity` holders at a time; waiters are admitted in `FairQueue` order across their keys.

    Plus `reserve` slots that only a key with nothing in flight may take, and only on arrival: whatever
    the other namespaces have queued, a quiet namespace's next request goes out at once. Fewest-first puts
    it at the head of the queue, but on a loaded API server the head still waited for a slot to free (up
    to 0.7 s a request, several requests on an object's way to Ready). A busy namespace almost always has
    a request in flight, so the reserve stays free for the quiet ones.
    """

    def __init__(self, capacity: int, reserve: int = 0) -> None:
        if capacity < 1 or reserve < 0:
            raise ValueError("capacity must be at least 1 and reserve at least 0")
        self.capacity = capacity
        self.reserve = reserve
        self.in_flight = 0
        self.in_reserve = 0
        self._by_key: dict[Hashable, int] = {}  # requests in flight per key (both pools)
        self._waiting: FairQueue[asyncio.Future[None]] = FairQueue()

    @asynccontextmanager
    async def slot(self, key: Hashable) -> AsyncIterator[None]:
        reserved = await self._acquire(key)
        self._by_key[key] = self._by_key.get(key, 0) + 1
        try:
            yield
        finally:
            if self._by_key[key] == 1:
                del self._by_key[key]
            else:
                self._by_key[key] -= 1
            if reserved:
                self.in_reserve -= 1
            else:
                self._release()

    async def _acquire(self, key: Hashable) -> bool:
        """Wait for a slot; True when it is a reserve slot."""
        if self.in_flight < self.capacity and not self._waiting:
            self.in_flight += 1
            return False
        if self.in_reserve < self.reserve and key not in self._by_key:
            self.in_reserve += 1
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.push(key, waiter)
        try:
            await waiter  # the slot is counted for us by _release before it wakes us
        except asyncio.CancelledError:
            if not self._waiting.remove(key, waiter):
                self._release()  # admitted and cancelled in the same instant: hand the slot on
            raise
        return False

    def _release(self) -> None:
        while self._waiting:
            waiter = self._waiting.pop()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight to it; in_flight is unchanged
                return
        self.in_flight -= 1
