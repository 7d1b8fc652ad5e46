"""IdentityProvider: a SAML 2.0 or OIDC identity provider and the service provider Keyplane declares to it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .common import (
    CONDITIONS_DESCRIPTION,
    CONDITIONS_LIST_EXTRA,
    Condition,
    ConfigMapKeyReference,
    Duration,
    SecretKeyReference,
    SecretReference,
    SpecModel,
    StatusModel,
    cel,
    spec_config,
)

EMAIL_NAMEID = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
FINGERPRINT_PATTERN = r"^(?i:(sha256:)?[0-9a-f]{2}(:?[0-9a-f]{2}){31})$"


class SAMLMetadataSource(SpecModel):
    """Where the IdP's SAML metadata document comes from: exactly one of url, configMapRef, inline."""

    model_config = spec_config(
        cel(
            "[has(self.url), has(self.configMapRef), has(self.inline)].filter(x, x).size() == 1",
            "set exactly one of metadata.url, metadata.configMapRef, metadata.inline",
        ),
        cel(
            "!has(self.refreshInterval) || has(self.url)",
            "metadata.refreshInterval only applies to metadata.url",
        ),
    )

    url: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^https?://",
        description="URL of the IdP's metadata document (https), fetched and refreshed by the operator.",
    )
    configMapRef: ConfigMapKeyReference | None = Field(
        default=None, description="A ConfigMap key holding the metadata XML; re-read when the ConfigMap changes."
    )
    inline: str | None = Field(default=None, max_length=1048576, description="The metadata XML document itself.")
    refreshInterval: Duration | None = Field(
        default=None, description="How often a metadata url is re-fetched (conditional GET). Default 1h."
    )
    signingCertificateFingerprint: str | None = Field(
        default=None,
        pattern=FINGERPRINT_PATTERN,
        description=(
            "SHA-256 fingerprint (sha256:AB:CD:...) of the certificate that must have signed the metadata "
            "document; unsigned or otherwise-signed metadata is then refused."
        ),
    )
    entityID: str | None = Field(
        default=None,
        max_length=1024,
        description="Entity ID to select when the document is an aggregate (EntitiesDescriptor) of several IdPs.",
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> SAMLMetadataSource:
        if sum(x is not None for x in (self.url, self.configMapRef, self.inline)) != 1:
            raise ValueError("set exactly one of metadata.url, metadata.configMapRef, metadata.inline")
        if self.refreshInterval is not None and self.url is None:
            raise ValueError("metadata.refreshInterval only applies to metadata.url")
        return self


class SAMLManualConfig(SpecModel):
    """The IdP described by hand, for IdPs whose admins copy three values instead of a metadata document."""

    entityID: str = Field(min_length=1, max_length=1024, description="The IdP's entity ID (issuer).")
    ssoURL: str = Field(max_length=2048, pattern=r"^https?://", description="The IdP's single sign-on URL (https).")
    ssoBinding: Literal["HTTP-Redirect", "HTTP-POST"] = Field(
        default="HTTP-Redirect", description="Binding of the single sign-on URL."
    )
    sloURL: str = Field(default="", max_length=2048, description="The IdP's single logout URL (optional).")
    certificates: list[str] = Field(
        min_length=1,
        max_length=8,
        description="The IdP's signing certificates (PEM). Several during a certificate rollover.",
    )


class AttributeMapping(SpecModel):
    """Names of the SAML attributes that carry each user property."""

    email: str = Field(default="email", description="Attribute holding the email (NameID is used if absent).")
    firstName: str = Field(default="firstName", description="Attribute holding the given name.")
    lastName: str = Field(default="lastName", description="Attribute holding the family name.")
    groups: str = Field(default="groups", description="Attribute holding the group names (multi-valued).")


class SAMLConfig(SpecModel):
    """SAML 2.0 settings: where the IdP is described, and how the service provider behaves."""

    model_config = spec_config(
        cel("has(self.metadata) != has(self.manual)", "set exactly one of saml.metadata or saml.manual")
    )

    metadata: SAMLMetadataSource | None = Field(default=None, description="The IdP's metadata document.")
    manual: SAMLManualConfig | None = Field(
        default=None, description="The IdP described by hand (no metadata document)."
    )
    attributeMapping: AttributeMapping = Field(
        default_factory=AttributeMapping, description="Which SAML attributes carry email, names and groups."
    )
    nameIDFormat: str = Field(default=EMAIL_NAMEID, max_length=256, description="NameID format to request.")
    signAuthnRequests: bool = Field(
        default=True,
        description="Sign AuthnRequests; the operator issues and renews the SP signing key pair in a Secret.",
    )
    wantAssertionsSigned: bool = Field(default=True, description="Refuse assertions that are not signed.")
    wantAssertionsEncrypted: bool = Field(
        default=False,
        description=(
            "Require encrypted assertions: the SP metadata publishes the SP key pair's certificate as the "
            "encryption key (KeyDescriptor use=\"encryption\") and unencrypted assertions are refused."
        ),
    )
    allowIdPInitiated: bool = Field(
        default=False, description="Accept unsolicited (IdP-initiated) responses. Off: only SP-initiated logins."
    )
    allowDeprecatedAlgorithms: bool = Field(
        default=False,
        description=(
            "Accept RSA-SHA1 signatures and SHA-1 digests, for old ADFS farms that cannot sign with SHA-256. "
            "Off: responses signed with SHA-1 are refused."
        ),
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> SAMLConfig:
        if (self.metadata is None) == (self.manual is None):
            raise ValueError("set exactly one of saml.metadata or saml.manual")
        return self


class ClaimMapping(SpecModel):
    """Names of the ID-token / userinfo claims that carry each user property."""

    email: str = Field(default="email", description="Claim holding the email.")
    firstName: str = Field(default="given_name", description="Claim holding the given name.")
    lastName: str = Field(default="family_name", description="Claim holding the family name.")
    groups: str = Field(default="groups", description="Claim holding the group names.")


class OIDCConfig(SpecModel):
    """OpenID Connect settings (authorization code flow with PKCE)."""

    issuer: str = Field(
        max_length=2048,
        pattern=r"^https?://",
        description="Issuer URL; discovery is read from <issuer>/.well-known/openid-configuration.",
    )
    clientID: str = Field(min_length=1, max_length=512, description="OAuth client ID registered at the IdP.")
    clientSecretRef: SecretKeyReference | None = Field(
        default=None, description="Secret key holding the client secret (omit for a public client with PKCE)."
    )
    scopes: list[str] = Field(
        default_factory=lambda: ["openid", "email", "profile"],
        max_length=32,
        description="Scopes to request; must include openid.",
    )
    claimMapping: ClaimMapping = Field(
        default_factory=ClaimMapping, description="Which claims carry email, names and groups."
    )
    refreshInterval: Duration = Field(default="24h", description="How often discovery and JWKS are re-read.")
    allowMissingEmailVerified: bool = Field(
        default=False,
        description=(
            "Accept ID tokens without an email_verified claim (Microsoft Entra ID never sends one). Off: the "
            "claim must be true; the email of an absent claim is refused. Turn on only for a provider that "
            "verifies every address it issues."
        ),
    )


class ServiceProviderConfig(SpecModel):
    """Where the platform serves the login endpoints."""

    baseURL: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^https?://[^/]+(/.*)?$",
        description="External base URL of the platform. Default: the operator's defaultBaseURL setting.",
    )


class IdentityProviderSpec(SpecModel):
    """Desired state of an IdentityProvider."""

    model_config = spec_config(
        cel(
            "self.protocol == 'SAML' ? (has(self.saml) && !has(self.oidc)) : (has(self.oidc) && !has(self.saml))",
            "set spec.saml (and not spec.oidc) when protocol is SAML, spec.oidc (and not spec.saml) "
            "when protocol is OIDC",
        )
    )

    displayName: str | None = Field(default=None, max_length=128, description="Name shown on the login page.")
    protocol: Literal["SAML", "OIDC"] = Field(description="SAML or OIDC.")
    saml: SAMLConfig | None = Field(default=None, description="Required when protocol is SAML.")
    oidc: OIDCConfig | None = Field(default=None, description="Required when protocol is OIDC.")
    serviceProvider: ServiceProviderConfig = Field(
        default_factory=ServiceProviderConfig, description="The platform side of the trust."
    )

    @model_validator(mode="after")
    def _protocol_block(self) -> IdentityProviderSpec:
        if self.protocol == "SAML" and (self.saml is None or self.oidc is not None):
            raise ValueError("protocol SAML needs spec.saml and no spec.oidc")
        if self.protocol == "OIDC" and (self.oidc is None or self.saml is not None):
            raise ValueError("protocol OIDC needs spec.oidc and no spec.saml")
        return self


class ServiceProviderStatus(StatusModel):
    """What the IdP admin pastes into Okta, Entra ID, Google or Keycloak."""

    entityID: str | None = Field(default=None, description="SP entity ID (audience).")
    acsURL: str | None = Field(default=None, description="Assertion consumer service URL.")
    metadataURL: str | None = Field(default=None, description="Where the platform serves the SP metadata.")
    redirectURI: str | None = Field(default=None, description="OIDC redirect URI.")
    sloURL: str | None = Field(default=None, description="SAML single logout service URL (Redirect and POST).")
    postLogoutRedirectURI: str | None = Field(
        default=None, description="OIDC post_logout_redirect_uri to register at the provider (RP-initiated logout)."
    )
    signingCertificateSecretRef: SecretReference | None = Field(
        default=None,
        description="Secret with the SP key pair (tls.crt, tls.key): signs AuthnRequests and decrypts assertions.",
    )


class CertificateStatus(StatusModel):
    """One IdP certificate."""

    sha256: str = Field(description="SHA-256 fingerprint.")
    subject: str = Field(default="", description="Subject DN.")
    notAfter: str = Field(default="", description="Expiry (RFC 3339).")


class IdentityProviderObserved(StatusModel):
    """The IdP as resolved from metadata, manual settings or OIDC discovery."""

    entityID: str | None = Field(default=None, description="IdP entity ID.")
    ssoURL: str | None = Field(default=None, description="IdP single sign-on URL.")
    ssoBinding: str | None = Field(default=None, description="Binding of the SSO URL.")
    sloURL: str | None = Field(default=None, description="IdP single logout URL.")
    certificates: list[CertificateStatus] | None = Field(default=None, description="IdP signing certificates.")
    issuer: str | None = Field(default=None, description="OIDC issuer.")
    authorizationEndpoint: str | None = Field(default=None, description="OIDC authorization endpoint.")
    tokenEndpoint: str | None = Field(default=None, description="OIDC token endpoint.")
    jwksURI: str | None = Field(default=None, description="OIDC JWKS URI.")


class MetadataStatus(StatusModel):
    """Bookkeeping of the last metadata (or discovery) retrieval."""

    lastAttemptTime: str | None = Field(default=None, description="When the source was last read.")
    lastSuccessTime: str | None = Field(default=None, description="When it was last read successfully.")
    sha256: str | None = Field(default=None, description="SHA-256 of the document in use.")
    etag: str | None = Field(default=None, description="ETag of the document in use.")


class IdentityProviderStatus(StatusModel):
    """Observed state of an IdentityProvider."""

    observedGeneration: int | None = Field(default=None, description="Generation last reconciled.")
    conditions: list[Condition] | None = Field(
        default=None, description=CONDITIONS_DESCRIPTION, json_schema_extra=CONDITIONS_LIST_EXTRA
    )
    serviceProvider: ServiceProviderStatus | None = Field(default=None, description="SP values for the IdP side.")
    identityProvider: IdentityProviderObserved | None = Field(default=None, description="The resolved IdP.")
    metadata: MetadataStatus | None = Field(default=None, description="Metadata retrieval bookkeeping.")
