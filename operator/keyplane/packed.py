"""Snapshots as Kopf's indexes keep them: the identity fields as they are, spec and status as one pickle.

The indexes hold a snapshot of every object for the life of the process. As nested dicts, a snapshot costs
two to four times its data: an SSODomain's status of five conditions (six keys each) took 3.3 KB, pickled
0.7 KB; at N=1000 of each kind the packed form keeps ~9 MB less (bench/README.md, "Where the memory lives").
A reader unpacks the few it needs (a namespace's pass, a sweep slot): ~3-6 µs each.

The bytes are made here from a snapshot of this process, never read from anywhere else, so unpickling
them runs nothing another party wrote.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass

from .reconcile.model import Snapshot


@dataclass(frozen=True, slots=True)
class PackedSnapshot:
    kind: str
    namespace: str
    name: str
    uid: str
    generation: int
    creation_timestamp: str
    deleting: bool
    annotations: tuple[tuple[str, str], ...]  # usually (): one shared empty tuple, not an empty dict each
    spec_and_status: bytes

    @classmethod
    def of(cls, snap: Snapshot) -> PackedSnapshot:
        return cls(
            kind=snap.kind, namespace=snap.namespace, name=snap.name, uid=snap.uid, generation=snap.generation,
            creation_timestamp=snap.creation_timestamp, deleting=snap.deleting,
            annotations=tuple(snap.annotations.items()),
            spec_and_status=pickle.dumps((dict(snap.spec), dict(snap.status)), protocol=pickle.HIGHEST_PROTOCOL),
        )

    def unpack(self) -> Snapshot:
        """A new Snapshot: its dicts are fresh, so no reader can change what the index holds."""
        spec, status = pickle.loads(self.spec_and_status)  # bytes made by `of` above, in this process
        return Snapshot(
            kind=self.kind, namespace=self.namespace, name=self.name, uid=self.uid, generation=self.generation,
            creation_timestamp=self.creation_timestamp, spec=spec, status=status,
            annotations=dict(self.annotations), deleting=self.deleting,
        )


IndexEntry = Snapshot | PackedSnapshot  # the operator's indexes hold packed ones; `keyplane render`'s, Snapshots


def unpacked(entry: IndexEntry) -> Snapshot:
    return entry.unpack() if isinstance(entry, PackedSnapshot) else entry
