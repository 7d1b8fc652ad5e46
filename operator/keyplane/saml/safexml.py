"""Hardened XML parsing: no DTDs, no entities, no network, bounded size and depth."""

from __future__ import annotations

import codecs
import re

from lxml import etree

from keyplane.saml.errors import MetadataError

DEFAULT_MAX_BYTES = 1 << 20
DEFAULT_MAX_DEPTH = 100

# Any DTD construct is refused outright: entity expansion (billion laughs), external entities
# (XXE, file:// and http:// reads) and external DTDs all need one, and metadata never does.
# The scan also matches inside comments and CDATA: a false positive there is harmless, a miss is not.
_FORBIDDEN = re.compile(r"<!\s*(DOCTYPE|ENTITY|ELEMENT|ATTLIST|NOTATION)", re.IGNORECASE)

_FORBIDDEN_MESSAGE = (
    "the document contains a DOCTYPE or entity declaration, which Keyplane refuses "
    "(protection against XXE and entity expansion); SAML metadata never needs one: "
    "remove it or ask the IdP for its plain metadata document"
)


def _decode_for_scan(data: bytes) -> str:
    """Text good enough to look for `<!DOCTYPE`, whatever the document's encoding."""
    for bom, codec in (
        (codecs.BOM_UTF32_LE, "utf-32-le"),
        (codecs.BOM_UTF32_BE, "utf-32-be"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if data.startswith(bom):
            return data[len(bom) :].decode(codec, errors="replace")
    # UTF-16/32 without a BOM show up as '<' next to NUL bytes (XML spec, appendix F).
    head = data[:4]
    for pattern, codec in (
        (b"\x00\x00\x00<", "utf-32-be"),
        (b"<\x00\x00\x00", "utf-32-le"),
        (b"\x00<\x00?", "utf-16-be"),
        (b"<\x00?\x00", "utf-16-le"),
    ):
        if head == pattern:
            return data.decode(codec, errors="replace")
    # Every other encoding lxml accepts here is ASCII-compatible, so latin-1 keeps `<!DOCTYPE`
    # visible byte for byte without ever failing.
    return data.decode("latin-1")


def _parser(override_encoding: str | None) -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        attribute_defaults=False,
        huge_tree=False,
        remove_comments=False,
        remove_pis=False,
        encoding=override_encoding,
    )


def _max_depth(root: etree._Element) -> int:
    deepest = 0
    stack: list[tuple[etree._Element, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in node)
    return deepest


def parse_xml(
    data: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES, max_depth: int = DEFAULT_MAX_DEPTH
) -> etree._Element:
    """Parse an untrusted XML document and return its root element.

    Raises MetadataError: `MetadataForbiddenXML` for any DTD/entity construct,
    `MetadataTooLarge` above `max_bytes` or `max_depth`, `MetadataMalformed` otherwise.
    """
    if isinstance(data, str):
        # Lone surrogates cannot be encoded; keep them as bytes libxml2 will reject as malformed.
        raw = data.encode("utf-8", errors="surrogatepass")
        # A str was already decoded by the caller: its XML declaration may name another
        # encoding, which no longer applies.
        override: str | None = "utf-8"
        scan = data
    elif isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        override = None
        scan = ""
    else:
        raise TypeError(f"parse_xml expects bytes or str, not {type(data).__name__}")

    if len(raw) > max_bytes:
        raise MetadataError(
            "MetadataTooLarge",
            f"the document is {len(raw)} bytes, above the {max_bytes}-byte limit; "
            "check that the URL or ConfigMap key points at the metadata document",
        )
    if not raw.strip():
        raise MetadataError("MetadataMalformed", "the document is empty; provide the IdP's metadata XML")
    if _FORBIDDEN.search(scan or _decode_for_scan(raw)):
        raise MetadataError("MetadataForbiddenXML", _FORBIDDEN_MESSAGE)

    try:
        root = etree.fromstring(raw, _parser(override))
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if exc.lineno else "?"
        detail = (exc.msg or "syntax error").splitlines()[0][:160]
        raise MetadataError(
            "MetadataMalformed", f"the document is not well-formed XML (line {line}: {detail})"
        ) from None
    except (ValueError, LookupError) as exc:  # e.g. an unknown encoding in the declaration
        raise MetadataError(
            "MetadataMalformed", f"the document could not be decoded as XML ({str(exc)[:160]})"
        ) from None
    if root is None:
        raise MetadataError("MetadataMalformed", "the document has no root element")

    # Belt and braces: the text scan above should already have refused any DTD.
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise MetadataError("MetadataForbiddenXML", _FORBIDDEN_MESSAGE)
    if next(root.iter(etree.Entity), None) is not None:
        raise MetadataError("MetadataForbiddenXML", _FORBIDDEN_MESSAGE)

    if _max_depth(root) > max_depth:
        raise MetadataError("MetadataTooLarge", f"the document nests elements deeper than {max_depth} levels")
    return root


# Compiled once: `node.xpath("string(.)")` compiles the expression at every call (3x the cost of running it).
_STRING_VALUE = etree.XPath("string(.)")


def string_value(node: etree._Element) -> str:
    """Every text node under `node`, joined (XPath's string()): `.text` stops at the first comment, which
    is how comment-injection attacks truncate values without breaking a signature."""
    return str(_STRING_VALUE(node))
