"""The namespace writer's scheduling: bursts of changes per namespace coalesced into a handful of passes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from ..settings import Settings
from ..sources.objectstore import KubeError

log = logging.getLogger("keyplane.operator")

MAX_QUICK_CONFLICT_RETRIES = 5


class NamespaceWriter:
    """Runs `flush(namespace)` once a burst of changes settles (debounce, capped at bundle_max_delay).

    A failed pass is retried: a write conflict at once (someone wrote first; up to five times), any other
    error with exponential backoff up to a minute. The loop never dies.
    """

    def __init__(self, settings: Settings, flush: Callable[[str], Awaitable[None]]) -> None:
        self.settings = settings
        self.flush = flush
        self._dirty: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.flush_count = 0

    def schedule(self, namespace: str) -> None:
        if namespace not in self._dirty:
            self._dirty[namespace] = asyncio.Event()
            self._tasks[namespace] = asyncio.create_task(self._loop(namespace), name=f"keyplane-writer-{namespace}")
        self._dirty[namespace].set()

    def schedule_all(self, namespaces: Iterable[str] | None = None) -> None:
        for namespace in list(namespaces if namespaces is not None else self._dirty):
            self.schedule(namespace)

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
        self._dirty.clear()

    async def _settle(self, dirty: asyncio.Event) -> None:
        """Wait for a change, then until no new one came for `bundle_debounce` (or the cap passed)."""
        await dirty.wait()
        started = time.monotonic()
        while True:
            dirty.clear()
            await asyncio.sleep(self.settings.bundle_debounce)
            if not dirty.is_set() or time.monotonic() - started >= self.settings.bundle_max_delay:
                break
        dirty.clear()

    async def _loop(self, namespace: str) -> None:
        dirty = self._dirty[namespace]
        backoff, conflicts = 1.0, 0
        while True:
            await self._settle(dirty)
            try:
                await self.flush(namespace)
                self.flush_count += 1
                backoff, conflicts = 1.0, 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the API is down or conflicting: retry later, never die
                conflicts = conflicts + 1 if isinstance(exc, KubeError) and exc.status == 409 else 0
                conflict = 0 < conflicts <= MAX_QUICK_CONFLICT_RETRIES  # a recurring conflict is like any error
                delay = 0.1 if conflict else backoff
                log.warning("namespace %s: writing failed (%s: %s); retrying in %.1fs",
                            namespace, type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                if not conflict:
                    backoff = min(backoff * 2, 60.0)
                dirty.set()
