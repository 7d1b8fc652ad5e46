"""What the operator loads at start-up: nothing for metadata URLs until one is fetched."""

from __future__ import annotations

import subprocess
import sys

START_AND_STOP = """
import asyncio, sys
import kopf
from keyplane.handlers import lifecycle
from keyplane.settings import Settings
from keyplane.sources.credentials import ClusterCredentials

async def main():
    memo = kopf.Memo(settings=Settings(liveness_endpoint=None), credentials=ClusterCredentials("http://127.0.0.1:9"))
    await lifecycle.start(settings=kopf.OperatorSettings(), memo=memo)
    await lifecycle.stop(memo=memo)

asyncio.run(main())
loaded = sorted({m.split('.')[0] for m in sys.modules} & {'httpx', 'httpcore'})
assert not loaded, f'imported: {loaded}'
"""


def test_an_operator_that_fetches_no_metadata_url_never_imports_httpx() -> None:
    """IdentityProviders with inline metadata (or none yet) leave httpx's ~2.6 MB out of every replica; the
    first metadata URL imports it (tests/integration fetch through the operator)."""
    done = subprocess.run([sys.executable, "-c", START_AND_STOP], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
