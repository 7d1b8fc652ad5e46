"""SP metadata validation against python3-saml's own XSD, with the schema compiled once per thread.

python3-saml's `OneLogin_Saml2_Settings.validate_metadata` reads and compiles
`saml-schema-metadata-2.0.xsd` (and the schemas it imports) on every call: ~5 ms of CPU, which was
40 % of `keyplane render` over 334 SAML IdentityProviders. This runs the same checks with the
compiled schema kept. lxml schema objects are not shared across threads, hence one per thread.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import onelogin.saml2
from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.utils import OneLogin_Saml2_Utils

METADATA_XSD = Path(onelogin.saml2.__file__).parent / "schemas" / "saml-schema-metadata-2.0.xsd"
_local = threading.local()


def _schema() -> etree.XMLSchema:
    schema = getattr(_local, "schema", None)
    if schema is None:
        schema = _local.schema = etree.XMLSchema(etree.parse(str(METADATA_XSD)))
    return schema


def sp_metadata_errors(root: etree._Element) -> list[str]:
    """python3-saml's error codes for an SP metadata document (empty when valid): the same checks as
    `validate_metadata` (schema, one EntityDescriptor with one SPSSODescriptor, not expired)."""
    if not _schema().validate(root):
        return ["invalid_xml"]
    if root.tag != f"{{{C.NS_MD}}}EntityDescriptor":
        return ["noEntityDescriptor_xml"]
    if len(root.findall(".//md:SPSSODescriptor", namespaces=C.NSMAP)) != 1:
        return ["onlySPSSODescriptor_allowed_xml"]
    valid_until = root.get("validUntil")
    expire = OneLogin_Saml2_Utils.get_expire_time(
        root.get("cacheDuration"), OneLogin_Saml2_Utils.parse_SAML_to_time(valid_until) if valid_until else None
    )
    if expire is not None and int(time.time()) > int(expire):
        return ["expired_xml"]
    return []
