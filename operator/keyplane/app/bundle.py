"""The identity bundle: its typed view and a store that reloads it from the mounted Secret file.

Kubernetes updates a mounted Secret by writing a new timestamped directory and swapping the
``..data`` symlink atomically; the file path then resolves to a new inode. The store notices
that on its next read (at most every ``poll_interval`` seconds) and reloads. A file that does
not parse or does not validate keeps the last good bundle, and the reason is logged once.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from keyplane.contract import BUNDLE_API_VERSION, parse_time
from keyplane.policy.domains import InvalidDomain, canonical_domain
from keyplane.policy.email import InvalidEmail, canonical_email
from keyplane.policy.enforcement import Enforcement, parse_enforcement

log = logging.getLogger("keyplane.app.bundle")

NO_ROLE = "None"


class BundleError(ValueError):
    """The bundle does not follow the contract."""


@dataclass(frozen=True)
class TokenHash:
    """The SHA-256 of a SCIM bearer token, and when it stops being accepted (None: never)."""

    sha256: str
    not_after: datetime.datetime | None


@dataclass(frozen=True)
class IdentityProvider:
    """One IdentityProvider of the bundle."""

    name: str
    protocol: Literal["SAML", "OIDC"]
    display_name: str
    saml: Mapping[str, Any] | None = None
    oidc: Mapping[str, Any] | None = None
    attribute_mapping: Mapping[str, str] = field(default_factory=dict)
    allow_idp_initiated: bool = False


@dataclass(frozen=True)
class Domain:
    """An SSODomain entry: which IdP an email domain logs in with, and whether it must.

    ``name`` and ``break_glass_users`` are canonical (:mod:`keyplane.policy.email`).
    """

    name: str
    identity_provider: str
    enforcement: Enforcement
    break_glass_users: frozenset[str]


@dataclass(frozen=True)
class ScimConnection:
    """One ScimConnection: where its endpoint is, its tokens and its effects on roles."""

    name: str
    endpoint_path: str
    token_hashes: tuple[TokenHash, ...]
    identity_provider: str | None
    default_user_role: str | None
    deprovision_action: Literal["Deactivate", "Delete"]
    user_identifier: Literal["email", "userName"]
    group_bindings: Mapping[str, str]
    unbound_group_role: str | None


@dataclass(frozen=True)
class Bundle:
    """The typed, validated content of ``identity.json``."""

    roles: tuple[str, ...]
    identity_providers: Mapping[str, IdentityProvider]
    domains: Mapping[str, Domain]
    scim: Mapping[str, ScimConnection]
    sha256: str = ""

    @classmethod
    def empty(cls) -> Bundle:
        """A bundle that declares nothing: no SSO, no SCIM, every local login allowed."""
        return cls(roles=(), identity_providers={}, domains={}, scim={})

    @classmethod
    def from_json(cls, raw: bytes) -> Bundle:
        """Parse and validate the bytes of ``identity.json``."""
        try:
            document = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BundleError(f"not valid JSON: {exc}") from exc
        bundle = cls.from_dict(document)
        return cls(
            roles=bundle.roles,
            identity_providers=bundle.identity_providers,
            domains=bundle.domains,
            scim=bundle.scim,
            sha256=hashlib.sha256(raw).hexdigest(),
        )

    @classmethod
    def from_dict(cls, document: Any) -> Bundle:
        """Validate a decoded bundle document."""
        if not isinstance(document, dict):
            raise BundleError("the bundle is not a JSON object")
        if document.get("apiVersion") != BUNDLE_API_VERSION:
            raise BundleError(
                f"apiVersion must be {BUNDLE_API_VERSION!r}, got {document.get('apiVersion')!r}"
            )
        try:
            roles = tuple(str(role) for role in document.get("roles") or ())
            idps = {
                name: _identity_provider(name, spec)
                for name, spec in (document.get("identityProviders") or {}).items()
            }
            domains = _domains(document.get("domains") or {})
            scim = {name: _scim_connection(name, spec) for name, spec in (document.get("scim") or {}).items()}
        except (InvalidDomain, InvalidEmail) as exc:
            raise BundleError(f"malformed bundle: {exc}") from exc
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise BundleError(f"malformed bundle: {type(exc).__name__}: {exc}") from exc
        for domain in domains.values():
            if domain.identity_provider not in idps:
                raise BundleError(
                    f"domain {domain.name} names unknown identity provider {domain.identity_provider}"
                )
        paths: set[str] = set()
        for connection in scim.values():
            if connection.endpoint_path in paths:
                raise BundleError(f"two SCIM connections share the endpoint path {connection.endpoint_path}")
            paths.add(connection.endpoint_path)
            for role in (
                connection.default_user_role,
                connection.unbound_group_role,
                *connection.group_bindings.values(),
            ):
                if role is not None and roles and role not in roles:
                    raise BundleError(f"SCIM connection {connection.name} uses unknown role {role!r}")
        return cls(roles=roles, identity_providers=idps, domains=domains, scim=scim)

    def connections_for(self, identity_provider: str) -> list[ScimConnection]:
        """The SCIM connections that provision the users of an IdP."""
        return [c for c in self.scim.values() if c.identity_provider == identity_provider]


def _domains(table: Mapping[str, Any]) -> dict[str, Domain]:
    """The domain table, canonical; a missing or unknown ``enforcement`` is an error, never Optional."""
    domains: dict[str, Domain] = {}
    for raw_name, spec in table.items():
        name = canonical_domain(raw_name)
        if name in domains:
            raise ValueError(f"domain {name} is listed twice")
        try:
            enforcement = parse_enforcement(spec.get("enforcement"))
        except ValueError as exc:
            raise ValueError(f"domain {name}: {exc}") from exc
        domains[name] = Domain(
            name=name,
            identity_provider=spec["identityProvider"],
            enforcement=enforcement,
            break_glass_users=frozenset(canonical_email(u) for u in spec.get("breakGlassUsers") or ()),
        )
    return domains


def _identity_provider(name: str, spec: Mapping[str, Any]) -> IdentityProvider:
    protocol = spec["protocol"]
    if protocol not in ("SAML", "OIDC"):
        raise ValueError(f"identity provider {name}: unknown protocol {protocol!r}")
    if protocol == "SAML" and not isinstance(spec.get("saml"), dict):
        raise ValueError(f"identity provider {name}: a SAML provider needs a 'saml' settings object")
    if protocol == "OIDC" and not isinstance(spec.get("oidc"), dict):
        raise ValueError(f"identity provider {name}: an OIDC provider needs an 'oidc' object")
    mapping = spec.get("attributeMapping") or spec.get("claimMapping") or {}
    return IdentityProvider(
        name=name,
        protocol=protocol,
        display_name=spec.get("displayName") or name,
        saml=spec.get("saml"),
        oidc=spec.get("oidc"),
        attribute_mapping=dict(mapping),
        allow_idp_initiated=bool(spec.get("allowIdPInitiated", False)),
    )


def _role(value: Any) -> str | None:
    return None if value in (None, "", NO_ROLE) else str(value)


def _scim_connection(name: str, spec: Mapping[str, Any]) -> ScimConnection:
    path = "/" + str(spec["endpointPath"]).strip("/")
    action = spec.get("deprovisionAction", "Deactivate")
    if action not in ("Deactivate", "Delete"):
        raise ValueError(f"SCIM connection {name}: unknown deprovisionAction {action!r}")
    identifier = spec.get("userIdentifier", "email")
    if identifier not in ("email", "userName"):
        raise ValueError(f"SCIM connection {name}: unknown userIdentifier {identifier!r}")
    hashes = tuple(
        TokenHash(sha256=str(h["sha256"]).lower(), not_after=parse_time(h.get("notAfter")))
        for h in spec.get("tokenHashes") or ()
    )
    return ScimConnection(
        name=name,
        endpoint_path=path,
        token_hashes=hashes,
        identity_provider=spec.get("identityProvider"),
        default_user_role=_role(spec.get("defaultUserRole")),
        deprovision_action=action,
        user_identifier=identifier,
        group_bindings={str(k): str(v) for k, v in (spec.get("groupBindings") or {}).items()},
        unbound_group_role=_role(spec.get("unboundGroupRole")),
    )


BundleListener = Callable[[Bundle], None]


class BundleStore:
    """Holds the last good bundle read from a file, and reloads it when the file changes.

    :param path: the mounted file, e.g. ``/etc/keyplane/identity.json``.
    :param poll_interval: how often (seconds) a read checks the file; 0 checks on every read.
    :param required: raise at construction if the first load fails (otherwise start empty).
    """

    def __init__(
        self, path: str | os.PathLike[str], *, poll_interval: float = 2.0, required: bool = False
    ) -> None:
        self.path = Path(path)
        self.poll_interval = poll_interval
        self._bundle = Bundle.empty()
        self._signature: tuple[int, int, int, str] | None = None
        self._checked_at = float("-inf")
        self._last_error: str | None = None
        self._lock = threading.Lock()
        self._listeners: list[BundleListener] = []
        loaded = self.refresh()
        if required and not loaded:
            raise BundleError(f"cannot load the identity bundle {self.path}: {self._last_error}")

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> BundleStore:
        """A store that holds a fixed bundle (tests, or apps that build the bundle themselves)."""
        store = cls.__new__(cls)
        store.path = Path(os.devnull)
        store.poll_interval = float("inf")
        store._bundle = bundle
        store._signature = None
        store._checked_at = float("inf")
        store._last_error = None
        store._lock = threading.Lock()
        store._listeners = []
        return store

    @property
    def bundle(self) -> Bundle:
        """The current bundle; checks the file if the poll interval has passed."""
        if time.monotonic() - self._checked_at >= self.poll_interval:
            self.refresh()
        return self._bundle

    @property
    def last_error(self) -> str | None:
        """Why the last reload failed, or None when the current file is the loaded one."""
        return self._last_error

    def on_change(self, listener: BundleListener) -> None:
        """Call ``listener(bundle)`` after each successful reload that changed the content."""
        self._listeners.append(listener)

    def _stat(self) -> tuple[int, int, int, str]:
        real = os.path.realpath(self.path)
        st = os.stat(real)
        return (st.st_ino, st.st_mtime_ns, st.st_size, real)

    def refresh(self) -> bool:
        """Reload the file if it changed. Returns False when the current file cannot be used."""
        with self._lock:
            self._checked_at = time.monotonic()
            try:
                signature = self._stat()
            except OSError as exc:
                return self._fail(f"cannot read {self.path}: {exc.strerror or exc}")
            if signature == self._signature:
                return self._last_error is None
            try:
                raw = self.path.read_bytes()
            except OSError as exc:
                return self._fail(f"cannot read {self.path}: {exc.strerror or exc}")
            digest = hashlib.sha256(raw).hexdigest()
            if digest == self._bundle.sha256:
                self._signature = signature
                self._last_error = None
                return True
            try:
                bundle = Bundle.from_json(raw)
            except BundleError as exc:
                # The signature is remembered so the same bad file is not parsed again
                # on every read; a new swap changes it.
                self._signature = signature
                return self._fail(f"{self.path}: {exc}")
            self._bundle = bundle
            self._signature = signature
            self._last_error = None
            listeners = list(self._listeners)
        log.info(
            "loaded identity bundle %s (sha256 %s, %d IdPs, %d domains, %d SCIM connections)",
            self.path,
            bundle.sha256[:12],
            len(bundle.identity_providers),
            len(bundle.domains),
            len(bundle.scim),
        )
        for listener in listeners:
            try:
                listener(bundle)
            except Exception:
                log.exception("bundle listener failed")
        return True

    def _fail(self, reason: str) -> bool:
        if reason != self._last_error:
            if self._bundle.sha256:
                log.warning(
                    "keeping the last good identity bundle (sha256 %s): %s", self._bundle.sha256[:12], reason
                )
            else:
                log.warning("no identity bundle loaded yet: %s", reason)
        self._last_error = reason
        return False
