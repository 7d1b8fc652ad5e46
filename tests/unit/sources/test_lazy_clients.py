"""An operator pays for DNS and HTTP clients only once it uses them: one whose IdPs carry inline metadata
and whose SSODomains need no DNS challenge never loads dnspython nor the CA bundle (~5 MB resident, which
is most of what separates its memory from a bare Kopf operator's at 1000 objects)."""

from __future__ import annotations

import subprocess
import sys


def test_making_the_resolver_and_the_fetcher_loads_neither_dnspython_nor_an_http_client() -> None:
    program = (
        "import sys, asyncio\n"
        "from keyplane.sources.dns import DnsPythonTxtResolver\n"
        "from keyplane.sources.fetcher import MetadataFetcher\n"
        "resolver, fetcher = DnsPythonTxtResolver(), MetadataFetcher()\n"
        "asyncio.run(fetcher.aclose())\n"
        "print('dns' in sys.modules, fetcher._http is not None)\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]
