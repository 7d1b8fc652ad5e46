"""`python -m bench.emulator KUBECONFIG`: the emulated API server (with the CRDs) on 127.0.0.1 until Ctrl-C, its
kubeconfig written to KUBECONFIG. Used to try `python -m bench --kubeconfig KUBECONFIG` where no real
cluster is at hand (README.md): the bench then treats it exactly as it would a real API server.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys

from keyplane.api.crds import all_crds
from keyplane.testing import emulated_cluster

from . import kmock_fastpath


async def serve(kubeconfig: str) -> None:
    kmock_fastpath.install()
    kmock_fastpath.install_emulator_cache()
    async with emulated_cluster(all_crds()) as cluster:
        shutil.copyfile(cluster.kubeconfig_path, kubeconfig)
        print(f"emulated API server at {cluster.url}; kubeconfig {kubeconfig}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
