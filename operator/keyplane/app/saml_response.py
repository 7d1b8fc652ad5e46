"""python3-saml's Response, with a decrypted assertion kept exactly as it was signed.

python3-saml decrypts an ``EncryptedAssertion`` in place and then moves the plain ``Assertion`` up
into the ``Response`` with lxml's ``replace()``. lxml reconciles namespaces on a move: a prefix the
assertion declares for a namespace the ``Response`` already declares under another prefix is
dropped and the elements are re-pointed to the ``Response``'s prefix. Exclusive canonicalisation
(what the assertion's signature covers) includes element prefixes, so the digest no longer matches.

pysaml2's default ``encrypt_assertion_self_contained=True`` produces exactly that: the assertion
declares ``xmlns:encas2`` for the SAML assertion namespace, the ``Response`` declares it as
``ns1``; xmlsec1 decrypts and verifies it, python3-saml 1.16 answered "Signature validation failed".
Other IdPs that give the encrypted assertion its own prefixes are affected the same way.

Here python3-saml still decrypts (with its KeyInfo / RetrievalMethod checks), inside a bare
``Response`` that declares no prefix the assertion could be re-pointed to; the decrypted document is
then assembled as text and parsed once with python3-saml's hardened parser, so no move happens.
"""

from __future__ import annotations

import secrets
from typing import Any

from lxml import etree
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.constants import OneLogin_Saml2_Constants
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML


class PrefixPreservingResponse(OneLogin_Saml2_Response):
    def _decrypt_assertion(self, xml: Any) -> Any:
        wrappers = OneLogin_Saml2_XML.query(xml, "/samlp:Response/saml:EncryptedAssertion")
        if not wrappers:
            return super()._decrypt_assertion(xml)
        wrapper = wrappers[0]
        # A Response holding only a copy of the EncryptedAssertion: after python3-saml's move the
        # assertion is its child, and nothing in it declares the assertion's namespaces.
        bare = etree.Element(f"{{{OneLogin_Saml2_Constants.NS_SAMLP}}}Response", nsmap={})
        bare.append(_detached_copy(wrapper))
        super()._decrypt_assertion(bare)
        assertion = OneLogin_Saml2_XML.query(bare, "/samlp:Response/saml:Assertion")
        if not assertion:
            return xml  # nothing was decrypted (no EncryptedData): python3-saml's checks report it
        marker = f"keyplane-decrypted-assertion-{secrets.token_hex(16)}"
        wrapper.getparent().replace(wrapper, etree.Comment(marker))
        text = etree.tostring(xml)
        assert text.count(marker.encode()) == 1
        text = text.replace(f"<!--{marker}-->".encode(), etree.tostring(assertion[0]))
        return OneLogin_Saml2_XML.to_etree(text)


def _detached_copy(element: Any) -> Any:
    """A copy that carries every namespace declaration it needs on itself (by re-parsing its text)."""
    return OneLogin_Saml2_XML.to_etree(etree.tostring(element))


class SamlAuth(OneLogin_Saml2_Auth):
    """python3-saml's Auth with :class:`PrefixPreservingResponse` (its ``response_class`` hook)."""

    response_class = PrefixPreservingResponse
