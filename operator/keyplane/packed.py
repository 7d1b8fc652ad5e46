"""Snapshots as Kopf's indexes keep them: the identity as a Snapshot without spec and status, those two
as one pickle.

The indexes hold a snapshot of every object for the life of the process. As nested dicts, a snapshot costs
two to four times its data: an SSODomain with five conditions (six keys each) took 3.3 KB even with its keys
and short values interned, packed 1.5 KB; at N=1000 of each kind the indexes keep ~7 MB less
(bench/README.md, "Fifth round").
A reader unpacks the few it needs (a namespace's pass, a sweep slot): ~3-6 µs each.

The bytes are made here from a snapshot of this process, never read from anywhere else, so unpickling
them runs nothing another party wrote.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, replace

from .reconcile.model import Snapshot


@dataclass(frozen=True, slots=True)
class PackedSnapshot:
    identity: Snapshot  # without spec and status (`Snapshot.identity`): what the sweep and handlers look up
    spec_and_status: bytes

    @classmethod
    def of(cls, snap: Snapshot) -> PackedSnapshot:
        spec_and_status = (dict(snap.spec), dict(snap.status))
        return cls(snap.identity(), pickle.dumps(spec_and_status, protocol=pickle.HIGHEST_PROTOCOL))

    def unpack(self) -> Snapshot:
        """A new Snapshot: its dicts are fresh, so no reader can change what the index holds."""
        spec, status = pickle.loads(self.spec_and_status)  # bytes made by `of` above, in this process
        return replace(self.identity, spec=spec, status=status)


IndexEntry = Snapshot | PackedSnapshot  # the operator's indexes hold packed ones; `keyplane render`'s, Snapshots


def unpacked(entry: IndexEntry) -> Snapshot:
    return entry.unpack() if isinstance(entry, PackedSnapshot) else entry


def identity_of(entry: IndexEntry) -> Snapshot:
    """Kind, namespace, name, uid, creation time, deletion: without unpacking."""
    return entry.identity if isinstance(entry, PackedSnapshot) else entry
