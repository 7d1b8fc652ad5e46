"""`python -m bench.tracemem OUT MODULE [ARGS...]`: run MODULE (as `python -m`) under tracemalloc and write a
snapshot at SIGUSR1 (to OUT.SIGUSR1), at exit (to OUT), and near the traced peak (to OUT.peak: a thread
samples the traced size every 0.05 s and snapshots each new high 4 MiB above the last), by allocation site
(BENCH_TRACEMALLOC_FRAMES frames, default 1). The peak snapshot is what a peak RSS is made of: a burst's
transient buffers are gone by the time the bench signals convergence. The "peak" that tracemalloc itself
prints is not: taking a snapshot allocates a tuple per trace (~50 MB at N=1000), and those count.

Used by `BENCH_TRACEMALLOC_DIR=/tmp/mem python -m bench ...` (see README.md, "Where the memory lives"):
the bench sends SIGUSR1 once the burst has converged. tracemalloc roughly doubles the operator's CPU.
"""

from __future__ import annotations

import atexit
import os
import runpy
import signal
import sys
import threading
import time
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

    def watch_peak() -> None:
        high = 0
        while True:
            time.sleep(0.05)
            current, _ = tracemalloc.get_traced_memory()
            if current > high + 4 * 2**20:
                high = current
                tracemalloc.take_snapshot().dump(f"{out}.peak")
                print(f"tracemalloc: new high {current / 2**20:.1f} MiB -> {out}.peak", file=sys.stderr, flush=True)

    threading.Thread(target=watch_peak, name="tracemem-peak", daemon=True).start()
    signal.signal(signal.SIGUSR1, dump)
    atexit.register(dump)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
