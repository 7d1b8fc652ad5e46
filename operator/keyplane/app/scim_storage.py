"""A scim2-server storage backend over :class:`keyplane.app.storage.Storage` (a partition per connection)."""

from __future__ import annotations

import datetime
import json
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Union, cast

from scim2_models import (
    AttributeBinding,
    InvalidValueException,
    Meta,
    NotFoundException,
    Path,
    PreconditionFailedException,
    Resource,
    ResourceType,
    ResponseParameters,
    ScimFilter,
    ScimProvider,
    SearchRequest,
    Uniqueness,
    UniquenessException,
)
from scim2_models.path import CompareOperator, Comparison
from scim2_server.handler import ScimHandler
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.storage import ScimStorage, SearchPage
from scim2_server.utils import parametrize
from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from keyplane.app.clock import Clock, utcnow
from keyplane.app.storage import ChangeAction, Storage, members, next_seq, resources, unique_values
from keyplane.policy.email import try_canonical_email

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"

#: SCIM attributes kept in indexed columns, in their comparable form, by resource type and URN.
INDEXED: dict[str, dict[str, str]] = {
    "User": {
        f"{USER_URN}:userName": "user_name",
        f"{USER_URN}:externalId": "external_id",
        f"{USER_URN}:displayName": "display_name",
    },
    "Group": {
        f"{GROUP_URN}:displayName": "display_name",
        f"{GROUP_URN}:externalId": "external_id",
    },
}

#: Attributes never stored: ``groups`` is derived from the groups' members, passwords are not kept.
NOT_STORED = {"id", "meta", "groups", "password"}


def _aware(value: datetime.datetime) -> datetime.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=datetime.UTC)


def _equality(scim_filter: ScimFilter[Any] | None) -> tuple[AttributeBinding, str] | None:
    """The attribute and string of a filter that is a single ``attr eq "string"``, if it is one."""
    if scim_filter is None or scim_filter.model is None:
        return None
    node = scim_filter.ast
    if not isinstance(node, Comparison) or node.op != CompareOperator.eq or not isinstance(node.value, str):
        return None
    binding = scim_filter.resolve_comparison(node.attr_path, strict=False)
    if binding is None or binding.is_multivalued or binding.target_type is not str:
        return None
    return binding, node.value


def email_values(data: dict[str, Any]) -> list[object]:
    """Every ``emails[].value`` of a User, as sent."""
    return [e.get("value") for e in data.get("emails") or [] if isinstance(e, dict) and "value" in e]


def user_name_key(value: str) -> str:
    """The comparable ``userName``: the canonical address when it is one, else case-folded (caseExact false)."""
    return try_canonical_email(value) or value.lower()


def primary_email(data: dict[str, Any]) -> str | None:
    """The primary email of a stored user (else the work one, else the first), canonical."""
    emails = [e for e in data.get("emails") or [] if isinstance(e, dict) and e.get("value")]
    if not emails:
        return None
    chosen = (
        next((e for e in emails if e.get("primary")), None)
        or next((e for e in emails if e.get("type") == "work"), None)
        or emails[0]
    )
    return try_canonical_email(str(chosen["value"]))


DeprovisionAction = Callable[[], str]
#: Why the connection may not store a User with these attributes (None: it may). See keyplane.policy.access.
AddressGuard = Callable[[dict[str, Any]], "str | None"]


class SqlScimStorage(ScimStorage):
    """scim2-server's :class:`~scim2_server.storage.ScimStorage` over SQL, for one connection.

    :param deprovision_action: returns the connection's current ``deprovisionAction``
        (``Deactivate`` keeps a deleted user as a blocked tombstone, ``Delete`` removes it).
    :param address_guard: refuses Users whose ``userName`` or ``emails`` the connection's IdP does
        not own (400 ``invalidValue``, nothing stored); every write of a User goes through it, and
        every User added to a group's ``members`` (checked on its stored addresses).
    """

    supports_cursors = False

    def __init__(
        self,
        storage: Storage,
        partition: str,
        provider: ScimProvider,
        *,
        address_guard: AddressGuard,
        deprovision_action: DeprovisionAction = lambda: "Deactivate",
        clock: Clock = utcnow,
    ) -> None:
        self.address_guard = address_guard
        self.storage = storage
        self.partition = partition
        self.provider = provider
        self.deprovision_action = deprovision_action
        self.clock = clock
        self._unique_bindings: dict[type[Any], list[AttributeBinding]] = {}
        self._column_bindings: dict[str, dict[str, AttributeBinding]] = {}
        self._local = threading.local()

    @contextmanager
    def locking(self, enabled: bool = True) -> Iterator[None]:
        """Within it, reading a resource locks its row until the operation commits (``FOR UPDATE``).

        scim2-server reads, then writes a PATCH/PUT/DELETE in one :meth:`operation` (one transaction):
        with the row locked, a concurrent PATCH of the same group (Okta and Entra ID send them in
        parallel) waits, then reads the result, so no member is lost and ``meta.version`` counts every
        change. SQLite has no row locks and needs none: its writes are serialised.
        """
        previous = getattr(self._local, "locking", False)
        self._local.locking = enabled
        try:
            yield
        finally:
            self._local.locking = previous

    # -- helpers ------------------------------------------------------------------

    def model_of(self, resource_type: ResourceType) -> type[Resource[Any]]:
        return cast(type[Resource[Any]], self.provider.model_for(resource_type))

    @contextmanager
    def operation(self) -> Iterator[None]:
        with self.provider, self.storage.transaction():
            yield

    def _bindings(self, resource_type: ResourceType) -> dict[str, AttributeBinding]:
        name = cast(str, resource_type.name)
        if name not in self._column_bindings:
            model = self.model_of(resource_type)
            self._column_bindings[name] = {
                column: cast(AttributeBinding, parametrize(Path, model)(urn).resolve())
                for urn, column in INDEXED.get(name, {}).items()
            }
        return self._column_bindings[name]

    def _columns(
        self, resource_type: ResourceType, resource: Resource[Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        values: dict[str, Any] = {"user_name": None, "external_id": None, "display_name": None}
        for column, binding in self._bindings(resource_type).items():
            raw = parametrize(Path, type(resource))(binding.urn).get(resource, strict=False)
            try:
                values[column] = binding.comparable(raw) if raw is not None else None
            except ValueError:
                values[column] = None
        values["label"] = data.get("displayName")
        if resource_type.name == "User":
            values["email"] = primary_email(data)
            active = data.get("active")
            values["active"] = True if active is None else bool(active)
            if values["user_name"] is not None:
                values["user_name"] = user_name_key(str(data.get("userName", "")))
        else:
            values["email"] = None
            values["active"] = None
        return values

    def _unique(self, resource: Resource[Any]) -> dict[str, str]:
        model = type(resource)
        if model not in self._unique_bindings:
            paths = parametrize(Path, model).iter_paths(
                include_subattributes=False, uniqueness=[Uniqueness.server, Uniqueness.global_]
            )
            self._unique_bindings[model] = [cast(AttributeBinding, p.resolve()) for p in paths]
        found: dict[str, str] = {}
        for binding in self._unique_bindings[model]:
            raw = parametrize(Path, model)(binding.urn).get(resource, strict=False)
            try:
                value = binding.comparable(raw)
            except ValueError:
                continue
            if value is not None:
                found[binding.urn] = value if isinstance(value, str) else json.dumps(value, default=str)
        return found

    def _check_unique(self, connection: Connection, resource_id: str, values: dict[str, str]) -> None:
        for urn, value in values.items():
            owner = connection.execute(
                select(unique_values.c.resource_id).where(
                    unique_values.c.partition == self.partition,
                    unique_values.c.urn == urn,
                    unique_values.c.value == value,
                )
            ).scalar()
            if owner is not None and owner != resource_id:
                raise UniquenessException(detail=f"{urn.rpartition(':')[2]} is already taken")

    def _write_unique(self, connection: Connection, resource_id: str, values: dict[str, str]) -> None:
        """Claim the unique values; the primary key decides between concurrent claims (on any replica)."""
        connection.execute(
            delete(unique_values).where(
                unique_values.c.partition == self.partition, unique_values.c.resource_id == resource_id
            )
        )
        if values:
            try:
                connection.execute(
                    insert(unique_values),
                    [
                        {"partition": self.partition, "urn": urn, "value": value, "resource_id": resource_id}
                        for urn, value in values.items()
                    ],
                )
            except IntegrityError as exc:
                # A concurrent request claimed the value after _check_unique looked (the transaction is
                # rolled back as the exception leaves it).
                taken = ", ".join(sorted(urn.rpartition(":")[2] for urn in values))
                raise UniquenessException(detail=f"{taken} is already taken") from exc

    @staticmethod
    def _dump(resource: Resource[Any]) -> dict[str, Any]:
        data = resource.model_dump(mode="json")
        for key in NOT_STORED:
            data.pop(key, None)
        return data

    def _row(self, connection: Connection, resource_type: ResourceType, resource_id: str | None) -> Any:
        query = select(resources).where(
            resources.c.id == (resource_id or ""),
            resources.c.partition == self.partition,
            resources.c.resource_type == resource_type.name,
            resources.c.deleted.is_(False),
        )
        if getattr(self._local, "locking", False):
            query = query.with_for_update()
        row = connection.execute(query).first()
        if row is None:
            raise NotFoundException(detail=f"{resource_type.name} {resource_id!r} not found")
        return row

    def _load(
        self, resource_type: ResourceType, row: Any, groups: Sequence[tuple[str, str]] | None = None
    ) -> Resource[Any]:
        data = json.loads(row.data)
        if groups:
            data["groups"] = [
                {"value": gid, "display": name, "$ref": f"Groups/{gid}", "type": "direct"}
                for gid, name in sorted(groups, key=lambda g: g[1])
            ]
        resource = self.model_of(resource_type).model_validate(data)
        resource.id = row.id
        resource.meta = Meta(
            resource_type=resource_type.name,
            created=_aware(row.created),
            last_modified=_aware(row.last_modified),
            version=f'W/"{row.version}"',
        )
        return resource

    def _load_many(
        self, connection: Connection, resource_type: ResourceType, rows: Sequence[Any]
    ) -> list[Resource[Any]]:
        groups = (
            self.storage.group_names_of(connection, self.partition, [r.id for r in rows])
            if resource_type.name == "User"
            else {}
        )
        return [self._load(resource_type, row, groups.get(row.id)) for row in rows]

    @staticmethod
    def _check_version(row: Any, expected_version: str | None) -> None:
        if expected_version is not None and f'W/"{row.version}"' != expected_version:
            raise PreconditionFailedException

    def _check_addresses(self, resource_type: ResourceType, data: dict[str, Any], old: Any = None) -> None:
        """Refuse a User whose addresses the connection's IdP does not own (keyplane.policy.access).

        Deactivating a user whose addresses are unchanged is always allowed: a domain that moved to
        another IdP must not block deprovisioning (login is refused for it anyway).
        """
        if resource_type.name != "User":
            return
        if old is not None and data.get("active") is False:
            before = json.loads(old.data)
            if (before.get("userName"), email_values(before)) == (data.get("userName"), email_values(data)):
                return
        refusal = self.address_guard(data)
        if refusal is not None:
            raise InvalidValueException(detail=refusal)

    def _check_members(self, connection: Connection, user_ids: Iterable[str]) -> None:
        """Refuse adding to a group a User whose stored addresses the connection's IdP does not own now.

        A user stored while its domain was the IdP's may since have moved to another IdP (or become
        break-glass): a group would give that other IdP's user a role in the app. Members that are not
        Users of this partition are left as scim2-server leaves them.
        """
        ids = sorted(set(user_ids))
        if not ids:
            return
        rows = connection.execute(
            select(resources.c.id, resources.c.data).where(
                resources.c.partition == self.partition,
                resources.c.resource_type == "User",
                resources.c.id.in_(ids),
            )
        ).all()
        for row in rows:
            refusal = self.address_guard(json.loads(row.data))
            if refusal is not None:
                raise InvalidValueException(detail=f"members: user {row.id}: {refusal}")

    def _deprovision(self) -> ChangeAction:
        return "delete" if self.deprovision_action() == "Delete" else "deactivate"

    # -- ScimStorage ----------------------------------------------------------------

    def get(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        response_parameters: ResponseParameters[Any] | None = None,
    ) -> Resource[Any]:
        with self.operation(), self.storage.transaction() as connection:
            row = self._row(connection, resource_type, resource_id)
            return self._load_many(connection, resource_type, [row])[0]

    def search(
        self, resource_types: list[ResourceType], search_request: SearchRequest[Any], *, position: Any = None
    ) -> SearchPage:
        with self.operation(), self.storage.transaction() as connection:
            names = list(dict.fromkeys(cast(str, rt.name) for rt in resource_types))
            by_name = {cast(str, rt.name): rt for rt in resource_types}
            scim_filter = search_request.filter
            base = select(resources).where(
                resources.c.partition == self.partition,
                resources.c.resource_type.in_(names),
                resources.c.deleted.is_(False),
            )
            start = search_request.start_index_0 or 0
            count = search_request.count
            if scim_filter is None and search_request.sort_by is None:
                total = connection.execute(select(func.count()).select_from(base.subquery())).scalar_one()
                query = base.order_by(resources.c.seq, resources.c.id).offset(start)
                if count is not None:
                    query = query.limit(count)
                rows = connection.execute(query).all()
                return SearchPage(total, self._load_rows(connection, by_name, rows))

            equality = _equality(scim_filter) if len(names) == 1 else None
            narrowed = False
            if equality is not None:
                binding, value = equality
                column = INDEXED.get(names[0], {}).get(binding.urn)
                if column is not None:
                    try:
                        wanted = binding.comparable(value)
                    except ValueError:
                        return SearchPage(0, [])
                    if column == "user_name":
                        wanted = user_name_key(value)
                    base = base.where(resources.c[column] == wanted)
                    narrowed = True
            if narrowed:
                # Sorting in Python keeps SQLite on the equality index (ORDER BY seq would make it
                # walk the whole partition in seq order).
                rows = sorted(connection.execute(base).all(), key=lambda r: r.seq)
            else:
                rows = list(connection.execute(base.order_by(resources.c.seq)).all())
            found = self._load_rows(connection, by_name, rows)
            if scim_filter is not None and not narrowed:
                if not scim_filter.models and found:
                    models = tuple(dict.fromkeys(type(r) for r in found))
                    scim_filter = parametrize(ScimFilter, Union[models])(str(scim_filter))  # noqa: UP007
                found = [r for r in found if scim_filter.match(r)]
            if search_request.sort_by is not None:
                descending = search_request.sort_order == SearchRequest.SortOrder.descending
                keyed = [(search_request.sort_value(r), r) for r in found]
                present = sorted(
                    (p for p in keyed if p[0] is not None), key=lambda p: p[0], reverse=descending
                )
                found = [r for _, r in present] + [r for v, r in keyed if v is None]
            stop = None if count is None else start + count
            return SearchPage(len(found), found[start:stop])

    def _load_rows(
        self, connection: Connection, by_name: dict[str, ResourceType], rows: Sequence[Any]
    ) -> list[Resource[Any]]:
        users = [r for r in rows if r.resource_type == "User"]
        groups = self.storage.group_names_of(connection, self.partition, [r.id for r in users])
        return [
            self._load(by_name[r.resource_type], r, groups.get(r.id) if r.resource_type == "User" else None)
            for r in rows
        ]

    def create(self, resource_type: ResourceType, resource: Resource[Any]) -> Resource[Any]:
        with self.operation(), self.storage.transaction() as connection:
            resource = resource.model_copy(deep=True)
            resource_id = uuid.uuid4().hex
            resource.id = resource_id
            data = self._dump(resource)
            self._check_addresses(resource_type, data)
            values = self._unique(resource)
            self._check_unique(connection, resource_id, values)
            now = self.clock()
            columns = self._columns(resource_type, resource, data)
            connection.execute(
                insert(resources).values(
                    id=resource_id,
                    partition=self.partition,
                    resource_type=resource_type.name,
                    version=1,
                    seq=next_seq(),
                    created=now,
                    last_modified=now,
                    deleted=False,
                    data=json.dumps(data),
                    **columns,
                )
            )
            self._write_unique(connection, resource_id, values)
            if resource_type.name == "Group":
                self._sync_members(connection, resource_id, data, label_changed=False)
            elif columns["active"]:
                self.storage.touch(self.partition, resource_id, "upsert")
            return self._load_many(
                connection, resource_type, [self._row(connection, resource_type, resource_id)]
            )[0]

    def create_many(self, resource_type: ResourceType, items: Sequence[Resource[Any]]) -> list[str]:
        """Store many new resources in one transaction (seeding, imports); returns their ids.

        The same rules as :meth:`create` (uniqueness, memberships), with batched statements.
        """
        rows: list[dict[str, Any]] = []
        uniques: list[dict[str, Any]] = []
        memberships: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        now = self.clock()
        with self.operation(), self.storage.transaction() as connection:
            for item in items:
                resource = item.model_copy(deep=True)
                resource.id = uuid.uuid4().hex
                data = self._dump(resource)
                self._check_addresses(resource_type, data)
                for urn, value in self._unique(resource).items():
                    if (urn, value) in seen:
                        raise UniquenessException(detail=f"{urn.rpartition(':')[2]} is already taken")
                    seen.add((urn, value))
                    uniques.append(
                        {"partition": self.partition, "urn": urn, "value": value, "resource_id": resource.id}
                    )
                rows.append(
                    {
                        "id": resource.id,
                        "partition": self.partition,
                        "resource_type": resource_type.name,
                        "version": 1,
                        "seq": next_seq(),
                        "created": now,
                        "last_modified": now,
                        "deleted": False,
                        "data": json.dumps(data),
                        **self._columns(resource_type, resource, data),
                    }
                )
                if resource_type.name == "Group":
                    memberships.extend(
                        {"partition": self.partition, "group_id": resource.id, "user_id": str(m["value"])}
                        for m in {m["value"]: m for m in data.get("members") or [] if m.get("value")}.values()
                    )
            self._refuse_stored_clash(connection, uniques)
            if rows:
                connection.execute(insert(resources), rows)
            if uniques:
                connection.execute(insert(unique_values), uniques)
            self._check_members(connection, (m["user_id"] for m in memberships))
            if memberships:
                connection.execute(insert(members), memberships)
            for row in rows:
                if resource_type.name == "User" and row["active"]:
                    self.storage.touch(self.partition, row["id"])
            for membership in memberships:
                self.storage.touch(self.partition, membership["user_id"])
        return [row["id"] for row in rows]

    def _refuse_stored_clash(self, connection: Connection, uniques: list[dict[str, Any]]) -> None:
        """Raise if a value of ``uniques`` is already taken in this partition (queried in chunks of 500)."""
        for chunk in range(0, len(uniques), 500):
            batch = uniques[chunk : chunk + 500]
            clash = connection.execute(
                select(unique_values.c.value).where(
                    unique_values.c.partition == self.partition,
                    unique_values.c.value.in_([u["value"] for u in batch]),
                )
            ).first()
            if clash is not None:
                raise UniquenessException(detail=f"{clash[0]} is already taken")

    def update(
        self, resource_type: ResourceType, resource: Resource[Any], *, expected_version: str | None = None
    ) -> Resource[Any]:
        with self.operation(), self.storage.transaction() as connection:
            row = self._row(connection, resource_type, resource.id)
            self._check_version(row, expected_version)
            data = self._dump(resource)
            self._check_addresses(resource_type, data, row)
            values = self._unique(resource)
            self._check_unique(connection, row.id, values)
            columns = self._columns(resource_type, resource, data)
            connection.execute(
                update(resources)
                .where(resources.c.id == row.id)
                .values(version=row.version + 1, last_modified=self.clock(), data=json.dumps(data), **columns)
            )
            self._write_unique(connection, row.id, values)
            if resource_type.name == "Group":
                self._sync_members(connection, row.id, data, label_changed=columns["label"] != row.label)
            else:
                was, now = bool(row.active), bool(columns["active"])
                if was and not now:
                    self.storage.touch(self.partition, row.id, self._deprovision())
                else:
                    self.storage.touch(self.partition, row.id, "upsert")
            return self._load_many(connection, resource_type, [self._row(connection, resource_type, row.id)])[
                0
            ]

    def delete(
        self, resource_type: ResourceType, resource_id: str, *, expected_version: str | None = None
    ) -> None:
        with self.operation(), self.storage.transaction() as connection:
            row = self._row(connection, resource_type, resource_id)
            self._check_version(row, expected_version)
            connection.execute(
                delete(unique_values).where(
                    unique_values.c.partition == self.partition, unique_values.c.resource_id == row.id
                )
            )
            if resource_type.name == "Group":
                user_ids = self._member_ids(connection, row.id)
                connection.execute(
                    delete(members).where(members.c.partition == self.partition, members.c.group_id == row.id)
                )
                connection.execute(delete(resources).where(resources.c.id == row.id))
                for user_id in user_ids:
                    self.storage.touch(self.partition, user_id)
                return
            action = self._deprovision()
            self.storage.touch(self.partition, row.id, action, snapshot=True)
            self._remove_from_groups(connection, row.id)
            if action == "delete":
                connection.execute(delete(resources).where(resources.c.id == row.id))
            else:
                connection.execute(
                    update(resources)
                    .where(resources.c.id == row.id)
                    .values(deleted=True, active=False, last_modified=self.clock(), version=row.version + 1)
                )

    # -- memberships ----------------------------------------------------------------

    def _member_ids(self, connection: Connection, group_id: str) -> list[str]:
        return list(
            connection.execute(
                select(members.c.user_id).where(
                    members.c.partition == self.partition, members.c.group_id == group_id
                )
            ).scalars()
        )

    def _sync_members(
        self, connection: Connection, group_id: str, data: dict[str, Any], *, label_changed: bool
    ) -> None:
        wanted = {
            str(m["value"]) for m in data.get("members") or [] if isinstance(m, dict) and m.get("value")
        }
        current = set(self._member_ids(connection, group_id))
        removed, added = current - wanted, wanted - current
        self._check_members(connection, added)
        if removed:
            connection.execute(
                delete(members).where(
                    members.c.partition == self.partition,
                    members.c.group_id == group_id,
                    members.c.user_id.in_(sorted(removed)),
                )
            )
        if added:
            connection.execute(
                insert(members),
                [
                    {"partition": self.partition, "group_id": group_id, "user_id": user_id}
                    for user_id in sorted(added)
                ],
            )
        for user_id in (current | wanted) if label_changed else (removed | added):
            self.storage.touch(self.partition, user_id)

    def _remove_from_groups(self, connection: Connection, user_id: str) -> None:
        """A deleted user leaves every group: the groups' ``members`` no longer list it."""
        group_ids = list(
            connection.execute(
                select(members.c.group_id).where(
                    members.c.partition == self.partition, members.c.user_id == user_id
                )
            ).scalars()
        )
        for group_id in sorted(group_ids):
            # Locked: a concurrent PATCH of the group must not be overwritten by this stale copy.
            row = connection.execute(
                select(resources).where(resources.c.id == group_id).with_for_update()
            ).first()
            if row is None:
                continue
            data = json.loads(row.data)
            data["members"] = [m for m in data.get("members") or [] if m.get("value") != user_id] or None
            if data["members"] is None:
                del data["members"]
            connection.execute(
                update(resources)
                .where(resources.c.id == group_id)
                .values(data=json.dumps(data), version=row.version + 1, last_modified=self.clock())
            )
        connection.execute(
            delete(members).where(members.c.partition == self.partition, members.c.user_id == user_id)
        )


#: Methods whose scim2-server operation reads a resource, then writes it.
READ_THEN_WRITE = {"PUT", "PATCH", "DELETE"}


class LockingScimHandler(ScimHandler):
    """scim2-server's handler, locking what PUT, PATCH and DELETE read (see :meth:`SqlScimStorage.locking`)."""

    storage: SqlScimStorage

    def handle(self, request: ScimRequest) -> ScimResponse:
        with self.storage.locking(request.method.upper() in READ_THEN_WRITE):
            return super().handle(request)

    def apply_bulk_operation(self, resource_type: ResourceType, operation: Any) -> Resource[Any] | None:
        method = str(getattr(operation.method, "value", operation.method)).upper()
        with self.storage.locking(method in READ_THEN_WRITE):
            return super().apply_bulk_operation(resource_type, operation)
