"""
``python -m keyplane.testing --kubeconfig PATH``: an emulated API server until interrupted.

It serves on 127.0.0.1 with Keyplane's CRDs, requires bearer tokens and authorizes the chart's
ServiceAccount against the chart's RBAC (``helm template``; needs helm), and writes an admin
kubeconfig to PATH. ``make e2e-emulated`` runs the e2e suite against it; by hand::

    python -m keyplane.testing --kubeconfig /tmp/emulated.kubeconfig &
    KUBECONFIG=/tmp/emulated.kubeconfig make e2e

It is not a conformant API server (no namespace controller, no admission); the e2e suite's real
target is one. The kubeconfig is written only once the server listens, so its presence means ready.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
from typing import Any

from keyplane.api.crds import all_crds
from keyplane.testing.cluster import emulated_cluster
from keyplane.testing.rbac import render_chart_rbac

KEEP_REQUESTS = 200


async def _forget_old_requests(emulator: Any) -> None:
    """kmock logs every request and matches each new one by scanning that log, so a server that runs
    for thousands of requests slows down request by request. Nothing asserts on this server's old
    requests: keep only the recent ones (in flight ones are among them)."""
    while True:
        await asyncio.sleep(1.0)
        del emulator._requests[:-KEEP_REQUESTS]
        for payload in emulator._payloads:
            del payload._requests[:-KEEP_REQUESTS]


async def serve(kubeconfig: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with emulated_cluster(all_crds(), rbac=render_chart_rbac()) as cluster:
        partial = f'{kubeconfig}.partial'
        shutil.copyfile(cluster.admin_kubeconfig_path, partial)
        os.replace(partial, kubeconfig)  # appears complete, or not at all
        print(f'Emulated API server at {cluster.url}; admin kubeconfig: {kubeconfig}', flush=True)
        trimmer = asyncio.create_task(_forget_old_requests(cluster.emulator))
        try:
            await stop.wait()
        finally:
            trimmer.cancel()
            with contextlib.suppress(FileNotFoundError):
                os.remove(kubeconfig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m keyplane.testing', description=__doc__.split('\n\n')[0])
    parser.add_argument('--kubeconfig', required=True, help='where to write the admin kubeconfig')
    args = parser.parse_args(argv)
    asyncio.run(serve(args.kubeconfig))
    return 0


if __name__ == '__main__':
    sys.exit(main())
