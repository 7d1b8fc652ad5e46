"""DnsPythonTxtResolver against a tiny UDP DNS server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from keyplane.sources.dns import DnsLookupError, DnsPythonTxtResolver, challenge_record_name

ZONE = {
    "_keyplane-challenge.acme.com.": ['"keyplane-verify=abc" "def"', '"v=spf1 -all"'],
}
EXISTS_WITHOUT_TXT = {"acme.com."}


@dataclass
class FakeDNS(asyncio.DatagramProtocol):
    mode: str = "answer"  # answer | silent | servfail
    queries: list[str] = field(default_factory=list)
    transport: Any = None  # the selector transport isn't a DatagramTransport subclass on 3.11

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = question.name.to_text()
        self.queries.append(name)
        if self.mode == "silent":
            return
        response = dns.message.make_response(query)
        if self.mode == "servfail":
            response.set_rcode(dns.rcode.SERVFAIL)
        elif name in ZONE and question.rdtype == dns.rdatatype.TXT:
            response.answer.append(dns.rrset.from_text_list(name, 300, "IN", "TXT", ZONE[name]))
        elif name not in ZONE and name not in EXISTS_WITHOUT_TXT:
            response.set_rcode(dns.rcode.NXDOMAIN)
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


@pytest.fixture
async def dns_server() -> AsyncIterator[Callable[[str], Any]]:
    transports: list[asyncio.DatagramTransport] = []

    async def start(mode: str) -> tuple[FakeDNS, int]:
        proto = FakeDNS(mode)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: proto, local_addr=("127.0.0.1", 0))
        transports.append(transport)
        return proto, transport.get_extra_info("sockname")[1]

    yield start
    for transport in transports:
        transport.close()


async def test_txt_found_and_chunks_joined(dns_server: Any) -> None:
    server, port = await dns_server("answer")
    resolver = DnsPythonTxtResolver(["127.0.0.1"], port=port, timeout=2.0)
    values = await resolver.txt(challenge_record_name("acme.com"))
    assert sorted(values) == ["keyplane-verify=abcdef", "v=spf1 -all"]
    assert server.queries == ["_keyplane-challenge.acme.com."]  # absolute: no search domains


async def test_nxdomain_and_no_answer_are_empty(dns_server: Any) -> None:
    _, port = await dns_server("answer")
    resolver = DnsPythonTxtResolver(["127.0.0.1"], port=port, timeout=2.0)
    assert await resolver.txt("_keyplane-challenge.unknown.example") == []
    assert await resolver.txt("acme.com") == []


async def test_timeout_raises(dns_server: Any) -> None:
    _, port = await dns_server("silent")
    resolver = DnsPythonTxtResolver(["127.0.0.1"], port=port, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(DnsLookupError) as exc:
        await resolver.txt("_keyplane-challenge.acme.com")
    assert "timed out" in exc.value.message
    assert time.monotonic() - started < 2.0


async def test_servfail_raises(dns_server: Any) -> None:
    _, port = await dns_server("servfail")
    resolver = DnsPythonTxtResolver(["127.0.0.1"], port=port, timeout=1.0)
    with pytest.raises(DnsLookupError):
        await resolver.txt("_keyplane-challenge.acme.com")


async def test_invalid_name_raises() -> None:
    resolver = DnsPythonTxtResolver(["127.0.0.1"], port=9, timeout=0.5)
    with pytest.raises(DnsLookupError):
        await resolver.txt("a" * 70 + ".example")


def test_challenge_record_name() -> None:
    assert challenge_record_name("acme.com") == "_keyplane-challenge.acme.com"
    assert challenge_record_name("Acme.COM.") == "_keyplane-challenge.acme.com"
