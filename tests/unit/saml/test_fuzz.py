"""Whatever comes in, parse_idp_metadata raises MetadataError or returns, and never hangs."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyplane.saml.errors import MetadataError
from keyplane.saml.metadata import IdPMetadata, parse_idp_metadata

from .conftest import DS, MD, POST, REDIRECT, SAML2, make_cert

CERT_B64 = make_cert().der_b64

_names = st.sampled_from(
    [
        f"{{{MD}}}EntityDescriptor",
        f"{{{MD}}}EntitiesDescriptor",
        f"{{{MD}}}IDPSSODescriptor",
        f"{{{MD}}}SPSSODescriptor",
        f"{{{MD}}}KeyDescriptor",
        f"{{{MD}}}SingleSignOnService",
        f"{{{MD}}}SingleLogoutService",
        f"{{{MD}}}NameIDFormat",
        f"{{{DS}}}KeyInfo",
        f"{{{DS}}}X509Data",
        f"{{{DS}}}X509Certificate",
        f"{{{DS}}}Signature",
        "other",
    ]
)
_attr_values = st.one_of(
    st.sampled_from(
        [REDIRECT, POST, SAML2, "signing", "encryption", "https://idp.example/sso", "http://x", ""]
    ),
    st.text(max_size=20),
)
_attrs = st.dictionaries(
    st.sampled_from(["entityID", "Binding", "Location", "use", "protocolSupportEnumeration", "ID"]),
    _attr_values,
    max_size=4,
)
_texts = st.one_of(st.none(), st.just(CERT_B64), st.text(max_size=30))


Tree = tuple[str, dict[str, str], str | None, list["Tree"]]


def _render(tree: Tree) -> str:
    tag, attrs, text, children = tree
    ns, _, local = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
    xmlns = f' xmlns="{ns}"' if ns else ""
    rendered_attrs = "".join(
        f' {k}="{v}"'.replace("&", "&amp;").replace("<", "&lt;") for k, v in attrs.items() if '"' not in v
    )
    body = (text or "").replace("&", "&amp;").replace("<", "&lt;")
    return f"<{local}{xmlns}{rendered_attrs}>{body}{''.join(_render(c) for c in children)}</{local}>"


_trees: st.SearchStrategy[Tree] = st.recursive(
    st.tuples(_names, _attrs, _texts, st.just([])),
    lambda kids: st.tuples(_names, _attrs, _texts, st.lists(kids, max_size=4)),
    max_leaves=25,
)


def _check(data: bytes | str) -> None:
    start = time.monotonic()
    try:
        result = parse_idp_metadata(data, max_bytes=1 << 16)
    except MetadataError as exc:
        assert exc.reason and exc.message
    else:
        assert isinstance(result, IdPMetadata)
    assert time.monotonic() - start < 2


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_random_input_only_raises_metadata_error(data: bytes | str) -> None:
    _check(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_trees, st.booleans())
def test_random_nested_xml_only_raises_metadata_error(tree: Tree, as_bytes: bool) -> None:
    text = _render(tree)
    _check(text.encode() if as_bytes else text)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="<>!-[]&;/=\"' ?DOCTYPEENTITYa", max_size=200))
def test_markup_soup_only_raises_metadata_error(data: str) -> None:
    _check(data)
