"""Request bodies: the SCIM token is checked before the body is read, every body is capped (413), and JSON
nested too deep gets 400 invalidSyntax instead of a RecursionError (500).

Bodies are async generators that count what the app consumed: "not read" is asserted, not assumed.
One test runs the app in a real uvicorn server and sends the headers of a 100 MiB body over a socket.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import uvicorn

from keyplane.app import Keyplane
from keyplane.app.body import DEFAULT_MAX_BODY_SIZE, MAX_JSON_DEPTH, json_depth

from .helpers import OKTA_TOKEN

USERS = "/scim/v2/okta/Users"
SCIM_JSON = "application/scim+json"
CHUNK = 64 * 1024
HUNDRED_MIB = 100 * 1024 * 1024


class CountingBody:
    """A request body streamed in 64 KiB chunks, counting how many the app pulled."""

    def __init__(self, total: int = HUNDRED_MIB) -> None:
        self.total = total
        self.consumed = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.total // CHUNK):
            self.consumed += CHUNK
            yield b" " * CHUNK


def user(email: str) -> dict[str, object]:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": email,
        "emails": [{"value": email, "primary": True}],
    }


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_unauthenticated_huge_body_gets_401_without_being_read(
    client: httpx.AsyncClient, keyplane: Keyplane, declared: bool
) -> None:
    body = CountingBody()
    headers = {"content-type": SCIM_JSON, "authorization": "Bearer not-the-token"}
    if declared:
        headers["content-length"] = str(body.total)
    r = await client.post(USERS, content=body, headers=headers)
    assert r.status_code == 401, r.text
    assert r.json()["status"] == "401"
    assert body.consumed == 0
    assert keyplane.refusals.count("scim.unauthorized") == 1


async def test_unauthenticated_request_to_an_unknown_path_gets_401_not_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/scim/v2/okta/Nope")).status_code == 401
    r = await client.get("/scim/v2/okta/Nope", headers={"authorization": f"Bearer {OKTA_TOKEN}"})
    assert r.status_code == 404


async def test_authenticated_body_over_the_declared_cap_gets_413_unread(
    client: httpx.AsyncClient, keyplane: Keyplane
) -> None:
    body = CountingBody()
    r = await client.post(
        USERS,
        content=body,
        headers={
            "content-type": SCIM_JSON,
            "authorization": f"Bearer {OKTA_TOKEN}",
            "content-length": str(body.total),
        },
    )
    assert r.status_code == 413, r.text
    assert "max_body_size" in r.json()["detail"]
    assert body.consumed == 0
    assert keyplane.refusals.count("scim.body_too_large") == 1


async def test_chunked_body_is_cut_off_at_the_cap_while_reading(client: httpx.AsyncClient) -> None:
    body = CountingBody()
    r = await client.post(
        USERS, content=body, headers={"content-type": SCIM_JSON, "authorization": f"Bearer {OKTA_TOKEN}"}
    )
    assert r.status_code == 413, r.text
    assert DEFAULT_MAX_BODY_SIZE < body.consumed <= DEFAULT_MAX_BODY_SIZE + CHUNK


async def test_a_body_under_the_cap_still_creates_the_user(client: httpx.AsyncClient) -> None:
    payload = json.dumps(user("carol@acme.com")).encode()

    async def chunked() -> AsyncIterator[bytes]:
        for i in range(0, len(payload), 7):
            yield payload[i : i + 7]

    r = await client.post(
        USERS, content=chunked(), headers={"content-type": SCIM_JSON, "authorization": f"Bearer {OKTA_TOKEN}"}
    )
    assert r.status_code == 201, r.text


def _nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", USERS, json.dumps(user("deep@acme.com"))[:-1] + ', "x": ' + _nested(5000) + "}"),
        ("PATCH", USERS + "/any", '{"schemas": [], "Operations": [' + "[" * 5000 + "]" * 5000 + "]}"),
        ("POST", USERS, json.dumps(user("deep@acme.com"))[:-1] + ', "x": ' + _nested(MAX_JSON_DEPTH) + "}"),
    ],
    ids=["post-5000", "patch-5000", "post-just-over"],
)
async def test_deeply_nested_json_gets_400_invalid_syntax(
    client: httpx.AsyncClient, keyplane: Keyplane, method: str, path: str, body: str
) -> None:
    r = await client.request(
        method, path, content=body, headers={"content-type": SCIM_JSON, "authorization": f"Bearer {OKTA_TOKEN}"}
    )
    assert r.status_code == 400, r.text
    assert r.json()["scimType"] == "invalidSyntax"
    assert str(MAX_JSON_DEPTH) in r.json()["detail"]
    assert keyplane.refusals.count("scim.invalidSyntax") == 1


def test_json_depth_skips_strings() -> None:
    assert json_depth(b'{"a": [1, {"b": "[[[[{{{{"}], "c": "\\"[["}') == 3
    assert json_depth(b"[]") == 1 and json_depth(b'"x"') == 0 and json_depth(b"") == 0
    assert json_depth(_nested(MAX_JSON_DEPTH).encode()) == MAX_JSON_DEPTH


@pytest.fixture
def served(keyplane: Keyplane) -> Iterator[int]:
    """The app in a real uvicorn server on 127.0.0.1; yields the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(keyplane.asgi(), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield sock.getsockname()[1]
    server.should_exit = True
    thread.join(10)


def test_a_real_server_answers_401_to_the_headers_of_an_anonymous_100_mib_body(served: int) -> None:
    with socket.create_connection(("127.0.0.1", served), timeout=10) as conn:
        conn.sendall(
            f"POST {USERS} HTTP/1.1\r\nHost: app.example.com\r\nContent-Type: {SCIM_JSON}\r\n"
            f"Content-Length: {HUNDRED_MIB}\r\n\r\n".encode()
            + b" " * CHUNK
        )
        # The app answers at once; the other 99.9 MiB are never sent (reading them would wait for them).
        status_line = conn.recv(4096).split(b"\r\n", 1)[0]
    assert status_line == b"HTTP/1.1 401 Unauthorized"


async def test_bulk_keeps_its_advertised_max_payload_size(client: httpx.AsyncClient) -> None:
    config = (await client.get("/scim/v2/okta/ServiceProviderConfig")).json()
    limit = config["bulk"]["maxPayloadSize"]
    assert limit < DEFAULT_MAX_BODY_SIZE
    body = CountingBody(total=limit + 4 * CHUNK)
    r = await client.post(
        "/scim/v2/okta/Bulk",
        content=body,
        headers={"content-type": SCIM_JSON, "authorization": f"Bearer {OKTA_TOKEN}"},
    )
    assert r.status_code == 413, r.text
    assert "maxPayloadSize" in r.json()["detail"]
    assert body.consumed <= limit + CHUNK
