"""SAML 2.0 SP per IdentityProvider, on python3-saml: AuthnRequest, ACS validation, SP metadata.

python3-saml validates signatures (xmlsec), audience, destination, conditions (with its
``ALLOWED_CLOCK_DRIFT`` clock-skew tolerance, 300 s) and InResponseTo, and refuses SHA-1
signatures and digests (``security.rejectDeprecatedAlgorithm``, on unless the bundle turns it off
for the IdP: ``spec.saml.allowDeprecatedAlgorithms``). What it leaves to its users is added here:
replay protection (consumed assertion IDs are remembered until their ``NotOnOrAfter``), refusing
unsolicited (IdP-initiated) responses unless ``allowIdPInitiated``, and refusing an unsolicited
response that says it answers a request (``InResponseTo``): that is another browser's login.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants
from onelogin.saml2.settings import OneLogin_Saml2_Settings

from keyplane.app.bundle import IdentityProvider
from keyplane.app.errors import LoginError
from keyplane.app.replay import Replay
from keyplane.app.saml_response import SamlAuth
from keyplane.contract import SPMetadataError, sp_metadata_xml

#: python3-saml's tolerance for clock differences with the IdP, in seconds.
CLOCK_SKEW_SECONDS = OneLogin_Saml2_Constants.ALLOWED_CLOCK_DRIFT


@dataclass(frozen=True)
class SamlIdentity:
    """What a validated assertion says about the user."""

    identity_provider: str
    name_id: str | None
    email: str | None
    groups: tuple[str, ...]
    attributes: Mapping[str, Sequence[str]] = field(default_factory=dict)
    session_index: str | None = None
    name_id_format: str | None = None  # with name_id and session_index: what a LogoutRequest names


def request_data(
    url: str, post_data: Mapping[str, str] | None = None, get_data: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """python3-saml's request description for a URL the SP declared (not what a proxy forwarded).

    The ACS URL comes from the settings the operator rendered, so Destination and Recipient are
    checked against the URL the IdP was told to post to, whatever the reverse proxies in between.
    """
    parts = urlsplit(url)
    return {
        "https": "on" if parts.scheme == "https" else "off",
        "http_host": parts.netloc,
        "script_name": parts.path,
        "get_data": dict(get_data or {}),
        "post_data": dict(post_data or {}),
    }


class SamlLogin:
    """The SP side of one SAML IdentityProvider."""

    def __init__(self, idp: IdentityProvider, replay: Replay) -> None:
        if idp.saml is None:
            raise ValueError(f"identity provider {idp.name} is not SAML")
        self.idp = idp
        self.replay = replay
        settings = copy.deepcopy(dict(idp.saml))
        # Secure by default for bundles that predate the setting: only an explicit false allows SHA-1.
        settings.setdefault("security", {}).setdefault("rejectDeprecatedAlgorithm", True)
        self.settings = OneLogin_Saml2_Settings(settings, sp_validation_only=False)

    @property
    def acs_url(self) -> str:
        return str(self.idp.saml["sp"]["assertionConsumerService"]["url"])  # type: ignore[index]

    def login_url(self, relay_state: str) -> tuple[str, str]:
        """The IdP URL to redirect the browser to, and the AuthnRequest ID to expect back."""
        auth = SamlAuth(request_data(self.acs_url), self.settings)
        url = auth.login(return_to=relay_state, set_nameid_policy=True)
        return str(url), str(auth.get_last_request_id())

    def metadata(self) -> str:
        """The SP metadata XML: the very document the operator writes (one builder, `keyplane.contract`)."""
        try:
            return sp_metadata_xml(dict(self.idp.saml or {}))
        except SPMetadataError as exc:
            raise LoginError(f"invalid SP metadata: {exc}", status=500) from None

    def consume(self, saml_response: str, request_id: str | None) -> SamlIdentity:
        """Validate a posted ``SAMLResponse`` and return the identity it asserts.

        :param request_id: the ID of the AuthnRequest this browser started (from the signed
            RelayState), or None for an IdP-initiated login.
        """
        if request_id is None and not self.idp.allow_idp_initiated:
            raise LoginError(
                "unsolicited SAML response refused: IdP-initiated login is not allowed "
                "(spec.saml.allowIdPInitiated of the IdentityProvider)",
                code="saml.unsolicited",
            )
        auth = SamlAuth(request_data(self.acs_url, {"SAMLResponse": saml_response}), self.settings)
        try:
            auth.process_response(request_id=request_id)
        except Exception as exc:  # python3-saml raises on malformed input
            raise LoginError(f"invalid SAML response: {exc}", code="saml.malformed") from exc
        if auth.get_errors() or not auth.is_authenticated():
            reason = auth.get_last_error_reason() or ", ".join(auth.get_errors())
            raise LoginError(f"SAML response refused: {_explain(reason)}", code=_refusal_code(reason))
        answers = _in_response_to(auth.get_last_response_xml() or "")
        if request_id is None and answers:
            # python3-saml checks InResponseTo only against a request it is given.
            raise LoginError(
                "unsolicited SAML response refused: it answers a request (InResponseTo) "
                "that this browser did not start",
                code="saml.unsolicited_in_response_to",
            )
        if request_id is not None and answers != {request_id}:
            raise LoginError(
                "SAML response refused: it does not answer this browser's request (InResponseTo)",
                code="saml.in_response_to",
            )
        assertion_id = auth.get_last_assertion_id()
        not_on_or_after = auth.get_last_assertion_not_on_or_after()
        expiry = datetime.datetime.fromtimestamp(not_on_or_after, datetime.UTC) if not_on_or_after else None
        if not assertion_id or not self.replay.remember(f"saml:{self.idp.name}:{assertion_id}", expiry):
            raise LoginError("SAML assertion refused: it was already used (replay)", code="saml.replay")
        attributes: dict[str, list[str]] = {
            k: [str(v) for v in vs] for k, vs in auth.get_attributes().items()
        }
        mapping = self.idp.attribute_mapping
        name_id = auth.get_nameid()
        email = _first(attributes.get(mapping.get("email", "email"), []))
        if email is None and name_id and "@" in name_id:
            email = name_id
        groups = tuple(attributes.get(mapping.get("groups", "groups"), []))
        return SamlIdentity(
            self.idp.name,
            name_id,
            email,  # canonicalised by the login policy (keyplane.policy), not here
            groups,
            attributes,
            auth.get_session_index(),
            auth.get_nameid_format(),
        )


def _first(values: Sequence[str]) -> str | None:
    return values[0] if values else None


def _in_response_to(response_xml: str) -> set[str]:
    """Every InResponseTo of a validated (decrypted) Response: its own and its SubjectConfirmationData's."""
    if not response_xml:
        return set()
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    root = etree.fromstring(response_xml.encode(), parser)
    values = {root.get("InResponseTo")}
    values.update(node.get("InResponseTo") for node in root.iter(f"{{{SAML_NS}}}SubjectConfirmationData"))
    return {str(v) for v in values if v}


SAML_NS = OneLogin_Saml2_Constants.NS_SAML

#: python3-saml's messages of the refusals an admin can act on, with the setting that changes them.
_HINTS = {
    "Deprecated signature algorithm": "spec.saml.allowDeprecatedAlgorithms of the IdentityProvider "
    "allows SHA-1; better, switch the IdP to RSA-SHA256",
    "Deprecated digest algorithm": "spec.saml.allowDeprecatedAlgorithms of the IdentityProvider "
    "allows SHA-1; better, switch the IdP to SHA-256",
}


def _explain(reason: str) -> str:
    for start, hint in _HINTS.items():
        if reason.startswith(start):
            return f"{reason} ({hint})"
    return reason


def _refusal_code(reason: str) -> str:
    if reason.startswith("Deprecated"):
        return "saml.deprecated_algorithm"
    if "ignature" in reason:
        return "saml.signature"
    return "saml.invalid_response"
