"""Whether Kopf has paused this operator (HA mode: another replica with a higher priority is active).

Kopf stops its own timers and daemons while paused, but offers no public way to ask whether it is paused:
its state is a `ToggleSet` handed to its root tasks. The sweeper and the resync are Keyplane's own tasks,
so they read that same ToggleSet: the "daemon killer" root task holds it (the task Kopf itself uses to stop
daemons on a pause). A Kopf upgrade that moves it fails the start loudly in HA mode (see
`operator_paused`), and tests/faults/test_fault_peering.py checks a paused replica sweeps nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

KOPF_PAUSE_HOLDER = "daemon killer"  # the name of Kopf's root task that receives `operator_paused`


class PauseStateNotFound(RuntimeError):
    pass


def _arguments(coro: Any) -> dict[str, Any]:
    frame = getattr(coro, "cr_frame", None)
    return dict(frame.f_locals) if frame is not None else {}


def operator_paused(settings: Any) -> Callable[[], bool]:
    """`is_on` of the pause toggles of the Kopf operator whose `settings` these are (the startup handler's
    kwarg), found among the running tasks: one process can run several operators (the tests do)."""
    for task in asyncio.all_tasks():
        if task.get_name() != KOPF_PAUSE_HOLDER:
            continue
        killer = _arguments(_arguments(task.get_coro()).get("coro"))  # kopf's guard(coro=daemon_killer(...))
        is_on = getattr(killer.get("operator_paused"), "is_on", None)
        if killer.get("settings") is settings and callable(is_on):
            return is_on
    raise PauseStateNotFound(f"Kopf's pause state was not found (no {KOPF_PAUSE_HOLDER!r} task holding "
                             "operator_paused): this Kopf version is not the one Keyplane was built for")
