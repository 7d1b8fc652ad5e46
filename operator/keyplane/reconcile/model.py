"""What the pure reconcile functions take and return: object snapshots, problems, events, results."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

from ..api.kinds import API_GROUP_VERSION

# Kopf's own bookkeeping annotations (progress, and the diff base). Not in the snapshots.
KOPF_ANNOTATIONS_PREFIX = "kopf.keyplane.dev/"
# The only annotations a snapshot keeps: Keyplane's own (keyplane.dev/rotate-token). Every snapshot stays in
# the indexes for the life of the process, and under `kubectl apply` or Argo CD each object carries a copy of
# its whole manifest in kubectl.kubernetes.io/last-applied-configuration: an inline metadata document twice.
KEYPLANE_ANNOTATIONS_PREFIX = "keyplane.dev/"
_NOTHING: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class Snapshot:
    """One Keyplane object as the reconcile sees it (from a Kopf index, the API, or a file)."""

    kind: str
    namespace: str
    name: str
    uid: str
    generation: int
    creation_timestamp: str
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    annotations: Mapping[str, str]
    deleting: bool = False

    @classmethod
    def from_body(cls, body: Mapping[str, Any], *, default_namespace: str = "default") -> Snapshot:
        meta = body.get("metadata") or {}
        return cls(
            kind=str(body.get("kind", "")),
            namespace=str(meta.get("namespace") or default_namespace),
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid") or ""),
            generation=int(meta.get("generation") or 1),
            creation_timestamp=str(meta.get("creationTimestamp") or ""),
            spec=_mapping(body.get("spec")),
            status=_mapping(body.get("status")),
            annotations={str(k): str(v) for k, v in (meta.get("annotations") or {}).items()
                         if str(k).startswith(KEYPLANE_ANNOTATIONS_PREFIX)}
            if isinstance(meta.get("annotations"), Mapping) else {},
            deleting=bool(meta.get("deletionTimestamp")),
        )

    def identity(self) -> Snapshot:
        """The object without its spec and status: what owner references, Events and writes address."""
        return replace(self, spec=_NOTHING, status=_NOTHING)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)

    def owner_reference(self, *, controller: bool = True) -> dict[str, Any]:
        return {
            "apiVersion": API_GROUP_VERSION,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": controller,
            "blockOwnerDeletion": False,
        }

    def event_target(self) -> dict[str, Any]:
        return {
            "apiVersion": API_GROUP_VERSION,
            "kind": self.kind,
            "name": self.name,
            "namespace": self.namespace,
            "uid": self.uid,
        }


def _mapping(value: Any) -> dict[str, Any]:
    """A plain dict of a body part; anything that is not a mapping (a hand-written file) reads as empty."""
    plain = _plain(value) if value is not None else {}
    return plain if isinstance(plain, dict) else {}


def _plain(value: Any) -> Any:
    """Deep-copy Kopf's body views into plain dicts and lists, so snapshots never change under us."""
    if type(value) is str:  # most values: no ABC checks for them
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class Problem:
    """Why something could not be done. Transient problems are retried; permanent ones need the user."""

    reason: str
    message: str
    transient: bool = False


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post about an object."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass
class KindResult:
    """The reconcile of one object: its new status, what it adds to the bundle, the Events to post."""

    status: dict[str, Any]
    entry: Any = None
    events: list[Event] = field(default_factory=list)


def compact(value: Any) -> Any:
    """Drop None values recursively: the CRD schemas have no nullable fields, and absent reads clearer."""
    if isinstance(value, dict):
        return {k: compact(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [compact(v) for v in value]
    return value
