"""Counting Kopf's watch-stream restarts.

Kopf exposes no hook or counter for them: the only signal is the debug record its watching module logs
when it restarts a stream (`Restarting the watch-stream` after a 410 Gone, `... is inactive, reconnecting`
after the inactivity timeout). This filter sits on that logger, counts those records and lets through
only what the logger would have emitted anyway, so enabling it changes no log output. A Kopf upgrade that
rewords the messages is caught by tests/unit/operator/test_metrics.py, which drives Kopf's own logger.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

KOPF_WATCHING_LOGGER = "kopf._cogs.clients.watching"
_PATTERNS = (("Restarting the watch-stream", "gone"), ("is inactive, reconnecting", "inactive"))


class WatchRestartCounter(logging.Filter):
    def __init__(self, count: Callable[[str], None]) -> None:
        super().__init__()
        self._count = count
        self._logger: logging.Logger | None = None
        self._threshold = logging.WARNING
        self._previous_level = logging.NOTSET

    def install(self, logger: logging.Logger | None = None) -> None:
        if self._logger is not None:
            return
        self._logger = logger or logging.getLogger(KOPF_WATCHING_LOGGER)
        self._threshold = self._logger.getEffectiveLevel()
        self._previous_level = self._logger.level
        self._logger.addFilter(self)
        self._logger.setLevel(logging.DEBUG)  # Kopf builds its debug records only when DEBUG is enabled

    def uninstall(self) -> None:
        if self._logger is None:
            return
        self._logger.removeFilter(self)
        self._logger.setLevel(self._previous_level)
        self._logger = None

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for pattern, reason in _PATTERNS:
            if pattern in message:
                self._count(reason)
                break
        return record.levelno >= self._threshold
