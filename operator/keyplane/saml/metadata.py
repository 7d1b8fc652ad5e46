"""IdP metadata: what Keyplane needs from an IdP, from a metadata document or typed in by hand."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C

from keyplane.saml.certificates import CertificateInfo, certificate_from_der, load_certificate
from keyplane.saml.entities import (
    IDP_SSO_DESCRIPTOR,
    NS_DS,
    NS_MD,
    SAML2_PROTOCOL,
    entity_id_of,
    select_entity,
)
from keyplane.saml.errors import MetadataError, capped_list
from keyplane.saml.safexml import DEFAULT_MAX_BYTES, parse_xml, string_value
from keyplane.setting_names import setting_hint

BINDING_REDIRECT: str = C.BINDING_HTTP_REDIRECT
BINDING_POST: str = C.BINDING_HTTP_POST
# Browser SSO needs a front-channel binding; SOAP and Artifact are ignored on purpose.
_PREFERRED_BINDINGS = (BINDING_REDIRECT, BINDING_POST)
_SHORT_BINDING = {BINDING_REDIRECT: "HTTP-Redirect", BINDING_POST: "HTTP-POST"}
_FULL_BINDING = {short: full for full, short in _SHORT_BINDING.items()}

_NS = {"md": NS_MD, "ds": NS_DS}


def short_binding(binding: str) -> str:
    """`HTTP-Redirect` / `HTTP-POST` for a binding URN (the form used in spec and status)."""
    return _SHORT_BINDING.get(binding, binding)


def full_binding(binding: str) -> str:
    """The binding URN for `HTTP-Redirect` / `HTTP-POST` (a URN is accepted as is)."""
    if binding in _SHORT_BINDING:
        return binding
    try:
        return _FULL_BINDING[binding]
    except KeyError:
        raise MetadataError(
            "NoSSOService", f"unsupported SSO binding {binding!r}: use HTTP-Redirect or HTTP-POST"
        ) from None


@dataclass(frozen=True)
class IdPMetadata:
    """What Keyplane takes from an IdP: endpoints and certificates."""

    entity_id: str
    sso_url: str
    sso_binding: str
    slo_url: str | None
    slo_binding: str | None
    signing_certificates: tuple[CertificateInfo, ...]
    name_id_formats: tuple[str, ...]
    encryption_certificates: tuple[CertificateInfo, ...] = field(default=())
    valid_until: datetime | None = None  # the earliest validUntil of the entity and its enclosing aggregates

    def status_dict(self) -> dict[str, Any]:
        return {
            "entityID": self.entity_id,
            "ssoURL": self.sso_url,
            "ssoBinding": short_binding(self.sso_binding),
            "sloURL": self.slo_url,
            "certificates": [c.to_status() for c in self.signing_certificates],
        }


def check_url(url: str, what: str, *, allow_http: bool) -> str:
    """An absolute https URL (http too when `allow_http`, for local test IdPs)."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        host = None
    if not host or parts.scheme not in ("https", "http") or any(c.isspace() for c in url):
        raise MetadataError("SSOURLNotHTTPS", f"the {what} {url!r} is not an absolute https:// URL")
    if parts.scheme == "http" and not allow_http:
        raise MetadataError(
            "SSOURLNotHTTPS",
            f"the {what} {url!r} uses http://; the IdP must use https:// (plain http is only "
            f"allowed with the operator's {setting_hint('allow_insecure_http')}, for local test IdPs)",
        )
    return url


def _text(node: etree._Element) -> str:
    return string_value(node).strip()


def _pick_endpoint(descriptor: etree._Element, tag: str) -> tuple[str, str] | None:
    endpoints = [
        (e.get("Binding", "").strip(), e.get("Location", "").strip())
        for e in descriptor.findall(f"md:{tag}", _NS)
    ]
    for binding in _PREFERRED_BINDINGS:
        for found, location in endpoints:
            if found == binding and location:
                return binding, location
    return None


def _certificates(descriptor: etree._Element, *, signing: bool) -> list[CertificateInfo]:
    """Certificates of the descriptor's KeyDescriptors; no `use` means both signing and encryption."""
    wanted = "signing" if signing else "encryption"
    result: dict[str, CertificateInfo] = {}
    for position, key in enumerate(descriptor.findall("md:KeyDescriptor", _NS), start=1):
        use = (key.get("use") or "").strip()
        if use and use != wanted:
            continue
        for node in key.findall("ds:KeyInfo/ds:X509Data/ds:X509Certificate", _NS):
            text = "".join(_text(node).split())
            try:
                der = base64.b64decode(text, validate=True)
                cert = certificate_from_der(der)
            except (binascii.Error, ValueError, MetadataError) as exc:
                if not signing:
                    continue  # an unusable encryption key must not block sign-in
                detail = exc.message if isinstance(exc, MetadataError) else "it is not valid base64"
                raise MetadataError(
                    "CertificateInvalid",
                    f"the signing certificate in KeyDescriptor #{position} of the IDPSSODescriptor "
                    f"is unusable: {detail}",
                ) from None
            result.setdefault(cert.sha256, cert)
    return list(result.values())


def _saml2_idp_descriptor(entity: etree._Element) -> etree._Element:
    descriptors = entity.findall(IDP_SSO_DESCRIPTOR)
    for descriptor in descriptors:
        if SAML2_PROTOCOL in (descriptor.get("protocolSupportEnumeration") or "").split():
            return descriptor
    if descriptors:
        protocols = sorted(
            {p for d in descriptors for p in (d.get("protocolSupportEnumeration") or "").split()}
        )
        raise MetadataError(
            "NoIdPDescriptor",
            f"entity {entity_id_of(entity)!r} is an IdP for {capped_list(protocols, 4) or 'no protocol'}, "
            f"not SAML 2.0 ({SAML2_PROTOCOL}); Keyplane needs a SAML 2.0 IdP",
        )
    raise MetadataError(
        "NoIdPDescriptor",
        f"entity {entity_id_of(entity)!r} has no IDPSSODescriptor: it is not an identity provider",
    )


def idp_metadata_from_entity(entity: etree._Element, *, allow_http: bool = False) -> IdPMetadata:
    """Extract and validate the IdP facts of one EntityDescriptor element."""
    entity_id = entity_id_of(entity)
    if not entity_id:
        raise MetadataError("MetadataMalformed", "the EntityDescriptor has no entityID attribute")
    descriptor = _saml2_idp_descriptor(entity)

    sso = _pick_endpoint(descriptor, "SingleSignOnService")
    if sso is None:
        bindings = sorted({e.get("Binding", "?") for e in descriptor.findall("md:SingleSignOnService", _NS)})
        raise MetadataError(
            "NoSSOService",
            f"the IdP {entity_id!r} has no SingleSignOnService with the HTTP-Redirect or HTTP-POST "
            f"binding (found: {capped_list(bindings, 5) or 'none'})",
        )
    sso_binding, sso_url = sso
    check_url(sso_url, "SSO URL", allow_http=allow_http)

    slo = _pick_endpoint(descriptor, "SingleLogoutService")
    slo_binding, slo_url = slo if slo else (None, None)
    if slo_url is not None:
        check_url(slo_url, "single logout URL", allow_http=allow_http)

    signing = _certificates(descriptor, signing=True)
    if not signing:
        raise MetadataError(
            "NoSigningCertificate",
            f'the IdP {entity_id!r} publishes no signing certificate (KeyDescriptor use="signing" '
            "with an X509Certificate), so its responses cannot be verified",
        )
    encryption = _certificates(descriptor, signing=False)

    formats = dict.fromkeys(_text(n) for n in descriptor.findall("md:NameIDFormat", _NS))
    return IdPMetadata(
        entity_id=entity_id,
        sso_url=sso_url,
        sso_binding=sso_binding,
        slo_url=slo_url,
        slo_binding=slo_binding,
        signing_certificates=tuple(signing),
        name_id_formats=tuple(f for f in formats if f),
        encryption_certificates=tuple(encryption),
    )


# Documents already parsed: (sha256 and type of the document, entity, options) -> what was read. The same
# document comes back at every periodic check of an IdP, and several IdentityProviders may carry one IdP's
# metadata. Only successes are kept (refusals raise); expiry is checked at every call, against its `now`.
_PARSED: dict[tuple[Any, ...], IdPMetadata] = {}
_PARSED_MAX = 256


def parse_idp_metadata(
    xml: bytes | str,
    entity_id: str | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    allow_http: bool = False,
    signing_fingerprint: str | None = None,
    now: datetime | None = None,
) -> IdPMetadata:
    """Parse IdP metadata (a single EntityDescriptor or an aggregate) into IdPMetadata.

    With ``now``, a document whose ``validUntil`` has passed is refused (MetadataExpired).

    With `signing_fingerprint`, the document (or the selected entity) must carry a valid
    enveloped signature by that certificate; it is checked on the very tree that is then read,
    so what was verified is what is used. Raises MetadataError only.
    """
    encoded = xml.encode("utf-8", errors="surrogatepass") if isinstance(xml, str) else xml  # as parse_xml does
    key = (hashlib.sha256(encoded).digest(), type(xml), entity_id, max_bytes, allow_http, signing_fingerprint)
    idp = _PARSED.get(key)
    if idp is None:
        idp = _parse_idp_metadata(xml, entity_id, max_bytes, allow_http, signing_fingerprint)
        if len(_PARSED) >= _PARSED_MAX:
            del _PARSED[next(iter(_PARSED))]  # the oldest entry
        _PARSED[key] = idp
    if now is not None and idp.valid_until is not None and idp.valid_until <= now:
        raise MetadataError(
            "MetadataExpired",
            f"the IdP metadata expired at {idp.valid_until.isoformat().replace('+00:00', 'Z')} (its validUntil); "
            "the IdP must publish a fresh document (ask its admin to re-sign or re-export it)",
        )
    return idp


def _parse_idp_metadata(xml: bytes | str, entity_id: str | None, max_bytes: int, allow_http: bool,
                        signing_fingerprint: str | None) -> IdPMetadata:
    root = parse_xml(xml, max_bytes=max_bytes)
    entity = select_entity(root, entity_id)
    if signing_fingerprint is not None:
        from keyplane.saml.signature import verify_tree_signature  # signature imports this module

        verify_tree_signature(root, entity, signing_fingerprint)
    valid_until = metadata_valid_until(entity)
    return replace(idp_metadata_from_entity(entity, allow_http=allow_http), valid_until=valid_until)


def metadata_valid_until(entity: etree._Element) -> datetime | None:
    """The earliest ``validUntil`` of the entity and every enclosing EntitiesDescriptor (SAML metadata §2.3)."""
    moments = []
    node: etree._Element | None = entity
    while node is not None:
        raw = node.get("validUntil")
        if raw is not None:
            moments.append(_xs_datetime(raw.strip()))
        node = node.getparent()
    return min(moments) if moments else None


def _xs_datetime(text: str) -> datetime:
    """An xs:dateTime (``2026-12-01T10:00:00Z``, fractions allowed); no zone means UTC."""
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise MetadataError(
            "MetadataMalformed", f"validUntil {text[:40]!r} is not an xs:dateTime (e.g. 2026-12-01T10:00:00Z)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def manual_idp_metadata(
    entity_id: str,
    sso_url: str,
    sso_binding: str,
    slo_url: str | None,
    certificates: list[str],
    *,
    allow_http: bool = False,
) -> IdPMetadata:
    """IdPMetadata from the spec's `manual` block, validated like a metadata document."""
    if not entity_id or not entity_id.strip():
        raise MetadataError(
            "MetadataMalformed", "manual.entityID is empty: copy the IdP's entity ID (issuer)"
        )
    binding = full_binding(sso_binding.strip())
    sso = check_url(sso_url, "SSO URL", allow_http=allow_http)
    slo = (
        check_url(slo_url, "single logout URL", allow_http=allow_http)
        if slo_url and slo_url.strip()
        else None
    )
    loaded: dict[str, CertificateInfo] = {}
    for index, text in enumerate(certificates):
        try:
            cert = load_certificate(text)
        except MetadataError as exc:
            raise MetadataError(
                "CertificateInvalid", f"manual.certificates[{index}]: {exc.message}"
            ) from None
        loaded.setdefault(cert.sha256, cert)
    if not loaded:
        raise MetadataError(
            "NoSigningCertificate",
            "manual.certificates is empty: add the IdP's signing certificate (PEM)",
        )
    return IdPMetadata(
        entity_id=entity_id.strip(),
        sso_url=sso,
        sso_binding=binding,
        slo_url=slo,
        slo_binding=BINDING_REDIRECT if slo else None,
        signing_certificates=tuple(loaded.values()),
        name_id_formats=(),
    )
