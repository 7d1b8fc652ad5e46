"""Posting core/v1 Events about Keyplane objects."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime

from ..contract import rfc3339
from ..reconcile.model import Event, Snapshot
from ..sources.objectstore import ObjectStore

log = logging.getLogger("keyplane.operator")


async def post_event(kube: ObjectStore, snap: Snapshot, event: Event, now: datetime) -> None:
    """Post a core/v1 Event; failures are logged, never raised (an Event is not worth a retry loop)."""
    stamp = rfc3339(now)
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{snap.name}.{secrets.token_hex(8)}", "namespace": snap.namespace},
        "involvedObject": snap.event_target(),
        "type": event.type,
        "reason": event.reason,
        "message": event.message[:1024],
        "source": {"component": "keyplane"},
        "reportingComponent": "keyplane.dev/operator",
        "reportingInstance": "keyplane",
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    level = logging.WARNING if event.type == "Warning" else logging.INFO
    log.log(level, "%s %s/%s: %s: %s", snap.kind, snap.namespace, snap.name, event.reason, event.message)
    try:
        await kube.create("v1", "events", snap.namespace, body)
    except Exception as exc:
        log.warning("could not post Event %s for %s/%s: %s", event.reason, snap.namespace, snap.name, exc)
