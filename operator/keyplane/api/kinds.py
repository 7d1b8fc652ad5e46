"""The registry of Keyplane's kinds: names, models and printer columns, used by CRDs, handlers and render."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from .. import API_GROUP, API_VERSION
from .identityprovider import IdentityProviderSpec, IdentityProviderStatus
from .scimconnection import ScimConnectionSpec, ScimConnectionStatus
from .ssodomain import SSODomainSpec, SSODomainStatus

API_GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"
CATEGORY = "keyplane"


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    priority: int = 0
    description: str = ""


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec_model: type[BaseModel]
    status_model: type[BaseModel]
    description: str
    columns: tuple[PrinterColumn, ...]

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{API_GROUP}"


def _ready_columns() -> tuple[PrinterColumn, ...]:
    return (
        PrinterColumn("Ready", '.status.conditions[?(@.type=="Ready")].status', description="Ready condition"),
        PrinterColumn("Reason", '.status.conditions[?(@.type=="Ready")].reason', description="Why"),
    )


_AGE = PrinterColumn("Age", ".metadata.creationTimestamp", type="date")

IDENTITY_PROVIDER = Kind(
    kind="IdentityProvider",
    plural="identityproviders",
    singular="identityprovider",
    short_names=("idp",),
    spec_model=IdentityProviderSpec,
    status_model=IdentityProviderStatus,
    description="A SAML 2.0 or OIDC identity provider (Okta, Entra ID, Google Workspace, Keycloak, ...).",
    columns=(
        *_ready_columns(),
        PrinterColumn("Protocol", ".spec.protocol"),
        PrinterColumn("SSO URL", ".status.identityProvider.ssoURL", description="IdP single sign-on URL"),
        PrinterColumn("ACS URL", ".status.serviceProvider.acsURL", priority=1, description="Paste into the IdP"),
        PrinterColumn("Entity ID", ".status.serviceProvider.entityID", priority=1, description="SP entity ID"),
        PrinterColumn("Redirect URI", ".status.serviceProvider.redirectURI", priority=1, description="OIDC"),
        _AGE,
    ),
)

SSO_DOMAIN = Kind(
    kind="SSODomain",
    plural="ssodomains",
    singular="ssodomain",
    short_names=("ssod",),
    spec_model=SSODomainSpec,
    status_model=SSODomainStatus,
    description="Email domains whose users log in through an IdentityProvider.",
    columns=(
        *_ready_columns(),
        PrinterColumn("Domains", ".spec.domains"),
        PrinterColumn("IdP", ".spec.identityProviderRef.name"),
        PrinterColumn("Enforcement", ".spec.enforcement"),
        PrinterColumn("Verification", ".spec.verification.method", priority=1),
        _AGE,
    ),
)

SCIM_CONNECTION = Kind(
    kind="ScimConnection",
    plural="scimconnections",
    singular="scimconnection",
    short_names=("scim",),
    spec_model=ScimConnectionSpec,
    status_model=ScimConnectionStatus,
    description="A SCIM 2.0 endpoint an IdP provisions users and groups into, with its bearer token.",
    columns=(
        *_ready_columns(),
        PrinterColumn("Endpoint", ".status.endpointURL", description="SCIM base URL"),
        PrinterColumn("Token Secret", ".status.tokenSecretRef.name", priority=1),
        PrinterColumn("Token Rotates", ".status.tokenRotatesAt", priority=1),
        _AGE,
    ),
)

KINDS: tuple[Kind, ...] = (IDENTITY_PROVIDER, SSO_DOMAIN, SCIM_CONNECTION)
KINDS_BY_NAME: dict[str, Kind] = {k.kind: k for k in KINDS}
