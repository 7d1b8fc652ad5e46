"""What `configure_kopf` asks of Kopf. The memory effect of the worker lifetime is measured by `make bench`."""

from __future__ import annotations

import kopf

from keyplane.handlers.kopf_handlers import WORKER_IDLE_SECONDS, configure_kopf
from keyplane.settings import Settings


def test_idle_kopf_workers_exit_sooner_than_kopfs_default() -> None:
    """Each idle worker holds its object's last raw body: thousands of them at the end of a burst."""
    settings = kopf.OperatorSettings()
    default = settings.queueing.idle_timeout
    configure_kopf(settings, Settings())
    assert settings.queueing.idle_timeout == WORKER_IDLE_SECONDS < default
