"""SSODomain: email domains whose users log in through an IdentityProvider."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from ..policy.email import InvalidEmail, canonical_email, domain_of
from .common import (
    CONDITIONS_DESCRIPTION,
    CONDITIONS_LIST_EXTRA,
    Condition,
    LocalObjectReference,
    SpecModel,
    StatusModel,
    cel,
    spec_config,
)

# A lowercase DNS name of at least two labels; IDNs must be given in their A-label (xn--) form.
DOMAIN_PATTERN = r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"
DomainName = Annotated[str, StringConstraints(max_length=253, pattern=DOMAIN_PATTERN)]
EmailAddress = Annotated[str, StringConstraints(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]


class DomainVerification(SpecModel):
    """How ownership of the domains is proven before they are enforced."""

    method: Literal["None", "DNS"] = Field(
        default="None",
        description="None: trust the declaration. DNS: publish the TXT record shown in status first.",
    )


class SSODomainSpec(SpecModel):
    """Desired state of an SSODomain."""

    model_config = spec_config(
        cel(
            "!has(self.breakGlassUsers) || self.breakGlassUsers.all(u, "
            "self.domains.exists(d, u.lowerAscii().endsWith('@' + d)))",
            "every breakGlassUsers entry must be an email address of one of spec.domains",
        )
    )

    domains: list[DomainName] = Field(
        min_length=1,
        max_length=64,
        description="Lowercase DNS names (IDNs in xn-- form) whose users this applies to.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    identityProviderRef: LocalObjectReference = Field(description="The IdentityProvider these users log in with.")
    enforcement: Literal["Required", "Optional"] = Field(
        default="Required",
        description="Required: users of these domains must use the IdP. Optional: it is offered beside local login.",
    )
    breakGlassUsers: list[EmailAddress] = Field(
        default_factory=list,
        max_length=32,
        description="Emails that may still use local login while SSO is Required (emergency access).",
    )
    verification: DomainVerification = Field(
        default_factory=DomainVerification, description="Domain ownership verification."
    )

    @field_validator("domains")
    @classmethod
    def _unique_domains(cls, domains: list[str]) -> list[str]:
        seen = set()
        for domain in domains:
            if domain in seen:
                raise ValueError(f"domain {domain} is listed twice")
            seen.add(domain)
        return domains

    @model_validator(mode="after")
    def _break_glass_in_domains(self) -> SSODomainSpec:
        for user in self.breakGlassUsers:
            try:
                address = canonical_email(user)
            except InvalidEmail as exc:
                raise ValueError(f"breakGlassUsers entry {user!r} is not a valid email address: {exc}") from exc
            if domain_of(address) not in self.domains:
                raise ValueError(f"breakGlassUsers entry {user} is not in one of spec.domains")
        return self


class DomainStatus(StatusModel):
    """One domain's state."""

    name: str = Field(description="The domain.")
    verified: bool = Field(default=False, description="Ownership verified (always true with method None).")
    claimedBy: str | None = Field(
        default=None, description="The SSODomain that owns this domain (namespace/name when cluster-scoped)."
    )


class VerificationRecord(StatusModel):
    """A DNS TXT record to publish for verification."""

    domain: str = Field(description="The domain being verified.")
    recordName: str = Field(description="TXT record name (_keyplane-challenge.<domain>).")
    recordValue: str = Field(description="TXT record value.")


class SSODomainStatus(StatusModel):
    """Observed state of an SSODomain."""

    observedGeneration: int | None = Field(default=None, description="Generation last reconciled.")
    conditions: list[Condition] | None = Field(
        default=None, description=CONDITIONS_DESCRIPTION, json_schema_extra=CONDITIONS_LIST_EXTRA
    )
    domains: list[DomainStatus] | None = Field(default=None, description="Per-domain state.")
    verification: list[VerificationRecord] | None = Field(
        default=None, description="TXT records to publish (method DNS)."
    )
