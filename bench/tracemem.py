"""`python -m bench.tracemem OUT MODULE [ARGS...]`: run MODULE (as `python -m`) under tracemalloc and write a
snapshot at SIGUSR1 (to OUT.SIGUSR1) and at exit (to OUT): memory still held, by allocation site
(BENCH_TRACEMALLOC_FRAMES frames, default 1).

Used by `BENCH_TRACEMALLOC_DIR=/tmp/mem python -m bench ...` (see README.md, "Where the memory lives"):
the bench sends SIGUSR1 once the burst has converged. tracemalloc roughly doubles the operator's CPU.
"""

from __future__ import annotations

import atexit
import os
import runpy
import signal
import sys
import tracemalloc


def main() -> None:
    out, module, *args = sys.argv[1:]
    tracemalloc.start(int(os.environ.get("BENCH_TRACEMALLOC_FRAMES", "1")))

    def dump(signum: int | None = None, *_: object) -> None:
        path = f"{out}.{signal.Signals(signum).name}" if signum else out
        tracemalloc.take_snapshot().dump(path)
        current, peak = tracemalloc.get_traced_memory()
        print(f"tracemalloc: {current / 2**20:.1f} MiB traced, peak {peak / 2**20:.1f} MiB -> {path}",
              file=sys.stderr, flush=True)

    signal.signal(signal.SIGUSR1, dump)
    atexit.register(dump)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
