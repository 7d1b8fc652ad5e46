"""Request bodies: read within a size cap, and JSON refused when nested too deep.

Every route of ``keyplane.app`` that reads a body goes through :func:`read_body`: a declared
``Content-Length`` over the cap is refused before a byte is read, and a body streamed without one
(chunked) is cut off as soon as it passes the cap, so memory stays bounded by the cap whatever the
client sends. Callers authenticate *before* reading (the SCIM bearer token), so an anonymous
client cannot make the app read anything.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from itertools import accumulate
from typing import Any

#: Default cap of a request body (SCIM resources and SAML responses are a few kB; bulk a few hundred).
DEFAULT_MAX_BODY_SIZE = 2 * 1024 * 1024
#: JSON nested deeper than this is refused: SCIM documents are about five levels deep, and the
#: standard library's parser raises RecursionError (a 500) on a few thousand levels.
MAX_JSON_DEPTH = 64

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]


class BodyTooLarge(Exception):
    """The body is larger than the cap."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit} bytes")
        self.limit = limit


class ClientDisconnected(Exception):
    """The client went away before sending the whole body."""


def content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The declared Content-Length, or None when absent or unreadable (the cap then applies while reading)."""
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def read_body(receive: Receive, headers: Iterable[tuple[bytes, bytes]], limit: int) -> bytes:
    """The request body, at most ``limit`` bytes; raises :class:`BodyTooLarge` past it.

    Never reads more than ``limit`` bytes plus one ASGI message.
    """
    declared = content_length(headers)
    if declared is not None and declared > limit:
        raise BodyTooLarge(limit)
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        body += message.get("body", b"")
        if len(body) > limit:
            raise BodyTooLarge(limit)
        if not message.get("more_body", False):
            return bytes(body)


# A JSON string, escapes included (unrolled, so linear on any input).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def json_depth(body: bytes) -> int:
    """How deep arrays and objects nest in a JSON text, without parsing it (strings skipped)."""
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    return json_depth(body) > limit
