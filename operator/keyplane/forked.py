"""Work done in a forked copy of this process, its result sent back as bytes through a pipe.

`keyplane render` gives half of its namespaces to such a copy, so a CI runner's second core shares the
work. The copy starts from this process's memory as it is at `start` (nothing to send over, nothing to
import again) and leaves with `os._exit`: it never returns into the caller's code, never runs its exit
handlers and never flushes the buffers it inherited (the caller's half-written stdout).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable


def available() -> bool:
    """Whether a second process would help and is safe: Linux (fork is not safe on macOS once system
    frameworks are loaded), and more than one CPU this process may run on."""
    return sys.platform == "linux" and hasattr(os, "fork") and len(os.sched_getaffinity(0)) > 1


class Forked:
    """A forked copy at work; `result()` waits for it."""

    def __init__(self, pid: int, read_end: int) -> None:
        self._pid = pid
        self._read_end = read_end

    def result(self) -> bytes | None:
        """What the work returned, or None when it raised or the copy died (its caller then does it itself)."""
        with os.fdopen(self._read_end, "rb") as pipe:
            payload = pipe.read()
        _, status = os.waitpid(self._pid, 0)
        return payload if os.waitstatus_to_exitcode(status) == 0 else None


def start(work: Callable[[], bytes]) -> Forked:
    """Run `work` in a forked copy of this process (only when :func:`available`)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the copy
        code = 1
        try:
            os.close(read_end)
            payload = work()
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(payload)
            code = 0
        finally:
            os._exit(code)  # an exception ends here too: the caller redoes the work and reports it
    os.close(write_end)
    return Forked(pid, read_end)
