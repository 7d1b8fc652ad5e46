"""OpenID Connect authorization-code flow with PKCE, on httpx and joserfc.

The ID token's signature is verified with the provider's JWKS (joserfc, asymmetric algorithms
only), and its claims with joserfc's registry: ``iss``, ``aud``, ``exp``, ``iat`` and the
``nonce`` bound to the browser's login, with a small clock-skew leeway.

The email counts only when the provider vouches for it: ``email_verified`` must be ``true`` (or the
string ``"true"``); an absent claim is refused unless the IdentityProvider sets
``spec.oidc.allowMissingEmailVerified`` (bundle: ``oidc.allowMissingEmailVerified``), for providers
such as Entra ID that never send it. A callback is used once: its ``state`` is remembered before the
code is redeemed, so a replayed callback gets 400 without reaching the token endpoint.

Claims the ID token leaves out come from the userinfo endpoint: in the code flow a certified
provider's defaults (``oidc-provider``'s ``conformIdTokenClaims``, Okta's org server) put email and
groups there only. Its ``sub`` must be the ID token's, and an email read from userinfo counts only
with userinfo's own ``email_verified``.

The JWKS is cached for its ``Cache-Control: max-age`` (between 5 minutes and a day; an hour without
one). A token signed with a key the cached set does not have (a rotation) makes the set be fetched
again at once; the same unknown ``kid`` at most once a minute, so a stream of tokens with a bogus
``kid`` cannot hammer the provider while a genuinely new key is picked up by its first login.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from keyplane.app.bundle import IdentityProvider
from keyplane.app.clock import Clock, utcnow
from keyplane.app.errors import LoginError
from keyplane.app.replay import Replay, ReplayCache

#: Bounds of the JWKS cache lifetime taken from the provider's Cache-Control header, in seconds.
JWKS_MIN_AGE, JWKS_DEFAULT_AGE, JWKS_MAX_AGE = 300, 3600, 86400
#: The same unknown key ID triggers at most one JWKS refetch per this many seconds.
UNKNOWN_KID_INTERVAL = 60.0
#: The clock of the JWKS cache (a module attribute, so a test can move it without moving asyncio's).
_monotonic = time.monotonic

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


@dataclass(frozen=True)
class PendingOidcLogin:
    """What the browser's login started with; kept in a signed cookie until the callback."""

    state: str
    nonce: str
    code_verifier: str
    next: str = "/"

    def as_dict(self) -> dict[str, str]:
        return {"state": self.state, "nonce": self.nonce, "verifier": self.code_verifier, "next": self.next}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PendingOidcLogin:
        return cls(str(data["state"]), str(data["nonce"]), str(data["verifier"]), str(data.get("next", "/")))


@dataclass(frozen=True)
class OidcIdentity:
    identity_provider: str
    subject: str
    email: str | None
    groups: tuple[str, ...]
    claims: Mapping[str, Any] = field(default_factory=dict)
    id_token: str | None = None  # the hint for RP-initiated logout


@dataclass(frozen=True)
class TokenResponse:
    id_token: str
    access_token: str | None


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OidcLogin:
    """The relying-party side of one OIDC IdentityProvider.

    :param http: the httpx client used for discovery, token and JWKS requests.
    :param leeway: clock-skew tolerance for ``exp``/``iat``/``nbf``, in seconds.
    :param replay: remembers used callbacks (their ``state``); a private cache by default.
    """

    def __init__(
        self,
        idp: IdentityProvider,
        http: httpx.AsyncClient,
        *,
        clock: Clock = utcnow,
        leeway: int = 60,
        replay: Replay | None = None,
    ) -> None:
        if idp.oidc is None:
            raise ValueError(f"identity provider {idp.name} is not OIDC")
        self.idp = idp
        self.config: dict[str, Any] = dict(idp.oidc)
        self.http = http
        self.clock = clock
        self.leeway = leeway
        self.replay: Replay = replay if replay is not None else ReplayCache(clock=clock)
        self._metadata: dict[str, Any] | None = None
        self._jwks: KeySet | None = None
        self._jwks_expires = 0.0
        self._jwks_lock = asyncio.Lock()
        self._refetched_for: dict[str, float] = {}  # unknown kid -> monotonic time of its refetch

    @property
    def client_id(self) -> str:
        return str(self.config["clientID"])

    async def metadata(self) -> dict[str, Any]:
        """Endpoints from the bundle; what it leaves out comes from the issuer's discovery document."""
        if self._metadata is None:
            metadata: dict[str, Any] = {}
            keys = {
                "authorizationEndpoint": "authorization_endpoint",
                "tokenEndpoint": "token_endpoint",
                "jwksURI": "jwks_uri",
                "userinfoEndpoint": "userinfo_endpoint",
                "endSessionEndpoint": "end_session_endpoint",
            }
            if not all(self.config.get(k) for k in ("authorizationEndpoint", "tokenEndpoint", "jwksURI")):
                url = str(self.config["issuer"]).rstrip("/") + "/.well-known/openid-configuration"
                response = await self.http.get(url)
                response.raise_for_status()
                metadata = _json_object(response, "OIDC discovery document")
                if metadata.get("issuer") != self.config["issuer"]:
                    raise LoginError(
                        "OIDC discovery document names another issuer", status=502, code="oidc.bad_discovery"
                    )
            for ours, theirs in keys.items():
                if self.config.get(ours):
                    metadata[theirs] = self.config[ours]
            self._metadata = metadata
        return self._metadata

    async def start(
        self, next_url: str = "/", *, login_hint: str | None = None
    ) -> tuple[str, PendingOidcLogin]:
        """The authorization URL to redirect to, and the pending login to keep for the callback."""
        metadata = await self.metadata()
        pending = PendingOidcLogin(
            secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(64), next_url
        )
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.config["redirectURI"],
            "scope": " ".join(self.config.get("scopes") or ["openid", "email", "profile"]),
            "state": pending.state,
            "nonce": pending.nonce,
            "code_challenge": pkce_challenge(pending.code_verifier),
            "code_challenge_method": "S256",
        }
        if login_hint:
            query["login_hint"] = login_hint
        return f"{metadata['authorization_endpoint']}?{urlencode(query)}", pending

    @property
    def post_logout_redirect_uri(self) -> str:
        """Where the provider sends the browser after RP-initiated logout (registered at the provider)."""
        configured = self.config.get("postLogoutRedirectURI")
        if configured:
            return str(configured)
        return str(self.config["redirectURI"]).removesuffix("/callback") + "/logged-out"

    async def logout_url(self, id_token_hint: str | None, state: str) -> str | None:
        """RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) at the provider's
        ``end_session_endpoint``, or None when it has none."""
        endpoint = (await self.metadata()).get("end_session_endpoint")
        if not endpoint:
            return None
        query = {"client_id": self.client_id, "post_logout_redirect_uri": self.post_logout_redirect_uri, "state": state}
        if id_token_hint:
            query["id_token_hint"] = id_token_hint
        separator = "&" if "?" in str(endpoint) else "?"
        return f"{endpoint}{separator}{urlencode(query)}"

    async def finish(self, params: Mapping[str, str], pending: PendingOidcLogin) -> OidcIdentity:
        """Handle the callback: check state, redeem the code with the verifier, validate the ID token."""
        if "error" in params:
            raise LoginError(
                f"the identity provider refused the login: {_oauth_error(params['error'])}", code="oidc.idp_error"
            )
        state = params.get("state", "")
        if not state or not hmac.compare_digest(state.encode(), pending.state.encode()):
            raise LoginError(
                "OIDC state mismatch: this callback does not belong to this browser's login",
                code="oidc.state_mismatch",
            )
        code = params.get("code")
        if not code:
            raise LoginError("OIDC callback without a code", status=400, code="oidc.no_code")
        # Before the code is redeemed: a replay never reaches the token endpoint.
        used = hashlib.sha256(pending.state.encode()).hexdigest()
        if not self.replay.remember(f"oidc:{self.idp.name}:state:{used}", None):
            raise LoginError(
                "this OIDC callback was already used (replay); start the login again",
                status=400,
                code="oidc.replay",
            )
        tokens = await self._redeem(code, pending)
        claims = await self.validate_id_token(tokens.id_token, pending.nonce)
        claims = await self._with_userinfo(claims, tokens.access_token)
        mapping = self.idp.attribute_mapping
        email = claims.get(mapping.get("email", "email"))
        if email:
            self._check_email_verified(claims)
        groups = claims.get(mapping.get("groups", "groups")) or []
        if isinstance(groups, str):
            groups = [groups]
        return OidcIdentity(
            self.idp.name,
            str(claims["sub"]),
            str(email) if email else None,  # canonicalised by the login policy (keyplane.policy)
            tuple(str(g) for g in groups),
            claims,
            id_token=tokens.id_token,
        )

    async def _with_userinfo(self, claims: dict[str, Any], access_token: str | None) -> dict[str, Any]:
        """The ID token's claims completed from the userinfo endpoint when it lacks the mapped ones."""
        mapping = self.idp.attribute_mapping
        wanted = (mapping.get("email", "email"), mapping.get("groups", "groups"))
        endpoint = (await self.metadata()).get("userinfo_endpoint")
        if all(name in claims for name in wanted) or not endpoint or not access_token:
            return claims
        userinfo = await self._userinfo(str(endpoint), access_token)
        if userinfo.get("sub") != claims["sub"]:
            # OIDC Core §5.3.2: a userinfo answer about another subject must not be used.
            raise LoginError(
                "the userinfo endpoint answered for another subject than the ID token (sub mismatch)",
                status=502,
                code="oidc.userinfo_sub_mismatch",
            )
        merged = {**userinfo, **claims}
        email_claim = mapping.get("email", "email")
        if email_claim not in claims and email_claim in userinfo:
            # The address and the word that it is verified come from the same answer.
            merged.pop("email_verified", None)
            if "email_verified" in userinfo:
                merged["email_verified"] = userinfo["email_verified"]
        return merged

    async def _userinfo(self, endpoint: str, access_token: str) -> dict[str, Any]:
        try:
            response = await self.http.get(
                endpoint, headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
            )
        except httpx.HTTPError as exc:
            raise LoginError(
                f"OIDC userinfo endpoint unreachable: {type(exc).__name__}", status=502, code="oidc.userinfo"
            ) from exc
        if response.status_code != 200:
            raise LoginError(
                f"OIDC userinfo endpoint answered {response.status_code}", status=502, code="oidc.userinfo"
            )
        if response.headers.get("content-type", "").split(";")[0].strip() == "application/jwt":
            raise LoginError(
                "the OIDC userinfo endpoint answers with a signed JWT; register the client for plain JSON "
                "userinfo (userinfo_signed_response_alg unset) at the identity provider",
                status=502,
                code="oidc.userinfo",
            )
        return _json_object(response, "OIDC userinfo response")

    def _check_email_verified(self, claims: Mapping[str, Any]) -> None:
        """Only ``true`` (or ``"true"``) vouches for the address; absent only with the IdP's opt-in."""
        verified = claims.get("email_verified")
        if verified is True or verified == "true":
            return
        if "email_verified" not in claims:
            if self.config.get("allowMissingEmailVerified") is True:
                return
            raise LoginError(
                "the identity provider does not say the email address is verified (no email_verified "
                "claim); set spec.oidc.allowMissingEmailVerified on the IdentityProvider if it never sends one",
                code="oidc.email_verified_missing",
            )
        raise LoginError(
            "the identity provider says this email address is not verified", code="oidc.email_not_verified"
        )

    async def _redeem(self, code: str, pending: PendingOidcLogin) -> TokenResponse:
        """The tokens the token endpoint gives for the code; LoginError (400/502) on any other answer."""
        metadata = await self.metadata()
        try:
            response = await self.http.post(
                metadata["token_endpoint"],
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": self.config["redirectURI"],
                    "code_verifier": pending.code_verifier,
                },
                auth=(self.client_id, str(self.config.get("clientSecret") or "")),
                headers={"Accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise LoginError(
                f"OIDC token endpoint unreachable: {type(exc).__name__}", status=502, code="oidc.token_unreachable"
            ) from exc
        error = _token_error(response) if response.status_code in (400, 401) else None
        if error in ("invalid_client", "unauthorized_client"):
            # RFC 6749 §5.2: our credentials, not the user's login: retrying will not help.
            raise LoginError(
                f"the identity provider refused this client: {error}; check spec.oidc.clientID and "
                "clientSecretRef of the IdentityProvider",
                status=502,
                code="oidc.client_refused",
            )
        if error is not None:
            # The code was refused (expired, already used): the user can start again.
            raise LoginError(
                f"the identity provider refused the authorization code: {error}; start the login again",
                status=400,
                code="oidc.token_refused",
            )
        if response.status_code != 200:
            raise LoginError(
                f"OIDC token endpoint answered {response.status_code}", status=502, code="oidc.token_error"
            )
        document = _json_object(response, "OIDC token response")
        id_token, access_token = document.get("id_token"), document.get("access_token")
        if not isinstance(id_token, str):
            raise LoginError("OIDC token response has no id_token", status=502, code="oidc.token_error")
        return TokenResponse(id_token, access_token if isinstance(access_token, str) else None)

    async def _keys(self) -> KeySet:
        """The cached JWKS, fetched again once its lifetime is over."""
        if self._jwks is None or _monotonic() >= self._jwks_expires:
            await self._fetch_keys(self._jwks)
        assert self._jwks is not None
        return self._jwks

    async def _fetch_keys(self, stale: KeySet | None) -> None:
        async with self._jwks_lock:
            if self._jwks is not stale:
                return  # another login fetched it while this one waited
            metadata = await self.metadata()
            response = await self.http.get(metadata["jwks_uri"])
            response.raise_for_status()
            try:
                keys = KeySet.import_key_set(_json_object(response, "OIDC JWKS"))  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError, KeyError) as exc:
                raise LoginError(f"OIDC JWKS unusable: {type(exc).__name__}", status=502, code="oidc.bad_jwks") from exc
            self._jwks = keys
            self._jwks_expires = _monotonic() + _max_age(response.headers.get("cache-control", ""))

    async def _keys_for(self, id_token: str, failed: KeySet) -> KeySet | None:
        """A fresh JWKS after ``failed`` did not verify the token, or None when this kid was just tried."""
        kid = _kid(id_token)
        now = _monotonic()
        last = self._refetched_for.get(kid)
        if last is not None and now - last < UNKNOWN_KID_INTERVAL:
            return None
        if len(self._refetched_for) > 1000:
            self._refetched_for = {k: t for k, t in self._refetched_for.items() if now - t < UNKNOWN_KID_INTERVAL}
        self._refetched_for[kid] = now
        await self._fetch_keys(failed)
        return self._jwks

    async def validate_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        keys = await self._keys()
        try:
            try:
                token = jwt.decode(id_token, keys, algorithms=list(ALGORITHMS))
            except JoseError:
                # The provider may have rotated its keys: fetch the JWKS again at once.
                fresh = await self._keys_for(id_token, keys)
                if fresh is None:
                    raise
                token = jwt.decode(id_token, fresh, algorithms=list(ALGORITHMS))
            registry = jwt.JWTClaimsRegistry(
                now=lambda: int(self.clock().timestamp()),
                leeway=self.leeway,
                iss={"essential": True, "value": str(self.config["issuer"])},
                aud={"essential": True, "value": self.client_id},
                sub={"essential": True},
                exp={"essential": True},
                iat={"essential": True},
                nonce={"essential": True, "value": nonce},
            )
            registry.validate(token.claims)
        except JoseError as exc:
            raise LoginError(
                f"ID token refused: {exc.error}: {exc.description or ''}".strip(), code="oidc.id_token"
            ) from exc
        claims = dict(token.claims)
        audiences: Sequence[str] = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.client_id:
            raise LoginError(
                "ID token refused: several audiences and azp is not this client", code="oidc.id_token"
            )
        return claims


_OAUTH_ERROR = re.compile(r"^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,64}$")  # RFC 6749's error-code characters


def _kid(token: str) -> str:
    """The ``kid`` of a compact JWS header ("" when absent or unreadable)."""
    try:
        header = json.loads(base64.urlsafe_b64decode(token.split(".", 1)[0] + "=="))
    except (ValueError, UnicodeDecodeError):
        return ""
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else ""


def _max_age(cache_control: str) -> float:
    """The JWKS lifetime a Cache-Control header asks for, within Keyplane's bounds."""
    for directive in cache_control.split(","):
        name, _, value = directive.strip().partition("=")
        if name.lower() == "no-store" or name.lower() == "no-cache":
            return JWKS_MIN_AGE
        if name.lower() == "max-age" and value.strip().isdigit():
            return float(min(max(int(value.strip()), JWKS_MIN_AGE), JWKS_MAX_AGE))
    return JWKS_DEFAULT_AGE


def _oauth_error(value: object) -> str:
    """An OAuth ``error`` code fit to show and log; anything else (it is the sender's text) is not repeated."""
    return str(value) if isinstance(value, str) and _OAUTH_ERROR.match(value) else "(unreadable error code)"


def _token_error(response: httpx.Response) -> str | None:
    """The ``error`` of an RFC 6749 §5.2 error response, or None when the answer is not one."""
    try:
        document = response.json()
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict) or "error" not in document:
        return None
    return _oauth_error(document["error"])


def _json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    """A JSON object answer, or LoginError 502 naming what was not one."""
    try:
        document = response.json()
    except (ValueError, RecursionError) as exc:
        raise LoginError(f"{what} is not JSON", status=502, code="oidc.not_json") from exc
    if not isinstance(document, dict):
        raise LoginError(f"{what} is not a JSON object", status=502, code="oidc.not_json")
    return document
