"""OpenID Connect Discovery 1.0 documents and JWKS: parsing and validation, no I/O.

Error messages name fields and URLs from the document (public by definition) but never
key material or the raw document.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from keyplane.setting_names import setting_hint

DISCOVERY_INVALID: Final = "DiscoveryInvalid"
ISSUER_MISMATCH: Final = "IssuerMismatch"
JWKS_INVALID: Final = "JWKSInvalid"
NO_SIGNING_KEYS: Final = "NoSigningKeys"

WELL_KNOWN: Final = "/.well-known/openid-configuration"


class DiscoveryError(Exception):
    """The discovery document or JWKS is unusable; ``reason``/``message`` go into status."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __repr__(self) -> str:
        return f"DiscoveryError({self.reason!r}, {self.message!r})"


@dataclass(frozen=True)
class OIDCProviderMetadata:
    """The parts of a provider's discovery document Keyplane uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None = None
    end_session_endpoint: str | None = None
    scopes_supported: tuple[str, ...] = ()
    id_token_signing_alg_values_supported: tuple[str, ...] = ()

    def status_dict(self) -> dict[str, str]:
        """The ``status.identityProvider`` fields of an OIDC IdentityProvider."""
        return {
            "issuer": self.issuer,
            "authorizationEndpoint": self.authorization_endpoint,
            "tokenEndpoint": self.token_endpoint,
            "jwksURI": self.jwks_uri,
        }


def discovery_url(issuer: str) -> str:
    """Where the discovery document of ``issuer`` lives (OIDC Discovery §4)."""
    return issuer.rstrip("/") + WELL_KNOWN


def _load_json(doc: bytes, reason: str, what: str) -> Any:
    try:
        return json.loads(doc)
    # RecursionError: deeply nested arrays fit easily in the size cap.
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise DiscoveryError(reason, f"the {what} is not valid JSON; check the URL points at it") from None


def _check_url(value: Any, field: str, *, allow_http: bool) -> str:
    if not isinstance(value, str) or not value:
        raise DiscoveryError(DISCOVERY_INVALID, f"the discovery document has no valid {field!r}")
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        host = None
        parts = None
    schemes = ("https", "http") if allow_http else ("https",)
    if parts is None or not host or parts.scheme not in schemes:
        need = "an http(s)" if allow_http else "an https"
        hint = (
            f" (http:// needs the operator's {setting_hint('allow_insecure_http')})"
            if parts is not None and parts.scheme == "http" and not allow_http
            else ""
        )
        raise DiscoveryError(
            DISCOVERY_INVALID, f"{field!r} in the discovery document must be {need} URL, got {value!r}{hint}"
        )
    return value


def _str_tuple(value: Any, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DiscoveryError(
            DISCOVERY_INVALID, f"{field!r} in the discovery document must be a list of strings"
        )
    return tuple(value)


def parse_discovery(doc: bytes, expected_issuer: str, *, allow_http: bool = False) -> OIDCProviderMetadata:
    """Validate a discovery document fetched from ``discovery_url(expected_issuer)``."""
    data = _load_json(doc, DISCOVERY_INVALID, "discovery document")
    if not isinstance(data, dict):
        raise DiscoveryError(DISCOVERY_INVALID, "the discovery document is not a JSON object")
    issuer = data.get("issuer")
    if not isinstance(issuer, str) or not issuer:
        raise DiscoveryError(DISCOVERY_INVALID, "the discovery document has no 'issuer'")
    # §4.3: the issuer MUST be identical to the one the document was requested for: a plain
    # string comparison, no normalisation (a trailing slash is a different issuer, and ID
    # tokens' `iss` will be compared the same way).
    if issuer != expected_issuer:
        hint = "set spec.oidc.issuer to exactly the document's issuer"
        if issuer.rstrip("/") == expected_issuer.rstrip("/"):
            hint += " (they differ only by a trailing slash, which OIDC treats as a different issuer)"
        elif "{tenantid}" in issuer:
            hint = "use the tenant-specific issuer (https://login.microsoftonline.com/<tenant-id>/v2.0)"
        raise DiscoveryError(
            ISSUER_MISMATCH,
            f"the discovery document's issuer is {issuer!r} but spec.oidc.issuer is "
            f"{expected_issuer!r}; {hint}",
        )
    _check_url(issuer, "issuer", allow_http=allow_http)
    if urlsplit(issuer).query or urlsplit(issuer).fragment:
        raise DiscoveryError(DISCOVERY_INVALID, "the issuer must not have a query or fragment")

    for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if field not in data:
            raise DiscoveryError(
                DISCOVERY_INVALID,
                f"the discovery document has no {field!r}; Keyplane needs the authorization code flow",
            )
    optional = {
        field: _check_url(data[field], field, allow_http=allow_http) if data.get(field) is not None else None
        for field in ("userinfo_endpoint", "end_session_endpoint")
    }
    algs = _str_tuple(
        data.get("id_token_signing_alg_values_supported"), "id_token_signing_alg_values_supported"
    )
    if algs and set(algs) <= {"none"}:
        raise DiscoveryError(DISCOVERY_INVALID, "the provider offers only unsigned ('none') ID tokens")
    return OIDCProviderMetadata(
        issuer=issuer,
        authorization_endpoint=_check_url(
            data["authorization_endpoint"], "authorization_endpoint", allow_http=allow_http
        ),
        token_endpoint=_check_url(data["token_endpoint"], "token_endpoint", allow_http=allow_http),
        jwks_uri=_check_url(data["jwks_uri"], "jwks_uri", allow_http=allow_http),
        userinfo_endpoint=optional["userinfo_endpoint"],
        end_session_endpoint=optional["end_session_endpoint"],
        scopes_supported=_str_tuple(data.get("scopes_supported"), "scopes_supported"),
        id_token_signing_alg_values_supported=algs,
    )


def count_signing_keys(jwks_doc: bytes) -> int:
    """How many keys in a JWK Set can verify ID token signatures.

    Keys with ``use: enc``, ``key_ops`` without ``verify``, symmetric keys and key types
    joserfc doesn't understand (ignored per RFC 7517 §5) don't count. A set that publishes
    private key material is refused outright: anyone could forge tokens with it.
    """
    data = _load_json(jwks_doc, JWKS_INVALID, "JWKS")
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise DiscoveryError(JWKS_INVALID, 'the JWKS is not a JSON object with a "keys" list')
    raw_keys: list[Any] = data["keys"]
    if not all(isinstance(k, dict) for k in raw_keys):
        raise DiscoveryError(JWKS_INVALID, "every entry of the JWKS 'keys' list must be a JSON object")
    if not raw_keys:
        raise DiscoveryError(NO_SIGNING_KEYS, "the JWKS has no keys; the IdP cannot sign ID tokens yet")
    # Imported here: joserfc is ~8 MB of resident memory that an operator with no OIDC IdP never needs.
    from joserfc.errors import JoseError
    from joserfc.jwk import KeySet, OctKey

    try:
        key_set = KeySet.import_key_set({"keys": raw_keys})
    except JoseError as exc:
        if exc.error == "missing_key":  # every key had an unknown kty
            raise DiscoveryError(
                NO_SIGNING_KEYS, "the JWKS has no key of a supported type (RSA, EC, OKP)"
            ) from None
        # exc.error is joserfc's short code, e.g. "key_parameter": names the problem, not the key.
        raise DiscoveryError(JWKS_INVALID, f"the JWKS contains an invalid key ({exc.error})") from None
    except (ValueError, TypeError, KeyError):
        raise DiscoveryError(JWKS_INVALID, "the JWKS contains a malformed key") from None

    count = 0
    for key in key_set:
        if isinstance(key, OctKey):
            continue  # shared secrets have no place in a public JWKS; never a verification key
        if key.is_private:
            raise DiscoveryError(
                JWKS_INVALID,
                f"the JWKS publishes private key material (kid {key.kid!r}); the IdP must rotate that key",
            )
        if key.get("use") == "enc":
            continue
        ops = key.get("key_ops")
        if isinstance(ops, list) and "verify" not in ops:
            continue
        count += 1
    if count == 0:
        raise DiscoveryError(
            NO_SIGNING_KEYS, "the JWKS has no signature keys (only encryption or unsupported keys)"
        )
    return count
