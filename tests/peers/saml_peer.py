"""pysaml2 (PyPI) as the SAML IdP, signing and encrypting with Debian's xmlsec1.

Keys and certificates are generated at test time. The IdP publishes its metadata (signed or not), loads
the SP metadata Keyplane produced, verifies the SP's Redirect-binding AuthnRequest signature, and
answers with whatever response a test asks for, through pysaml2's own API.
"""

from __future__ import annotations

import base64
import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from .availability import need_xmlsec1

IDP_BASE = "https://idp.pysaml2.test"
IDP_ENTITY_ID = f"{IDP_BASE}/metadata"
SSO_URL = f"{IDP_BASE}/sso"
SLO_URL = f"{IDP_BASE}/slo"
EMAIL_ATTRIBUTE = "mail"
GROUPS_ATTRIBUTE = "groups"


def key_pair(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed RSA-2048 certificate and key, written as PEM files: (cert, key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / f"{name}.crt", folder / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


class PySaml2IdP:
    """One pysaml2 IdP; ``load_sp`` (re)creates its Server with an SP's metadata."""

    def __init__(self, folder: Path) -> None:
        self.xmlsec1 = need_xmlsec1()
        self.folder = folder
        self.cert_file, self.key_file = key_pair(folder, "pysaml2-idp")
        self.server: Any = None

    def config(self, sp_metadata: list[str] | None = None) -> Any:
        from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
        from saml2.config import IdPConfig
        from saml2.saml import NAME_FORMAT_URI, NAMEID_FORMAT_EMAILADDRESS

        settings: dict[str, Any] = {
            "entityid": IDP_ENTITY_ID,
            "service": {
                "idp": {
                    "endpoints": {
                        "single_sign_on_service": [(SSO_URL, BINDING_HTTP_REDIRECT), (SSO_URL, BINDING_HTTP_POST)],
                        "single_logout_service": [(SLO_URL, BINDING_HTTP_REDIRECT), (SLO_URL, BINDING_HTTP_POST)],
                    },
                    "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
                    "want_authn_requests_signed": True,
                    "policy": {"default": {"lifetime": {"minutes": 15}, "name_form": NAME_FORMAT_URI}},
                }
            },
            "key_file": str(self.key_file),
            "cert_file": str(self.cert_file),
            "encryption_keypairs": [{"key_file": str(self.key_file), "cert_file": str(self.cert_file)}],
            "xmlsec_binary": self.xmlsec1,
            "valid_for": 24,
        }
        if sp_metadata:
            settings["metadata"] = {"inline": sp_metadata}
        config = IdPConfig()
        config.load(settings)
        return config

    def metadata(self, *, signed: bool) -> str:
        """The IdP's metadata document, as pysaml2 publishes it (validUntil = now + 24 h)."""
        from saml2.metadata import entity_descriptor, sign_entity_descriptor
        from saml2.sigver import security_context

        config = self.config()
        descriptor = entity_descriptor(config)
        if not signed:
            return str(descriptor)
        _, xml = sign_entity_descriptor(descriptor, None, security_context(config))
        return str(xml)

    def load_sp_all(self, sp_metadata: list[str]) -> None:
        """Trust the SPs of ``sp_metadata`` (one pysaml2 Server for all of them)."""
        from saml2.server import Server

        self.server = Server(config=self.config(sp_metadata))

    @staticmethod
    def _read_signed_redirect(redirect_url: str, parse: Any, kind: str) -> Any:
        """A Redirect-binding message, parsed by ``parse`` (pysaml2's, which verifies the query signature)."""
        from saml2 import BINDING_HTTP_REDIRECT

        query = {k: v[0] for k, v in parse_qs(urlsplit(redirect_url).query).items()}
        assert "Signature" in query, f"the {kind} is not signed"
        message = parse(
            query["SAMLRequest"],
            BINDING_HTTP_REDIRECT,
            relay_state=query.get("RelayState"),
            sigalg=query["SigAlg"],
            signature=query["Signature"],
        )
        assert message is not None, f"pysaml2 refused the {kind}"
        return message

    def read_authn_request(self, redirect_url: str) -> Any:
        """The AuthnRequest of a Redirect-binding URL, its signature verified by pysaml2 (must be signed)."""
        return self._read_signed_redirect(redirect_url, self.server.parse_authn_request, "AuthnRequest")

    def response(
        self, sp_entity_id: str, acs_url: str, in_response_to: str | None, email: str, **options: Any
    ) -> str:
        """A base64 SAMLResponse for ``email``; ``options`` go to pysaml2's create_authn_response.

        RSA-SHA256 and SHA-256 unless ``options`` say otherwise (pysaml2's own default is SHA-1).
        """
        from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NameID
        from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

        options = {"sign_alg": SIG_RSA_SHA256, "digest_alg": DIGEST_SHA256, **options}
        response = self.server.create_authn_response(
            {EMAIL_ATTRIBUTE: [email], GROUPS_ATTRIBUTE: ["platform-admins"]},
            in_response_to,
            acs_url,
            sp_entity_id,
            name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=email),
            authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"},
            **options,
        )
        return base64.b64encode(str(response).encode()).decode()

    def read_logout_request(self, redirect_url: str) -> Any:
        """The SP's LogoutRequest of a Redirect-binding URL, its query signature verified by pysaml2."""
        return self._read_signed_redirect(redirect_url, self.server.parse_logout_request, "LogoutRequest")

    def logout_response(self, request: Any, binding: str, relay_state: str) -> dict[str, str]:
        """A signed LogoutResponse to ``request`` as the parameters of ``binding`` (query or form)."""
        from saml2 import BINDING_HTTP_POST
        from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

        posted = binding == BINDING_HTTP_POST
        response = self.server.create_logout_response(
            request.message, [binding], sign=posted, sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256
        )
        destination = request.message.issuer.text.rstrip("/") + "/slo"
        return self._binding_params(binding, str(response), destination, relay_state, response=True)

    def logout_request(
        self, sp_entity_id: str, name_id: str, session_index: str | None, binding: str, *, signed: bool = True
    ) -> tuple[str, dict[str, str]]:
        """An IdP-initiated LogoutRequest for ``name_id`` as ``binding``'s parameters: (request ID, params)."""
        from saml2 import BINDING_HTTP_POST
        from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NameID
        from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

        destination = f"{sp_entity_id}/slo"
        request_id, request = self.server.create_logout_request(
            destination,
            sp_entity_id,
            name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=name_id),
            session_indexes=[session_index] if session_index else None,
            sign=signed and binding == BINDING_HTTP_POST,
            sign_alg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256,
        )
        params = self._binding_params(binding, str(request), destination, "", response=False, sign=signed)
        return request_id, params

    def _binding_params(
        self, binding: str, xml: str, destination: str, relay_state: str, *, response: bool, sign: bool = True
    ) -> dict[str, str]:
        from saml2 import BINDING_HTTP_REDIRECT
        from saml2.xmldsig import SIG_RSA_SHA256

        if binding == BINDING_HTTP_REDIRECT:
            info = self.server.apply_binding(
                binding, xml, destination, relay_state, response=response, sign=sign, sigalg=SIG_RSA_SHA256
            )
            location = dict(info["headers"])["Location"]
            return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        kind = "SAMLResponse" if response else "SAMLRequest"
        params = {kind: base64.b64encode(xml.encode()).decode()}
        if relay_state:
            params["RelayState"] = relay_state
        return params
