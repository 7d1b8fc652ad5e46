"""Fitting a namespace's identity bundle into one Secret.

The API server refuses a Secret whose data is over 1 MiB (`MaxSecretSize`). A namespace's bundle grows by
~3.7 KB per IdentityProvider with its SSODomain and ScimConnection (one signing certificate each), so a
namespace passes the limit at a few hundred. Left alone, every write of that namespace would then fail
and be retried forever, and no status would say why. Instead the pass writes the largest bundle that fits:

- removals always apply (a deleted IdentityProvider must stop logging users in), so the bundle never grows
  from what was last written without a change admitting it;
- then changes to entries already in the bundle (a refreshed certificate, a rotated SCIM token), then new
  entries, each while it fits; grouped by IdentityProvider (by name: the IdP, then its SSODomains, then its
  ScimConnections), so the choice is the same at every pass, the bundle holds whole tenants rather than
  IdPs without their domains, and a domain never routes to an IdP that was left out;
- new entries stop `UPDATE_HEADROOM_BYTES` short of the limit, so that changes to entries already served
  (a rotated SCIM token, whose new value is already in its token Secret; an IdP's certificate rollover) still
  fit in a namespace that new tenants have filled;
- an object whose change is left out keeps its last entry (if any) and reports `BundleTooLarge`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .bundle import build_bundle, serialize_bundle

# The API server's limit on the data of one Secret (k8s.io/kubernetes/pkg/apis/core: MaxSecretSize).
SECRET_DATA_MAX_BYTES = 1024 * 1024
# Kept free of new entries for changes to served ones: ~20 certificate rollovers or ~200 token rotations.
UPDATE_HEADROOM_BYTES = 32 * 1024

IDENTITY_PROVIDERS, DOMAINS, SCIM = "identityProviders", "domains", "scim"
SECTIONS = (IDENTITY_PROVIDERS, DOMAINS, SCIM)
# Which section an object's entry lives in, in the order changes are admitted.
SECTION_OF_KIND = {"IdentityProvider": IDENTITY_PROVIDERS, "SSODomain": DOMAINS, "ScimConnection": SCIM}

ObjectKey = tuple[str, str]  # (kind, name)


@dataclass(frozen=True)
class BundleFit:
    bundle: dict[str, Any]
    data: bytes
    wanted_bytes: int  # the size the bundle with every change would have had
    refused: frozenset[ObjectKey]  # objects whose change is not in `bundle`


def fit_bundle(
    roles: tuple[str, ...],
    wanted: Mapping[str, Mapping[str, Any]],
    previous: Mapping[str, Any] | None,
    contributions: Mapping[ObjectKey, Iterable[str]],
    *,
    limit: int = SECRET_DATA_MAX_BYTES,
    headroom: int = 0,
) -> BundleFit:
    """The bundle to write, given the one every object asks for (`wanted`, by section) and the one last
    written; `contributions` are each object's keys in its section of `wanted`. The bundle never passes
    `limit`, and new entries never take it past `limit - headroom`."""
    whole = build_bundle(roles, *(wanted[s] for s in SECTIONS))
    data = serialize_bundle(whole)
    if len(data) <= limit - headroom:
        return BundleFit(whole, data, len(data), frozenset())
    last = {s: dict(((previous or {}).get(s)) or {}) for s in SECTIONS}
    # Removals first: an entry the wanted bundle no longer has goes, whatever else does not fit.
    kept = {s: {k: v for k, v in last[s].items() if k in wanted[s]} for s in SECTIONS}

    def order(obj: ObjectKey) -> tuple[bool, str, int, str]:
        kind, name = obj
        section = SECTION_OF_KIND[kind]
        keys = list(contributions[obj])
        addition = not all(k in last[section] for k in keys)
        provider = _provider(kind, name, [wanted[section][k] for k in keys])
        return addition, provider, list(SECTION_OF_KIND).index(kind), name

    changes = sorted(
        (obj for obj, keys in contributions.items()
         if any(wanted[SECTION_OF_KIND[obj[0]]].get(k) != last[SECTION_OF_KIND[obj[0]]].get(k) for k in keys)),
        key=order,
    )
    fitted, refused = _admit(roles, wanted, kept, changes, contributions, limit, headroom)
    bundle, written = _finished(roles, fitted)
    added = any(k not in last[s] for s in SECTIONS for k in fitted[s])
    if len(written) > limit - (headroom if added else 0):
        # The estimate was off: admit no change at all rather than write too much.
        refused = frozenset(changes)
        bundle, written = _finished(roles, kept)
    return BundleFit(bundle, written, len(data), refused)


def _finished(roles: tuple[str, ...], fitted: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], bytes]:
    _drop_dangling_domains(fitted)
    bundle = build_bundle(roles, *(fitted[s] for s in SECTIONS))
    return bundle, serialize_bundle(bundle)


def _admit(
    roles: tuple[str, ...],
    wanted: Mapping[str, Mapping[str, Any]],
    kept: dict[str, dict[str, Any]],
    changes: list[ObjectKey],
    contributions: Mapping[ObjectKey, Iterable[str]],
    limit: int,
    headroom: int,
) -> tuple[dict[str, dict[str, Any]], frozenset[ObjectKey]]:
    """Admit changes in order while the estimated size stays within the limit, less the headroom for an
    addition (`fit_bundle` measures it)."""
    fitted = {s: dict(kept[s]) for s in SECTIONS}
    size = len(serialize_bundle(build_bundle(roles, *(fitted[s] for s in SECTIONS))))
    refused: set[ObjectKey] = set()
    for kind, name in changes:
        section = SECTION_OF_KIND[kind]
        keys = list(contributions[(kind, name)])
        entries = {k: wanted[section][k] for k in keys}
        provider = _provider(kind, name, list(entries.values()))
        if section != IDENTITY_PROVIDERS and provider not in fitted[IDENTITY_PROVIDERS]:
            refused.add((kind, name))  # its IdentityProvider was left out: routing to it would break the bundle
            continue
        cost = sum(_entry_bytes(k, v) - _entry_bytes(k, fitted[section].get(k))
                   for k, v in entries.items())
        if not fitted[section] and entries:
            cost += _EMPTY_SECTION_OPENING
        addition = any(k not in fitted[section] for k in keys)
        if size + cost > limit - (headroom if addition else 0):
            refused.add((kind, name))
            continue
        fitted[section].update(entries)
        size += cost
    return fitted, frozenset(refused)


def _provider(kind: str, name: str, entries: list[Any]) -> str:
    """The IdentityProvider an object's entries belong to: itself, or the one its entries name."""
    if SECTION_OF_KIND[kind] == IDENTITY_PROVIDERS:
        return name
    return next((str(e["identityProvider"]) for e in entries if isinstance(e, dict) and e.get("identityProvider")), "")


# An empty section is `{}`; its first entry puts the braces on lines of their own ("{\n" ... "\n  }"),
# two bytes more than the separator `_entry_bytes` counts.
_EMPTY_SECTION_OPENING = 2


def _entry_bytes(key: str, entry: Any) -> int:
    """What one entry adds to the serialized bundle: its text at its depth (a section's entries are all at
    the same one), plus the separator."""
    if entry is None:
        return 0
    alone = json.dumps({"section": {key: entry}}, sort_keys=True, indent=2, ensure_ascii=False).encode()
    empty_section = len(b'{\n  "section": {\n') + len(b"\n  }\n}")
    return len(alone) - empty_section + len(b",\n")


def _drop_dangling_domains(fitted: dict[str, dict[str, Any]]) -> None:
    """A kept domain entry whose IdentityProvider is gone would make the whole bundle invalid to the app."""
    providers = fitted[IDENTITY_PROVIDERS]
    for domain, entry in list(fitted[DOMAINS].items()):
        if isinstance(entry, dict) and entry.get("identityProvider") not in providers:
            del fitted[DOMAINS][domain]
