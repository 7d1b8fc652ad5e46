"""Role effects: a user's effective role from defaultUserRole and the roles bound to their groups."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from keyplane.app.bundle import ScimConnection


def highest_role(roles: Sequence[str], candidates: Iterable[str | None]) -> str | None:
    """The most privileged candidate; privilege order is the order of ``roles`` (first = most).

    Candidates that are None or not in ``roles`` grant nothing. With an empty ``roles`` list the
    order is unknown, so the first candidate wins.
    """
    present = [c for c in candidates if c is not None]
    if not roles:
        return present[0] if present else None
    ranked = [c for c in present if c in roles]
    return min(ranked, key=roles.index) if ranked else None


def group_role(connection: ScimConnection, group: str) -> str | None:
    """The role a group grants: its binding, else ``unboundGroupRole`` (None grants nothing)."""
    if group in connection.group_bindings:
        return connection.group_bindings[group]
    return connection.unbound_group_role


def effective_role(
    roles: Sequence[str], connection: ScimConnection, groups: Iterable[str], *, active: bool = True
) -> str | None:
    """A provisioned user's role: None when inactive, else the highest of the default and group roles."""
    if not active:
        return None
    return highest_role(roles, [connection.default_user_role, *(group_role(connection, g) for g in groups)])
