"""One replica of a web app embedding Keyplane, for the multi-replica tests (run by uvicorn).

``uvicorn --factory replica_app:build`` with the environment: ``KEYPLANE_BUNDLE`` (identity.json),
``DATABASE_URL``, ``KEYPLANE_SECRET_KEY`` (shared by the replicas, as a Deployment's Secret is),
``REPLICA`` (a name) and ``CHANGES_FILE``: every user change the app's listener receives is appended
there as a JSON line, so the test can count how often each change fired, across processes.
"""

from __future__ import annotations

import json
import os
from typing import Any

from keyplane.app import Keyplane, UserChange


def build() -> Any:
    kp = Keyplane(os.environ["KEYPLANE_BUNDLE"], database_url=os.environ["DATABASE_URL"])
    replica = os.environ["REPLICA"]
    changes = os.environ["CHANGES_FILE"]

    def record(change: UserChange) -> None:
        line = json.dumps({"replica": replica, "action": change.action, "user": change.user.id,
                           "groups": list(change.user.groups)})  # fmt: skip
        # One write(2) of one line with O_APPEND: lines of the two processes do not interleave.
        with open(changes, "a") as file:
            file.write(line + "\n")

    kp.add_listener(record)
    return kp.asgi()
