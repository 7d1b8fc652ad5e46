"""Counting Kopf's watch-stream restarts.

Kopf exposes no hook or counter for them: the only signal is the debug record its watching module logs
when it restarts a stream (`Restarting the watch-stream` after a 410 Gone, `... is inactive, reconnecting`
after the inactivity timeout). One filter (a tap) sits on that logger, hands those records to every
counter that listens, and lets through only what the logger would have emitted anyway, so counting
changes no log output. A Kopf upgrade that rewords the messages is caught by
tests/unit/operator/test_metrics.py, which drives Kopf's own logger.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

KOPF_WATCHING_LOGGER = "kopf._cogs.clients.watching"
_PATTERNS = (("Restarting the watch-stream", "gone"), ("is inactive, reconnecting", "inactive"))
_LOCK = threading.Lock()
# One tap per logger, shared by every counter of the process (tests run several operators in one process;
# a filter of its own per counter would let one that was never uninstalled hide the records from the rest).
_TAPS: dict[str, _Tap] = {}


class _Tap(logging.Filter):
    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self.logger = logger
        self.listeners: list[Callable[[str], None]] = []
        self.threshold = logger.getEffectiveLevel()
        self.previous_level = logger.level
        logger.addFilter(self)
        logger.setLevel(logging.DEBUG)  # Kopf builds its debug records only when DEBUG is enabled

    def remove(self) -> None:
        self.logger.removeFilter(self)
        self.logger.setLevel(self.previous_level)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for pattern, reason in _PATTERNS:
            if pattern in message:
                for listener in list(self.listeners):
                    listener(reason)
                break
        return record.levelno >= self.threshold


class WatchRestartCounter:
    """Calls `count(reason)` for each watch restart Kopf logs, between `install()` and `uninstall()`."""

    def __init__(self, count: Callable[[str], None]) -> None:
        self._count = count
        self._tap: _Tap | None = None

    def install(self, logger: logging.Logger | None = None) -> None:
        target = logger or logging.getLogger(KOPF_WATCHING_LOGGER)
        with _LOCK:
            if self._tap is not None:
                return
            tap = _TAPS.get(target.name)
            if tap is None:
                tap = _TAPS[target.name] = _Tap(target)
            tap.listeners.append(self._count)
            self._tap = tap

    def uninstall(self) -> None:
        with _LOCK:
            tap, self._tap = self._tap, None
            if tap is None:
                return
            tap.listeners.remove(self._count)
            if not tap.listeners:
                tap.remove()
                del _TAPS[tap.logger.name]
