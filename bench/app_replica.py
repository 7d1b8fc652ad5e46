"""One replica of the app for bench/app_bench.py: ``uvicorn --factory bench.app_replica:build``.

Environment: ``KEYPLANE_BUNDLE`` (identity.json), ``KEYPLANE_DATABASE_URL``, ``KEYPLANE_SECRET_KEY``.
"""

from __future__ import annotations

import os
from typing import Any

from keyplane.app import Keyplane


def build() -> Any:
    return Keyplane(os.environ["KEYPLANE_BUNDLE"], database_url=os.environ["KEYPLANE_DATABASE_URL"]).asgi()
