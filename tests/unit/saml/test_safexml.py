"""The hardened parser refuses DTDs before anything is resolved and never hangs or fetches."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import pytest
from lxml import etree

from keyplane.saml import safexml
from keyplane.saml.errors import MetadataError
from keyplane.saml.safexml import parse_xml

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>"""


def _xxe(system_id: str) -> str:
    return (
        f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "{system_id}">]>'
        '<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="&xxe;"/>'
    )


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text("TOP-SECRET-CONTENT")
    return path


def test_parses_plain_metadata_and_keeps_comments() -> None:
    root = parse_xml(b'<?xml version="1.0" encoding="UTF-8"?><a><!-- note --><b x="1">t</b></a>')
    assert root.tag == "a"
    assert root.find("b").get("x") == "1"
    assert isinstance(root[0], etree._Comment)


def test_str_input_ignores_a_stale_encoding_declaration() -> None:
    root = parse_xml('<?xml version="1.0" encoding="ISO-8859-1"?><a>Umeå</a>')
    assert root.text == "Umeå"


def test_billion_laughs_is_refused_quickly() -> None:
    start = time.monotonic()
    with pytest.raises(MetadataError) as caught:
        parse_xml(BILLION_LAUGHS)
    assert caught.value.reason == "MetadataForbiddenXML"
    assert time.monotonic() - start < 1


@pytest.mark.parametrize("as_bytes", [True, False])
def test_xxe_file_entity_is_refused(secret_file: Path, as_bytes: bool) -> None:
    doc = _xxe(secret_file.as_uri())
    with pytest.raises(MetadataError) as caught:
        parse_xml(doc.encode() if as_bytes else doc)
    assert caught.value.reason == "MetadataForbiddenXML"
    assert "TOP-SECRET" not in caught.value.message


def test_xxe_network_entity_and_external_dtd_are_refused_without_connecting() -> None:
    # Port 1 on loopback: a fetch attempt would fail fast, but we must not even try.
    for doc in (
        _xxe("http://127.0.0.1:1/evil"),
        '<!DOCTYPE EntityDescriptor SYSTEM "http://127.0.0.1:1/evil.dtd"><EntityDescriptor/>',
        '<!DOCTYPE EntityDescriptor PUBLIC "-//x//y" "http://127.0.0.1:1/evil.dtd"><EntityDescriptor/>',
    ):
        with pytest.raises(MetadataError) as caught:
            parse_xml(doc)
        assert caught.value.reason == "MetadataForbiddenXML"


def test_doctype_in_utf16_document_is_refused() -> None:
    doc = '<?xml version="1.0" encoding="UTF-16"?>' + _xxe("file:///etc/passwd").split("?>", 1)[1]
    for data in (doc.encode("utf-16"), doc.encode("utf-16-le"), doc.encode("utf-16-be")):
        with pytest.raises(MetadataError) as caught:
            parse_xml(data)
        assert caught.value.reason == "MetadataForbiddenXML"


def test_parser_itself_does_not_expand_or_fetch(secret_file: Path) -> None:
    """Defence in depth: even with the text scan bypassed, the parser neither reads nor expands."""
    for doc in (
        _xxe(secret_file.as_uri()),
        f'<!DOCTYPE r [<!ENTITY xxe SYSTEM "{secret_file.as_uri()}">]><r>&xxe;</r>',
    ):
        try:
            root = etree.fromstring(doc.encode(), safexml._parser(None))
        except etree.XMLSyntaxError as exc:  # refusing is fine too
            assert "TOP-SECRET" not in str(exc)
            continue
        assert "TOP-SECRET" not in etree.tostring(root).decode()

    done = threading.Event()
    result: list[etree._Element] = []

    def parse() -> None:
        with contextlib.suppress(etree.XMLSyntaxError):
            result.append(etree.fromstring(BILLION_LAUGHS.encode(), safexml._parser(None)))
        done.set()

    threading.Thread(target=parse, daemon=True).start()
    assert done.wait(5), "billion laughs hung the parser"
    if result:
        assert len(etree.tostring(result[0])) < 10_000


def test_malformed_xml_reports_line_without_trace() -> None:
    with pytest.raises(MetadataError) as caught:
        parse_xml(b"<a>\n<b>\n</a>")
    assert caught.value.reason == "MetadataMalformed"
    assert "line 3" in caught.value.message
    assert "Traceback" not in caught.value.message
    assert len(caught.value.message) < 300


@pytest.mark.parametrize(
    "data", [b"", b"   \n", "", b"not xml at all", b"\xff\xfe\x00garbage", "\ud800<a/>", "<a>\x00</a>"]
)
def test_empty_or_garbage_is_malformed(data: bytes | str) -> None:
    with pytest.raises(MetadataError) as caught:
        parse_xml(data)
    assert caught.value.reason == "MetadataMalformed"


def test_size_cap() -> None:
    doc = b"<a>" + b"x" * 2000 + b"</a>"
    assert parse_xml(doc, max_bytes=4096).tag == "a"
    with pytest.raises(MetadataError) as caught:
        parse_xml(doc, max_bytes=1000)
    assert caught.value.reason == "MetadataTooLarge"
    assert "1000" in caught.value.message


def test_depth_cap() -> None:
    assert parse_xml("<a>" * 50 + "</a>" * 50).tag == "a"
    with pytest.raises(MetadataError) as caught:
        parse_xml("<a>" * 150 + "</a>" * 150)
    assert caught.value.reason == "MetadataTooLarge"
    with pytest.raises(MetadataError):
        parse_xml("<a>" * 20 + "</a>" * 20, max_depth=10)
