"""Refusals: every login or SCIM request ``keyplane.app`` turns down is logged and counted.

A refusal has a short, stable ``code`` (``saml.deprecated_algorithm``, ``scim.unauthorized``, …)
that is safe as a metrics label, and a human ``reason`` for the log line. Callers pass reasons
that name what failed and the setting that would change it, never a token, cookie, assertion or
ID token: this module cannot tell a secret from the rest, so it only keeps the log line to one
line of printable text (attacker-controlled parts such as an OIDC ``error`` parameter cannot
forge log lines) of bounded length.

The counter is a plain in-process ``code -> count`` map. ``on_refusal`` lets an exporter (e.g.
a prometheus-client Counter) follow it without this module depending on one.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping

log = logging.getLogger("keyplane.app.audit")

#: The longest reason written to the log; longer ones are cut (with a marker).
MAX_REASON = 300

RefusalListener = Callable[[str, str], None]


def printable(text: str, limit: int = MAX_REASON) -> str:
    """One line of printable text, at most ``limit`` characters (control characters escaped)."""
    cleaned = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + "…"


class Refusals:
    """Logs and counts refusals by code. Thread-safe (SCIM handlers run in worker threads)."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self.log = logger
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._listeners: list[RefusalListener] = []

    def refuse(self, code: str, reason: str, *, source: str = "") -> None:
        """Record one refusal: ``code`` is counted, ``reason`` logged (with ``source``, e.g. the IdP)."""
        with self._lock:
            self._counts[code] += 1
            listeners = list(self._listeners)
        where = f" ({printable(source, 100)})" if source else ""
        self.log.warning("refused %s%s: %s", code, where, printable(reason))
        for listener in listeners:
            try:
                listener(code, source)
            except Exception:  # an exporter's bug must not turn a refusal into a 500
                self.log.exception("refusal listener failed")

    def on_refusal(self, listener: RefusalListener) -> None:
        """Call ``listener(code, source)`` after each refusal (for a metrics exporter)."""
        with self._lock:
            self._listeners.append(listener)

    def count(self, code: str) -> int:
        with self._lock:
            return self._counts[code]

    def counts(self) -> Mapping[str, int]:
        """A snapshot: refusal code -> how many since start."""
        with self._lock:
            return dict(self._counts)
