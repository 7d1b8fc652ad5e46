"""SAML single logout for one IdentityProvider, on python3-saml: both directions, both bindings.

SP-initiated: :meth:`SamlLogout.start` gives the IdP's SLO URL with a signed LogoutRequest (HTTP-Redirect,
python3-saml's only outgoing binding); the IdP's LogoutResponse comes back to ``/slo`` and must answer
that request (InResponseTo). IdP-initiated: the IdP's LogoutRequest arrives at ``/slo``; the answer is a
signed LogoutResponse to the IdP's SLO response URL.

Incoming messages must be signed, whatever the binding: HTTP-Redirect carries the signature in the
query (python3-saml checks it, ``wantMessagesSigned``), HTTP-POST inside the XML (checked here with
python3-saml's ``validate_sign`` before the message is handed to python3-saml, which reads only the
Redirect binding). An unsigned logout message would let any site log a user out.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

from keyplane.app.errors import LoginError
from keyplane.app.saml import SamlLogin, request_data
from keyplane.app.saml_response import SamlAuth

_DEPRECATED = {C.RSA_SHA1, C.DSA_SHA1, C.SHA1}


@dataclass(frozen=True)
class IdPLogoutRequest:
    """The IdP asks to end the sessions of ``name_id``; ``reply`` is where the browser goes next."""

    identity_provider: str
    name_id: str | None
    session_indexes: tuple[str, ...]
    reply: str


@dataclass(frozen=True)
class IdPLogoutResponse:
    """The IdP confirmed the logout this browser started."""

    identity_provider: str


class SamlLogout:
    def __init__(self, login: SamlLogin) -> None:
        self.login = login
        self.idp = login.idp
        base = copy.deepcopy(dict(login.idp.saml or {}))
        base.setdefault("security", {}).setdefault("rejectDeprecatedAlgorithm", True)
        redirect = copy.deepcopy(base)
        redirect["security"]["wantMessagesSigned"] = True
        post = copy.deepcopy(base)
        post["security"]["wantMessagesSigned"] = False  # the XML signature is checked here first
        self._redirect = OneLogin_Saml2_Settings(redirect, sp_validation_only=False)
        self._post = OneLogin_Saml2_Settings(post, sp_validation_only=False)
        self._reject_deprecated = base["security"]["rejectDeprecatedAlgorithm"] is not False

    @property
    def slo_url(self) -> str:
        sp = (self.idp.saml or {}).get("sp") or {}
        return str((sp.get("singleLogoutService") or {}).get("url") or "")

    @property
    def idp_supports_slo(self) -> bool:
        return bool(self._redirect.get_idp_slo_url())

    def start(
        self, name_id: str, session_index: str | None, name_id_format: str | None, relay_state: str
    ) -> tuple[str, str]:
        """The IdP URL that ends the IdP session (a signed LogoutRequest), and that request's ID."""
        auth = SamlAuth(request_data(self.slo_url), self._redirect)
        url = auth.logout(
            return_to=relay_state, name_id=name_id, session_index=session_index, name_id_format=name_id_format
        )
        return str(url), str(auth.get_last_request_id())

    def receive(
        self, params: dict[str, str], *, posted: bool, request_id: str | None
    ) -> IdPLogoutRequest | IdPLogoutResponse:
        """Validate a LogoutRequest or LogoutResponse (``params``: the query or the form)."""
        settings = self._redirect
        fields = ("SAMLRequest", "SAMLResponse", "RelayState", "SigAlg", "Signature")
        message = {k: params[k] for k in fields if k in params}
        if "SAMLRequest" not in message and "SAMLResponse" not in message:
            raise LoginError(
                "no SAMLRequest or SAMLResponse in the logout message", status=400, code="saml.slo_missing"
            )
        if posted:
            self._check_xml_signature(message)
            settings = self._post
            message.pop("SigAlg", None)
            message.pop("Signature", None)
        auth = SamlAuth(request_data(self.slo_url, get_data=message), settings)
        try:
            reply = auth.process_slo(keep_local_session=True, request_id=request_id)
        except Exception as exc:  # python3-saml raises on malformed input
            raise LoginError(f"invalid SAML logout message: {exc}", status=400, code="saml.slo_malformed") from exc
        if auth.get_errors():
            reason = auth.get_last_error_reason() or ", ".join(auth.get_errors())
            raise LoginError(f"SAML logout message refused: {reason}", code="saml.slo_refused")
        if "SAMLResponse" in message:
            return IdPLogoutResponse(self.idp.name)
        request_xml = auth.get_last_request_xml()
        message_id = OneLogin_Saml2_Logout_Request.get_id(request_xml)
        if not self.login.replay.remember(f"saml-slo:{self.idp.name}:{message_id}", None):
            raise LoginError("SAML logout request refused: it was already used (replay)", code="saml.slo_replay")
        name_id = OneLogin_Saml2_Logout_Request.get_nameid(request_xml)
        indexes = tuple(OneLogin_Saml2_Logout_Request.get_session_indexes(request_xml))
        return IdPLogoutRequest(self.idp.name, name_id, indexes, str(reply))

    def _check_xml_signature(self, message: dict[str, str]) -> None:
        """HTTP-POST: the message must carry a valid XML signature by the IdP (SHA-256 unless allowed)."""
        kind = "LogoutRequest" if "SAMLRequest" in message else "LogoutResponse"
        raw = message.get("SAMLRequest") or message.get("SAMLResponse") or ""
        try:
            xml = OneLogin_Saml2_XML.to_etree(OneLogin_Saml2_Utils.decode_base64_and_inflate(raw, ignore_zip=True))
        except Exception as exc:
            raise LoginError(f"invalid SAML {kind}: {exc}", status=400, code="saml.slo_malformed") from exc
        xpath = f"/samlp:{kind}/ds:Signature"
        if len(OneLogin_Saml2_XML.query(xml, xpath)) != 1:
            raise LoginError(f"SAML {kind} refused: it is not signed", code="saml.slo_unsigned")
        if self._reject_deprecated:
            algorithms = {
                node.get("Algorithm")
                for node in OneLogin_Saml2_XML.query(xml, f"{xpath}//ds:SignatureMethod | {xpath}//ds:DigestMethod")
            }
            if algorithms & _DEPRECATED:
                raise LoginError(
                    f"SAML {kind} refused: signed with SHA-1 (spec.saml.allowDeprecatedAlgorithms of the "
                    "IdentityProvider allows it)",
                    code="saml.deprecated_algorithm",
                )
        if not OneLogin_Saml2_Utils.validate_sign(xml, xpath=xpath, raise_exceptions=False, **self._idp_certs()):
            raise LoginError(f"SAML {kind} refused: its signature is invalid", code="saml.slo_signature")

    def _idp_certs(self) -> dict[str, Any]:
        idp = self._post.get_idp_data()
        multi = (idp.get("x509certMulti") or {}).get("signing")
        return {"multicerts": multi} if multi else {"cert": idp.get("x509cert")}
