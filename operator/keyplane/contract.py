"""What the operator and `keyplane.app` must agree on, written once and imported by both halves.

The operator writes the bundle, the token Secret and the SP metadata; the app reads the bundle and
serves the SP metadata. Each fact below has exactly one definition, so the two halves cannot drift:
- the bundle's schema version string;
- the time format of every timestamp in the bundle, status and owned Secrets (RFC 3339, UTC, seconds);
- how a SCIM token becomes the hash the bundle carries, and until when a hash is accepted;
- the SP metadata document an IdP admin is given (the same bytes from `keyplane render`, the
  operator's `<idp>-sp-metadata` ConfigMap and the app's `/sso/saml/<idp>/metadata`).

No Kopf, no kubernetes client, no clock reads: callers pass `now`.
"""

from __future__ import annotations

import copy
import hashlib
import re
from datetime import UTC, datetime
from typing import Any

from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants
from onelogin.saml2.errors import OneLogin_Saml2_Error
from onelogin.saml2.settings import OneLogin_Saml2_Settings

from keyplane.mergepatch import copy_tree
from keyplane.saml.safexml import parse_xml
from keyplane.saml.schema import sp_metadata_errors

#: The `apiVersion` of `identity.json`. A bundle with any other value is refused by the app.
BUNDLE_API_VERSION = "keyplane.dev/bundle-v1"

#: How long an IdP may cache the SP metadata before fetching it again. There is deliberately no
#: `validUntil`: a copy an IdP stored (Entra ID and ADFS take a file) must never expire by itself.
SP_METADATA_CACHE_DURATION = "PT24H"


# --- time -------------------------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})"
)


class TimeFormatError(ValueError):
    """A timestamp that is not RFC 3339 with a UTC offset."""


def rfc3339(moment: datetime) -> str:
    """`2030-01-31T12:00:00Z`: UTC, second precision, as the API server writes times (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    """Parse an RFC 3339 timestamp (with `Z` or an offset); None or "" is None (absent).

    Anything else raises TimeFormatError, never a guess: a `notAfter` that cannot be read must not
    turn into "never expires". Callers decide what unreadable means for them (the app keeps its last
    good bundle; the operator treats an unreadable field of its own Secret as absent).
    """
    if text is None or text == "":
        return None
    if not isinstance(text, str) or not _RFC3339.fullmatch(text):
        raise TimeFormatError(f"not an RFC 3339 time with a UTC offset: {str(text)[:40]!r}")
    digits = text.upper().replace("Z", "+00:00")
    head, dot, rest = digits.partition(".")
    if dot:  # Python before 3.11 parsed at most 6 fractional digits; the API server may send 9
        fraction, offset = rest[:-6], rest[-6:]
        digits = f"{head}.{fraction[:6].ljust(6, '0')}{offset}"
    try:
        return datetime.fromisoformat(digits).astimezone(UTC)
    except ValueError as exc:  # the shape was right, a field is out of range (month 13)
        raise TimeFormatError(f"not a valid time: {text[:40]!r}: {exc}") from None


def parse_time_or_none(text: str | None) -> datetime | None:
    """parse_time for the operator's own bookkeeping fields, where unreadable means absent."""
    try:
        return parse_time(text)
    except TimeFormatError:
        return None


# --- SCIM tokens ------------------------------------------------------------------------------------------

def token_sha256(token: str) -> str:
    """The lowercase hex SHA-256 of a token's UTF-8 bytes: what `tokenHashes[].sha256` holds."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_hash_live(not_after: datetime | None, now: datetime) -> bool:
    """Whether a token hash is still accepted at `now`: no `notAfter`, or `now` strictly before it.

    The previous token of a rotation stops working at the instant its overlap ends; the operator drops
    its hash from the bundle by the same rule the app applies to a bundle that still lists it.
    """
    return not_after is None or now < not_after


# --- SP metadata ------------------------------------------------------------------------------------------

class SPMetadataError(ValueError):
    """python3-saml cannot build valid SP metadata from these settings."""


def sp_metadata_xml(saml_settings: dict[str, Any]) -> str:
    """The SP metadata document of one SAML IdentityProvider, from its bundle `saml` settings.

    Deterministic: the same settings always give the same bytes (no validUntil, which python3-saml
    would set to now + 2 days, and a fixed cacheDuration), validated by python3-saml and re-serialised
    through the hardened parser.
    """
    # python3-saml keeps and edits the dicts it is given, hence the copy; the SP metadata says nothing of
    # the IdP, so its block (certificates python3-saml would re-wrap) is left out.
    settings = {key: copy_tree(value) for key, value in saml_settings.items() if key != "idp"}
    security = settings.setdefault("security", {})
    security["metadataValidUntil"] = ""
    security["metadataCacheDuration"] = SP_METADATA_CACHE_DURATION
    try:
        saml_settings_obj = OneLogin_Saml2_Settings(settings, sp_validation_only=True)
        metadata = saml_settings_obj.get_sp_metadata()
    except OneLogin_Saml2_Error as exc:
        raise SPMetadataError(f"python3-saml cannot build the SP metadata: {exc}") from None
    text = metadata.decode("utf-8") if isinstance(metadata, bytes) else str(metadata)
    # Validated as python3-saml's validate_metadata does, with the XSD compiled once (saml/schema.py):
    # compiling it on every call was 40 % of `keyplane render` over 334 IdPs.
    root = parse_xml(text)
    errors = sp_metadata_errors(root)
    if errors:
        raise SPMetadataError(f"the generated SP metadata is invalid: {', '.join(errors)}")
    _add_post_logout_binding(root)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8").decode("utf-8")


def _add_post_logout_binding(root: etree._Element) -> None:
    """Publish the SingleLogoutService for HTTP-POST too: keyplane.app's ``/slo`` takes both bindings,
    python3-saml's builder writes only one (HTTP-Redirect), and some IdPs (ADFS) only use POST."""
    md = "urn:oasis:names:tc:SAML:2.0:metadata"
    for slo in root.iter(f"{{{md}}}SingleLogoutService"):
        if slo.get("Binding") == OneLogin_Saml2_Constants.BINDING_HTTP_REDIRECT:
            post = copy.deepcopy(slo)
            post.set("Binding", OneLogin_Saml2_Constants.BINDING_HTTP_POST)
            slo.addnext(post)
            return
