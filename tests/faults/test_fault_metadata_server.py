"""The IdP's metadata server misbehaves after a first success: the last good config stays in the bundle.

Each IdentityProvider reads `saml.metadata.url` from a local server (refreshInterval 1s, timers tick every
second in tests). Once it is Ready, its path starts failing in one way; the operator must report
MetadataResolved=False with the fetcher's reason while Ready stays True (LastKnownGood) and the bundle
entry stays byte-for-byte the same.
"""

from __future__ import annotations

from typing import Any

import pytest
from faultkit import (
    MetadataServer,
    assert_no_crash,
    captured_logs,
    conditions,
    idp_entry,
    is_ready,
    namespace,
    saml_url_idp,
)

from integration.idp_server import PUBLIC_IP, NatToLocal
from keyplane.settings import fetch_policy
from keyplane.sources.fetcher import MetadataFetcher, SharedMetadataCache

GV = "keyplane.dev/v1alpha1"
NS = "faults-metadata"

# behaviour -> the MetadataResolved reason it must produce
CASES = {
    "500": "MetadataHTTPError",
    "timeout": "MetadataTimeout",
    "reset": "MetadataUnreachable",
    "trickle": "MetadataTimeout",
    "huge": "MetadataTooLarge",
    "huge-declared": "MetadataTooLarge",
    "garbage": None,  # a parse error: the metadata parser names it (any reason, as long as not Resolved)
    "loop": "MetadataTooManyRedirects",
    "pingpong": "MetadataTooManyRedirects",
}


async def _idp(cluster: Any, name: str) -> dict[str, Any] | None:
    return await cluster.get(GV, "IdentityProvider", NS, name)


@pytest.mark.slow
async def test_every_server_fault_keeps_the_last_good_config(cluster: Any, keyplane_operator: Any) -> None:
    await cluster.create(namespace(NS))
    async with MetadataServer() as server, keyplane_operator(metadata_timeout=1.5) as runtime:
        names = {behaviour: f"idp-{i}" for i, behaviour in enumerate(CASES)}
        with captured_logs() as logs:
            for behaviour, name in names.items():
                await cluster.create(saml_url_idp(name, NS, server.url(f"/{behaviour}/metadata.xml")))

            async def all_ready() -> bool:
                for name in names.values():
                    if not is_ready(await _idp(cluster, name)) or await idp_entry(cluster, NS, name) is None:
                        return False
                return True

            await cluster.wait_for(all_ready, timeout=20)
            good = {name: await idp_entry(cluster, NS, name) for name in names.values()}

            for behaviour in CASES:
                server.behaviour[f"/{behaviour}/metadata.xml"] = behaviour

            async def all_failing() -> dict[str, str] | bool:
                seen = {}
                for behaviour, name in names.items():
                    resolved = conditions(await _idp(cluster, name)).get("MetadataResolved", {})
                    if resolved.get("status") != "False":
                        return False
                    seen[behaviour] = resolved.get("reason")
                return seen

            reasons = await cluster.wait_for(all_failing, timeout=25)
            for behaviour, expected in CASES.items():
                if expected is not None:
                    assert reasons[behaviour] == expected, (behaviour, reasons[behaviour])
                name = names[behaviour]
                obj = await _idp(cluster, name)
                ready = conditions(obj)["Ready"]
                assert ready["status"] == "True" and ready["reason"] == "LastKnownGood", (behaviour, ready)
                assert await idp_entry(cluster, NS, name) == good[name], behaviour
                message = conditions(obj)["MetadataResolved"]["message"]
                assert "<html>" not in message and "AAAA" not in message  # no body in messages

            # The server recovers: the IdP resolves again, with the same entry.
            for behaviour in CASES:
                server.behaviour[f"/{behaviour}/metadata.xml"] = "ok"

            async def all_resolved() -> bool:
                for name in names.values():
                    resolved = conditions(await _idp(cluster, name)).get("MetadataResolved", {})
                    if resolved.get("status") != "True":
                        return False
                return True

            await cluster.wait_for(all_resolved, timeout=25)
            for name in names.values():
                assert await idp_entry(cluster, NS, name) == good[name]
                assert conditions(await _idp(cluster, name))["Ready"]["reason"] == "Ready"
        assert runtime is not None
        assert_no_crash(logs.text())


# --- a redirect to a private address, with private networks refused ------------------------------------------

async def test_redirect_to_a_private_address_is_refused(cluster: Any, keyplane_operator: Any) -> None:
    await cluster.create(namespace(NS))
    names = {"idp.example.test": [PUBLIC_IP], "internal.example.test": ["10.0.0.7"],
             "rebind.example.test": [PUBLIC_IP, "192.168.1.1"]}

    async def resolver(host: str, port: int) -> list[str]:
        if host not in names:
            raise OSError(f"no such host {host}")
        return names[host]

    async with MetadataServer() as server, keyplane_operator(allow_private_networks=False) as runtime:
        backend = NatToLocal(server.port)  # only PUBLIC_IP may be connected to
        fetcher = MetadataFetcher(fetch_policy(runtime.settings), resolver=resolver, network_backend=backend)
        runtime.cache = SharedMetadataCache(fetcher)
        try:
            with captured_logs() as logs:
                base = f"http://idp.example.test:{server.port}"
                cases = {
                    "to-private": f"http://internal.example.test:{server.port}/md.xml",
                    "to-loopback": f"http://127.0.0.1:{server.port}/md.xml",
                    "to-metadata-service": "http://169.254.169.254/latest/meta-data/",
                    "to-rebinding-name": f"http://rebind.example.test:{server.port}/md.xml",
                }
                for name in cases:
                    await cluster.create(saml_url_idp(name, NS, f"{base}/{name}/metadata.xml"))
                # A name that resolves to a private address, used directly (no redirect).
                await cluster.create(saml_url_idp("direct-private", NS, f"http://internal.example.test:{server.port}/x"))

                async def all_ready() -> bool:
                    for name in cases:
                        if not is_ready(await cluster.get(GV, "IdentityProvider", NS, name)):
                            return False
                    return True

                await cluster.wait_for(all_ready, timeout=20)
                good = {name: await idp_entry(cluster, NS, name) for name in cases}
                for name, target in cases.items():
                    server.behaviour[f"/{name}/metadata.xml"] = f"redirect:{target}"

                async def refused() -> dict[str, Any] | bool:
                    out = {}
                    for name in [*cases, "direct-private"]:
                        cond = conditions(await cluster.get(GV, "IdentityProvider", NS, name)).get("MetadataResolved")
                        if not cond or cond["status"] != "False":
                            return False
                        out[name] = cond
                    return out

                seen = await cluster.wait_for(refused, timeout=20)
                for name, cond in seen.items():
                    assert cond["reason"] == "MetadataURLForbidden", (name, cond)
                assert "10.0.0.7" in seen["to-private"]["message"]
                assert "private" in seen["to-private"]["message"]
                assert "loopback" in seen["to-loopback"]["message"]
                for name in cases:
                    obj = await cluster.get(GV, "IdentityProvider", NS, name)
                    assert await idp_entry(cluster, NS, name) == good[name]
                    assert conditions(obj)["Ready"]["status"] == "True", name
                direct = await cluster.get(GV, "IdentityProvider", NS, "direct-private")
                assert conditions(direct)["Ready"]["status"] == "False"
                assert conditions(direct)["Stalled"]["status"] == "True"  # permanent: the user must act
                assert await idp_entry(cluster, NS, "direct-private") is None
                assert set(backend.connected) == {PUBLIC_IP}  # never connected anywhere else
            assert_no_crash(logs.text())
        finally:
            await fetcher.aclose()
