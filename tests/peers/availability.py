"""Whether a real peer can run here: skip with the reason, except in CI (CI set), where it fails.

`make peers` installs them (xmlsec1 from Debian, oidc-provider from npm into .tools/peers); a
developer machine without them still runs the rest of the suite.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import NoReturn

from support import missing

ROOT = Path(__file__).resolve().parents[2]
PEERS_DIR = ROOT / ".tools" / "peers"
OIDC_PROVIDER_MODULE = PEERS_DIR / "node_modules" / "oidc-provider" / "lib" / "index.js"


def unavailable(reason: str) -> NoReturn:
    """Skip the test for a missing peer; in CI a missing peer is a broken set-up, so fail."""
    missing(f"{reason}; run `make peers`")


def need_node_oidc_provider() -> str:
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed (oidc-provider needs Node.js 20+)")
    if not OIDC_PROVIDER_MODULE.is_file():
        unavailable(f"oidc-provider is not installed in {PEERS_DIR}")
    return str(node)


def need_xmlsec1() -> str:
    binary = shutil.which("xmlsec1")
    if binary is None:
        unavailable("the xmlsec1 binary (Debian package xmlsec1) that pysaml2 signs with is not installed")
    try:
        import saml2  # noqa: F401
    except ImportError:
        unavailable("pysaml2 is not installed in the virtualenv (make venv)")
    return str(binary)
