"""Finding the IdP's EntityDescriptor in a metadata document (single entity or aggregate)."""

from __future__ import annotations

from lxml import etree

from keyplane.saml.errors import MetadataError, capped_list

NS_MD = "urn:oasis:names:tc:SAML:2.0:metadata"
NS_DS = "http://www.w3.org/2000/09/xmldsig#"
SAML2_PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"

ENTITY_DESCRIPTOR = f"{{{NS_MD}}}EntityDescriptor"
ENTITIES_DESCRIPTOR = f"{{{NS_MD}}}EntitiesDescriptor"
IDP_SSO_DESCRIPTOR = f"{{{NS_MD}}}IDPSSODescriptor"


def _local_name(element: etree._Element) -> str:
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


def entity_descriptors(root: etree._Element) -> list[etree._Element]:
    """Every EntityDescriptor of the document, in document order (aggregates may nest)."""
    if root.tag == ENTITY_DESCRIPTOR:
        return [root]
    if root.tag == ENTITIES_DESCRIPTOR:
        return list(root.iter(ENTITY_DESCRIPTOR))
    name = _local_name(root)
    if name.lower() == "html":
        hint = "an HTML page (a login or error page?); use the IdP's metadata URL"
    elif name in ("EntityDescriptor", "EntitiesDescriptor"):
        hint = f"{name} in namespace {etree.QName(root).namespace or '(none)'}, not {NS_MD}"
    else:
        hint = f"<{name}>"
    raise MetadataError(
        "NoIdPDescriptor",
        f"the document is not SAML 2.0 metadata: expected an EntityDescriptor or "
        f"EntitiesDescriptor root, found {hint}",
    )


def is_idp(entity: etree._Element) -> bool:
    return entity.find(IDP_SSO_DESCRIPTOR) is not None


def entity_id_of(entity: etree._Element) -> str:
    return (entity.get("entityID") or "").strip()


def select_entity(root: etree._Element, entity_id: str | None) -> etree._Element:
    """The EntityDescriptor to use: the one named `entity_id`, or the only IdP of the document.

    Selection is by Python comparison, never by building an XPath from `entity_id` (the
    python3-saml parser interpolates it into XPath, so a quote in it breaks the query).
    """
    entities = entity_descriptors(root)
    idp_ids = [entity_id_of(e) for e in entities if is_idp(e)]
    if entity_id is not None and entity_id.strip():
        wanted = entity_id.strip()
        matches = [e for e in entities if entity_id_of(e) == wanted]
        if not matches:
            found = idp_ids or [entity_id_of(e) for e in entities]
            raise MetadataError(
                "EntityNotFound",
                f"no EntityDescriptor with entityID {wanted!r} in the metadata; "
                f"found {len(found)} {'IdP ' if idp_ids else ''}entity ID(s): {capped_list(found)}",
            )
        if len(matches) > 1:
            raise MetadataError(
                "MetadataMalformed",
                f"entityID {wanted!r} appears {len(matches)} times in the metadata; it must be unique",
            )
        return matches[0]
    idps = [e for e in entities if is_idp(e)]
    if len(idps) == 1:
        return idps[0]
    if not idps:
        raise MetadataError(
            "NoIdPDescriptor",
            "the metadata has no IDPSSODescriptor: it describes no identity provider "
            "(is this the SP's own metadata?); use the IdP's metadata",
        )
    raise MetadataError(
        "EntitySelectionRequired",
        f"the metadata describes {len(idps)} identity providers; set the entity ID of the one "
        f"to use. Found: {capped_list(idp_ids)}",
    )
