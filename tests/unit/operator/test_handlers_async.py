"""Every Kopf handler Keyplane registers is a coroutine function: Kopf runs a plain function in its thread
pool, a hop to a thread and back for every event of every object (a tenth of the operator's CPU in a
burst of 3 000 objects), and the handlers are quick and never block."""

from __future__ import annotations

import inspect

import kopf

import keyplane.handlers  # noqa: F401  (registers the handlers)


def test_every_registered_handler_runs_on_the_event_loop() -> None:
    registry = kopf.get_default_registry()
    handlers = [h for group in (registry._indexing, registry._watching, registry._changing, registry._spawning,
                                registry._activities)
                for h in group.get_all_handlers() if h.fn.__module__.startswith("keyplane.")]
    assert len(handlers) >= 10
    plain = sorted({h.fn.__name__ for h in handlers if not inspect.iscoroutinefunction(h.fn)})
    assert plain == [], f"run in Kopf's thread pool: {plain}"
