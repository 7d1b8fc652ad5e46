"""Every kind of API credential, sent by both consumers (KubeAPI and Kopf's login session) to a real
HTTPS server that checks it: client certificate, static token, exec plugin, in-cluster token file.

The server (`CheckingAPIServer`) is a small aiohttp app on 127.0.0.1 with a CA and certificates made
at test time. It answers 401 unless the request carries a token it currently accepts or (when asked)
a client certificate its CA signed, and records what each request presented. Time is a fake clock
handed to the loaders, so token-file ages and exec-plugin expiries pass without sleeping.
"""

from __future__ import annotations

import base64
import datetime
import json
import ssl
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import kopf
import pytest
import yaml
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from keyplane.handlers.login import _Logins, login
from keyplane.sources.credentials import ClusterCredentials
from keyplane.sources.kube import KubeAPI, KubeError, KubeUnavailable
from keyplane.sources.kubeconfig import load_cluster_credentials, load_incluster, load_kubeconfig

UTC = datetime.UTC
T0 = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


# --- test-time PKI ---------------------------------------------------------------------------------------

def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _issue(subject: str, issuer: x509.Certificate | None, issuer_key: ec.EllipticCurvePrivateKey | None,
           *, ca: bool = False, server: bool = False) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(UTC)
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer.subject if issuer else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                        critical=True)
    elif server:
        import ipaddress

        builder = (builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(
            "127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256()), key


@dataclass
class PKI:
    directory: Path
    ca_file: Path
    ca_pem: bytes
    server_cert: Path
    server_key: Path
    client_cert_pem: bytes
    client_key_pem: bytes


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    directory = tmp_path_factory.mktemp("pki")
    ca, ca_key = _issue("test cluster CA", None, None, ca=True)
    server, server_key = _issue("kube-apiserver", ca, ca_key, server=True)
    client, client_key = _issue("keyplane-operator", ca, ca_key)
    (directory / "ca.crt").write_bytes(_pem(ca))
    (directory / "server.crt").write_bytes(_pem(server))
    (directory / "server.key").write_bytes(_key_pem(server_key))
    return PKI(directory, directory / "ca.crt", _pem(ca), directory / "server.crt", directory / "server.key",
               _pem(client), _key_pem(client_key))


# --- an API server that checks credentials ---------------------------------------------------------------

@dataclass
class CheckingAPIServer:
    """Answers like an API server: 401 unless a currently accepted token or client certificate is presented."""

    pki: PKI
    require_client_cert: bool = False
    accepted: set[str] = field(default_factory=set)
    presented: list[str] = field(default_factory=list)  # "Bearer x" or "cert:CN" of each request
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.pki.server_cert, self.pki.server_key)
        if self.require_client_cert:
            context.load_verify_locations(self.pki.ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"https://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        authorization = request.headers.get("Authorization")
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        if authorization:
            self.presented.append(authorization)
            ok = authorization.removeprefix("Bearer ") in self.accepted
        elif peer:
            cn = dict(x[0] for x in peer["subject"])["commonName"]
            self.presented.append(f"cert:{cn}")
            ok = True  # the TLS layer verified it against the CA
        else:
            self.presented.append("anonymous")
            ok = False
        if not ok:
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                      "message": "Unauthorized", "reason": "Unauthorized", "code": 401}, status=401)
        return web.json_response({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": request.path}})


@pytest.fixture
async def api_server(pki: PKI) -> AsyncIterator[Callable[..., Any]]:
    servers: list[CheckingAPIServer] = []

    async def start(**kwargs: Any) -> CheckingAPIServer:
        server = CheckingAPIServer(pki, **kwargs)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += datetime.timedelta(**delta)


# --- the two consumers ------------------------------------------------------------------------------------

async def via_kube_api(credentials: ClusterCredentials) -> dict[str, Any] | None:
    kube = KubeAPI(credentials)
    try:
        return await kube.get("v1", "secrets", "keyplane-system", "probe")
    finally:
        await kube.aclose()


class KopfSide:
    """Kopf's view: the sessions the login handler gives it, logging in again as Kopf does after a 401."""

    def __init__(self, credentials: ClusterCredentials) -> None:
        self.memo = kopf.Memo(credentials=credentials)
        self.sessions: list[aiohttp.ClientSession] = []

    async def login(self) -> kopf.AiohttpSession:
        info = await login(memo=self.memo, settings=kopf.OperatorSettings())
        assert isinstance(info, kopf.AiohttpSession)
        self.sessions.append(info.aiohttp_session)
        return info

    async def get(self, info: kopf.AiohttpSession) -> int:
        async with info.aiohttp_session.get(f"{info.server}/api/v1/namespaces") as response:
            return response.status

    async def close(self) -> None:
        for session in self.sessions:
            await session.close()


@pytest.fixture
async def kopf_side() -> AsyncIterator[Callable[[ClusterCredentials], KopfSide]]:
    sides: list[KopfSide] = []

    def make(credentials: ClusterCredentials) -> KopfSide:
        sides.append(KopfSide(credentials))
        return sides[-1]

    yield make
    for side in sides:
        await side.close()


def write_kubeconfig(directory: Path, server: str, user: dict[str, Any], cluster: dict[str, Any]) -> Path:
    path = directory / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": server, **cluster}}],
        "users": [{"name": "operator", "user": user}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "operator", "namespace": "ops"}}],
    }))
    return path


# --- client certificate -----------------------------------------------------------------------------------

@pytest.mark.parametrize("inline", [False, True], ids=["files", "data"])
async def test_client_certificate(pki: PKI, api_server: Any, kopf_side: Any, tmp_path: Path, inline: bool) -> None:
    server = await api_server(require_client_cert=True)
    if inline:
        b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
        user = {"client-certificate-data": b64(pki.client_cert_pem), "client-key-data": b64(pki.client_key_pem)}
        cluster = {"certificate-authority-data": b64(pki.ca_pem)}
    else:  # relative paths are relative to the kubeconfig's folder, as kubectl reads them
        (tmp_path / "certs").mkdir()
        (tmp_path / "certs" / "client.crt").write_bytes(pki.client_cert_pem)
        (tmp_path / "certs" / "client.key").write_bytes(pki.client_key_pem)
        (tmp_path / "certs" / "ca.crt").write_bytes(pki.ca_pem)
        user = {"client-certificate": "certs/client.crt", "client-key": "certs/client.key"}
        cluster = {"certificate-authority": "certs/ca.crt"}
    credentials = load_kubeconfig([str(write_kubeconfig(tmp_path, server.url, user, cluster))])

    assert await via_kube_api(credentials) is not None
    kopf = kopf_side(credentials)
    assert await kopf.get(await kopf.login()) == 200
    assert server.presented == ["cert:keyplane-operator", "cert:keyplane-operator"]


async def test_the_api_server_certificate_is_verified(pki: PKI, api_server: Any, tmp_path: Path) -> None:
    server = await api_server(accepted={"t"})
    credentials = load_kubeconfig([str(write_kubeconfig(tmp_path, server.url, {"token": "t"}, {}))])
    with pytest.raises(KubeUnavailable, match="CERTIFICATE_VERIFY_FAILED"):  # no CA given: the system's
        await via_kube_api(credentials)
    assert server.presented == []  # the token never left the client


# --- static token ------------------------------------------------------------------------------------------

async def test_static_token(pki: PKI, api_server: Any, kopf_side: Any, tmp_path: Path) -> None:
    server = await api_server(accepted={"static-1"})
    config = write_kubeconfig(tmp_path, server.url, {"token": "static-1"}, {"certificate-authority": str(pki.ca_file)})
    credentials = load_kubeconfig([str(config)])

    assert await via_kube_api(credentials) is not None
    kopf = kopf_side(credentials)
    assert await kopf.get(await kopf.login()) == 200
    assert server.presented == ["Bearer static-1", "Bearer static-1"]


async def test_a_refused_static_token_is_retried_once_then_reported(
    pki: PKI, api_server: Any, tmp_path: Path
) -> None:
    server = await api_server(accepted=set())
    config = write_kubeconfig(tmp_path, server.url, {"token": "revoked"}, {"certificate-authority": str(pki.ca_file)})
    with pytest.raises(KubeError) as caught:
        await via_kube_api(load_kubeconfig([str(config)]))
    assert caught.value.status == 401
    assert server.presented == ["Bearer revoked", "Bearer revoked"]  # one retry, never a loop


# --- exec plugin --------------------------------------------------------------------------------------------

EXEC_PLUGIN = """\
import json, os, pathlib, sys
here = pathlib.Path(sys.argv[0]).parent
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
with open(here / "runs.log", "a") as log:
    log.write(json.dumps({"interactive": info["spec"]["interactive"], "env": os.environ.get("PLUGIN_ENV")}) + "\\n")
token, expires = (here / "issued").read_text().split()
print(json.dumps({"apiVersion": info["apiVersion"], "kind": "ExecCredential",
                  "status": {"token": token, "expirationTimestamp": expires}}))
"""


def exec_kubeconfig(directory: Path, server: str, pki: PKI) -> Path:
    plugin = directory / "bin" / "get-token"
    plugin.parent.mkdir()
    plugin.write_text(f"#!{sys.executable}\n{EXEC_PLUGIN}")
    plugin.chmod(0o755)
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "./bin/get-token",
                     "env": [{"name": "PLUGIN_ENV", "value": "from-kubeconfig"}], "interactiveMode": "Never"}}
    return write_kubeconfig(directory, server, user, {"certificate-authority": str(pki.ca_file)})


def issue(directory: Path, token: str, expires: datetime.datetime) -> None:
    (directory / "bin" / "issued").write_text(f"{token} {expires.strftime('%Y-%m-%dT%H:%M:%SZ')}")


def plugin_runs(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (directory / "bin" / "runs.log").read_text().splitlines()]


async def test_exec_plugin_token_is_renewed_at_its_expiry(
    pki: PKI, api_server: Any, kopf_side: Any, tmp_path: Path
) -> None:
    server = await api_server(accepted={"exec-1", "exec-2"})
    clock = FakeClock()
    credentials = load_kubeconfig([str(exec_kubeconfig(tmp_path, server.url, pki))], clock=clock)
    issue(tmp_path, "exec-1", T0 + datetime.timedelta(minutes=15))
    kopf = kopf_side(credentials)
    session = await kopf.login()

    assert await via_kube_api(credentials) is not None
    assert await kopf.get(session) == 200
    issue(tmp_path, "exec-2", T0 + datetime.timedelta(minutes=30))  # the plugin would now say exec-2...
    clock.advance(minutes=14)
    assert await via_kube_api(credentials) is not None  # ...but exec-1 has not expired: not asked again
    clock.advance(minutes=1)  # exec-1's expirationTimestamp
    assert await via_kube_api(credentials) is not None
    assert await kopf.get(session) == 200  # Kopf's session, unchanged, sends the renewed token too

    assert server.presented == ["Bearer exec-1", "Bearer exec-1", "Bearer exec-1", "Bearer exec-2", "Bearer exec-2"]
    assert plugin_runs(tmp_path) == [{"interactive": False, "env": "from-kubeconfig"}] * 2


async def kopf_logged_in_with_exec_1(
    pki: PKI, api_server: Any, kopf_side: Any, tmp_path: Path
) -> tuple[CheckingAPIServer, ClusterCredentials, KopfSide]:
    """An API server that accepts exec-1, and Kopf logged in with exec-1 from the exec plugin."""
    server = await api_server(accepted={"exec-1"})
    credentials = load_kubeconfig([str(exec_kubeconfig(tmp_path, server.url, pki))], clock=FakeClock())
    issue(tmp_path, "exec-1", T0 + datetime.timedelta(hours=1))
    kopf = kopf_side(credentials)
    assert await kopf.get(await kopf.login()) == 200
    return server, credentials, kopf


async def test_exec_plugin_is_asked_again_after_a_401(
    pki: PKI, api_server: Any, kopf_side: Any, tmp_path: Path
) -> None:
    server, credentials, _ = await kopf_logged_in_with_exec_1(pki, api_server, kopf_side, tmp_path)
    server.accepted = {"exec-2"}  # revoked before its expiry (the identity provider logged us out)
    issue(tmp_path, "exec-2", T0 + datetime.timedelta(hours=1))
    assert await via_kube_api(credentials) is not None  # 401, plugin run again, retried with exec-2
    assert server.presented == ["Bearer exec-1", "Bearer exec-1", "Bearer exec-2"]


async def test_kopf_logs_in_again_after_a_401_with_a_fresh_token(
    pki: PKI, api_server: Any, kopf_side: Any, tmp_path: Path
) -> None:
    server, _, kopf = await kopf_logged_in_with_exec_1(pki, api_server, kopf_side, tmp_path)
    server.accepted = {"exec-2"}
    issue(tmp_path, "exec-2", T0 + datetime.timedelta(hours=1))
    assert await kopf.get(await kopf.login()) == 200  # Kopf's re-login on 401 fetches anew: no outage
    assert server.presented == ["Bearer exec-1", "Bearer exec-2"]
    assert len(plugin_runs(tmp_path)) == 2


# --- in-cluster ServiceAccount -----------------------------------------------------------------------------

def service_account_dir(directory: Path, pki: PKI, token: str) -> Path:
    sa = directory / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text(token)
    (sa / "ca.crt").write_bytes(pki.ca_pem)
    (sa / "namespace").write_text("keyplane-system\n")
    return sa


def rotate(sa: Path, token: str) -> None:
    """As the kubelet does: a new file swapped in atomically (the old token stays valid for a while)."""
    (sa / "token.new").write_text(token)
    (sa / "token.new").rename(sa / "token")


def environ_for(server: CheckingAPIServer) -> dict[str, str]:
    host, port = server.url.removeprefix("https://").split(":")
    return {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}


async def test_in_cluster_token_file_is_reread_as_the_kubelet_rotates_it(
    pki: PKI, api_server: Any, kopf_side: Any, tmp_path: Path
) -> None:
    server = await api_server(accepted={"sa-1", "sa-2"})
    sa = service_account_dir(tmp_path, pki, "sa-1")
    clock = FakeClock()
    credentials = load_cluster_credentials(environ_for(server), service_account_dir=str(sa), clock=clock)
    assert credentials.server == server.url and credentials.default_namespace == "keyplane-system"
    kopf = kopf_side(credentials)
    session = await kopf.login()

    assert await via_kube_api(credentials) is not None
    rotate(sa, "sa-2")
    clock.advance(seconds=59)
    assert await kopf.get(session) == 200  # read less than a minute ago: still sa-1 (still valid)
    clock.advance(seconds=1)
    assert await via_kube_api(credentials) is not None
    assert await kopf.get(session) == 200
    assert server.presented == ["Bearer sa-1", "Bearer sa-1", "Bearer sa-2", "Bearer sa-2"]


async def test_in_cluster_token_rewritten_and_the_old_one_refused(
    pki: PKI, api_server: Any, kopf_side: Any, tmp_path: Path
) -> None:
    server = await api_server(accepted={"sa-1"})
    sa = service_account_dir(tmp_path, pki, "sa-1")
    credentials = load_incluster(environ_for(server), str(sa), clock=FakeClock())
    kopf = kopf_side(credentials)
    session = await kopf.login()
    assert await kopf.get(session) == 200

    rotate(sa, "sa-2")
    server.accepted = {"sa-2"}  # e.g. the pod's bound token was invalidated early
    assert await kopf.get(session) == 401  # Kopf sees the 401: it invalidates the session and logs in
    assert await kopf.get(await kopf.login()) == 200
    assert await via_kube_api(credentials) is not None
    assert server.presented == ["Bearer sa-1", "Bearer sa-1", "Bearer sa-2", "Bearer sa-2"]


async def test_a_vanished_token_file_keeps_the_last_token_until_it_is_back(
    pki: PKI, api_server: Any, tmp_path: Path
) -> None:
    server = await api_server(accepted={"sa-1"})
    sa = service_account_dir(tmp_path, pki, "sa-1")
    clock = FakeClock()
    credentials = load_incluster(environ_for(server), str(sa), clock=clock)
    assert await via_kube_api(credentials) is not None
    (sa / "token").unlink()  # mid-swap, or a volume hiccup
    clock.advance(minutes=2)
    assert await via_kube_api(credentials) is not None
    assert server.presented == ["Bearer sa-1", "Bearer sa-1"]


# --- failures surface as KubeError ---------------------------------------------------------------------------

async def test_unreachable_api_server_is_a_kube_error(pki: PKI, api_server: Any) -> None:
    server = await api_server(accepted={"t"})
    url = server.url
    await server.stop()
    credentials = ClusterCredentials(url)
    with pytest.raises(KubeError) as caught:  # what every caller already handles
        await via_kube_api(credentials)
    assert isinstance(caught.value, KubeUnavailable) and caught.value.status == 0
    assert "Cannot connect to host" in caught.value.message  # the cause, named


async def test_a_connection_dropped_mid_request_is_a_kube_error() -> None:
    import asyncio

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()  # no response at all: httpx raises RemoteProtocolError / ReadError

    listener = await asyncio.start_server(drop, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        with pytest.raises(KubeUnavailable):
            await via_kube_api(ClusterCredentials(f"http://127.0.0.1:{port}"))
    finally:
        listener.close()
        await listener.wait_closed()


# --- Kopf re-login pacing ------------------------------------------------------------------------------------

def test_repeated_relogins_with_an_unchanged_token_back_off() -> None:
    logins = _Logins()
    delays = []
    now = T0
    for _ in range(9):
        delays.append(logins.next_delay(now, "Bearer same"))
        logins.last_at, logins.last_authorization = now, "Bearer same"
        now += datetime.timedelta(seconds=1)
    assert delays == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert logins.next_delay(now, "Bearer rotated") == 0.0  # a new token is tried at once
    logins.last_at, logins.last_authorization = now - datetime.timedelta(minutes=10), "Bearer rotated"
    assert logins.next_delay(now, "Bearer rotated") == 0.0  # a 401 long after the last login


# --- Kopf's own machinery: its vault, its re-authentication, its API requests ---------------------------------

@pytest.mark.timeout(30)  # without a fresh token Kopf would keep logging in (paced), never failing by itself
async def test_kopf_re_authenticates_through_the_login_handler_after_a_401(
    pki: PKI, api_server: Any, tmp_path: Path
) -> None:
    """Kopf's request wrapper, vault and authenticator (pinned Kopf's internals), with Keyplane's login only."""
    import asyncio
    import logging

    from kopf._cogs.clients import api, auth
    from kopf._cogs.structs.credentials import Vault
    from kopf._core.engines.activities import authenticator
    from kopf._core.engines.indexing import OperatorIndexers

    server = await api_server(accepted={"sa-1"})
    sa = service_account_dir(tmp_path, pki, "sa-1")
    memo = kopf.Memo(credentials=load_incluster(environ_for(server), str(sa), clock=FakeClock()))
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry)(login)
    settings = kopf.OperatorSettings()
    vault = Vault()
    auth.vault_var.set(vault)
    task = asyncio.create_task(authenticator(registry=registry, settings=settings, vault=vault, memo=memo,
                                             indices=OperatorIndexers().indices))
    logger = logging.getLogger("test")
    try:
        assert (await api.get("/api/v1/namespaces", settings=settings, logger=logger))["kind"] == "Secret"
        rotate(sa, "sa-2")
        server.accepted = {"sa-2"}
        assert (await api.get("/api/v1/namespaces", settings=settings, logger=logger))["kind"] == "Secret"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await vault.close()
    assert server.presented == ["Bearer sa-1", "Bearer sa-1", "Bearer sa-2"]  # refused once, then re-logged in
