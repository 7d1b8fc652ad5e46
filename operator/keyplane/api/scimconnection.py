"""ScimConnection: a SCIM 2.0 endpoint an IdP provisions users and groups into, and its bearer token."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator

from .common import (
    CONDITIONS_DESCRIPTION,
    CONDITIONS_LIST_EXTRA,
    Condition,
    Duration,
    LocalObjectReference,
    ObjectName,
    SecretReference,
    SpecModel,
    StatusModel,
    cel,
    validations,
)

RoleName = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class TokenSettings(SpecModel):
    """The bearer token the IdP sends, kept in a Secret the operator owns."""

    secretName: ObjectName | None = Field(
        default=None, description="Secret holding the token (key `token`). Default <name>-scim-token."
    )
    rotationInterval: Duration = Field(
        default="2160h", description="Issue a new token this often; 0 disables scheduled rotation."
    )
    overlap: Duration = Field(default="24h", description="How long the previous token stays valid after a rotation.")
    deletionPolicy: Literal["Retain", "Delete"] = Field(
        default="Retain",
        description=(
            "Retain: the token Secret outlives this object, so a re-created ScimConnection adopts it and the "
            "IdP keeps working. Delete: the Secret is garbage-collected with this object."
        ),
    )


class ProvisioningSettings(SpecModel):
    """What provisioning does in the platform."""

    defaultUserRole: RoleName = Field(default="Member", description="Role of every provisioned user.")
    deprovisionAction: Literal["Deactivate", "Delete"] = Field(
        default="Deactivate", description="What a deprovisioned user becomes: blocked (kept) or deleted."
    )
    userIdentifier: Literal["email", "userName"] = Field(
        default="email", description="Which SCIM attribute identifies a user in the platform."
    )


class GroupBinding(SpecModel):
    """A pushed group and the role its members get."""

    group: str = Field(min_length=1, max_length=256, description="SCIM group displayName as pushed by the IdP.")
    role: RoleName = Field(description="Role granted to its members; one of the operator's roles.")


class ScimConnectionSpec(SpecModel):
    """Desired state of a ScimConnection."""

    identityProviderRef: LocalObjectReference | None = Field(
        default=None, description="The IdentityProvider whose users this connection provisions (optional)."
    )
    token: TokenSettings = Field(default_factory=TokenSettings, description="Bearer token settings.")
    provisioning: ProvisioningSettings = Field(
        default_factory=ProvisioningSettings, description="Effects of provisioning."
    )
    groupBindings: list[GroupBinding] = Field(
        default_factory=list,
        max_length=256,
        description="Pushed groups mapped to roles.",
        json_schema_extra=validations(
            cel(
                "self.all(b, self.exists_one(c, c.group == b.group))",
                "each group may appear only once in groupBindings",
            )
        ),
    )
    unboundGroupRole: str = Field(
        default="None",
        max_length=64,
        description="Role for members of a pushed group with no binding; None grants nothing.",
    )

    @field_validator("groupBindings")
    @classmethod
    def _unique_groups(cls, bindings: list[GroupBinding]) -> list[GroupBinding]:
        seen = set()
        for binding in bindings:
            if binding.group in seen:
                raise ValueError(f"group {binding.group} appears more than once in groupBindings")
            seen.add(binding.group)
        return bindings


class ScimConnectionStatus(StatusModel):
    """Observed state of a ScimConnection (never the token itself)."""

    observedGeneration: int | None = Field(default=None, description="Generation last reconciled.")
    conditions: list[Condition] | None = Field(
        default=None, description=CONDITIONS_DESCRIPTION, json_schema_extra=CONDITIONS_LIST_EXTRA
    )
    endpointURL: str | None = Field(default=None, description="SCIM base URL to paste into the IdP.")
    tokenSecretRef: SecretReference | None = Field(default=None, description="Where the bearer token is.")
    tokenIssuedAt: str | None = Field(default=None, description="When the current token was issued.")
    tokenRotatesAt: str | None = Field(default=None, description="When it will be rotated.")
    previousTokenExpiresAt: str | None = Field(
        default=None, description="When the previous token stops working (rotation overlap)."
    )
