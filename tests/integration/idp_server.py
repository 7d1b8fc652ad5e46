"""A metadata / OIDC discovery server on 127.0.0.1 whose answers a test controls."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ssl
import tempfile
from dataclasses import dataclass, field
from typing import Any

import httpcore
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# The IdP's public name and the global address a fake resolver gives it; a network backend NATs that
# address to the local server, so nothing leaves the host while every production check runs.
PUBLIC_NAME = "idp.keyplane.test"
PUBLIC_IP = "93.184.216.34"


@dataclass
class Document:
    body: bytes
    status: int = 200
    content_type: str = "application/xml"


@dataclass
class IdPServer:
    """Serves `documents[path]` with ETags (answering If-None-Match with 304) and counts requests."""

    documents: dict[str, Document] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, If-None-Match)
    url: str = ""
    port: int = 0
    tls: ssl.SSLContext | None = None  # serve HTTPS as PUBLIC_NAME with this context
    _runner: web.AppRunner | None = None

    def put(self, path: str, body: str | bytes, *, status: int = 200, content_type: str = "application/xml") -> None:
        self.documents[path] = Document(body.encode() if isinstance(body, str) else body, status, content_type)

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, request.headers.get("If-None-Match")))
        doc = self.documents.get(request.path)
        if doc is None:
            return web.Response(status=404, text="not found")
        if doc.status != 200:
            return web.Response(status=doc.status, text="error")
        etag = '"' + hashlib.sha256(doc.body).hexdigest()[:16] + '"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=doc.body, content_type=doc.content_type, headers={"ETag": etag})

    async def start(self) -> IdPServer:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.tls)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"https://{PUBLIC_NAME}:{self.port}" if self.tls else f"http://127.0.0.1:{self.port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def discovery(issuer: str, base: str) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{base}/authorize",
        "token_endpoint": f"{base}/token",
        "jwks_uri": f"{base}/jwks",
        "userinfo_endpoint": f"{base}/userinfo",
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }


def test_tls(hostname: str = PUBLIC_NAME) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A CA made now and a server certificate for `hostname` it signed: (server context, client context).

    The client context is `ssl.create_default_context` trusting only that CA: the same verification
    (chain, validity, hostname) as in production, with a test trust anchor.
    """
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Keyplane integration test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as folder:
        cert_file, key_file = f"{folder}/cert.pem", f"{folder}/key.pem"
        with open(cert_file, "wb") as f:
            f.write(cert.public_bytes(pem) + ca.public_bytes(pem))
        with open(key_file, "wb") as f:
            f.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cadata=ca.public_bytes(pem).decode())
    return server, client


test_tls.__test__ = False  # type: ignore[attr-defined]


async def public_name_resolver(host: str, port: int) -> list[str]:
    """The fetcher's resolver seam: PUBLIC_NAME is a global address; nothing else resolves."""
    if host != PUBLIC_NAME:
        raise OSError(f"no such host {host}")
    return [PUBLIC_IP]


class NatToLocal(httpcore.AsyncNetworkBackend):
    """The fetcher's network seam: a connection to PUBLIC_IP reaches the local server's port."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._inner = httpcore.AnyIOBackend()
        self.connected: list[str] = []

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Any = None) -> Any:
        self.connected.append(host)
        assert host == PUBLIC_IP, f"the fetcher connected to {host}, not to the checked address"
        return await self._inner.connect_tcp("127.0.0.1", self._port, timeout=timeout)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
