"""DNS TXT lookups for SSODomain verification (``_keyplane-challenge.<domain>``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from keyplane.policy.domains import canonical_domain

if TYPE_CHECKING:
    import dns.asyncresolver

CHALLENGE_LABEL = "_keyplane-challenge"


def challenge_record_name(domain: str) -> str:
    """The TXT record an admin creates to prove control of ``domain`` (canonical, keyplane.policy.domains)."""
    return f"{CHALLENGE_LABEL}.{canonical_domain(domain)}"


class DnsLookupError(Exception):
    """The lookup could not be answered (timeout, SERVFAIL): retry later, don't treat as "absent"."""

    reason = "DNSLookupFailed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TxtResolver(Protocol):
    """Returns the TXT strings published at a name; [] when the name or record doesn't exist."""

    async def txt(self, name: str) -> list[str]: ...


class DnsPythonTxtResolver:
    """TxtResolver backed by ``dns.asyncresolver``.

    ``nameservers=None`` uses the system configuration (/etc/resolv.conf).
    dnspython is imported, and the system configuration read, at the first lookup: `keyplane render` and an
    operator whose SSODomains use no DNS challenge never load it (~50 ms, ~2 MB resident).
    """

    def __init__(self, nameservers: list[str] | None = None, port: int = 53, timeout: float = 5.0) -> None:
        self._nameservers, self._port, self._timeout = nameservers, port, timeout
        self._made: dns.asyncresolver.Resolver | None = None

    @property
    def _resolver(self) -> dns.asyncresolver.Resolver:
        if self._made is None:
            import dns.asyncresolver

            if self._nameservers is None:
                resolver = dns.asyncresolver.Resolver(configure=True)
            else:
                resolver = dns.asyncresolver.Resolver(configure=False)
                resolver.nameservers = list(self._nameservers)
            resolver.port = self._port
            # ``timeout`` is per server attempt, ``lifetime`` the whole query; one budget for both
            # keeps a broken resolver from stalling a reconcile longer than asked.
            resolver.timeout = self._timeout
            resolver.lifetime = self._timeout
            # Verification names are absolute; never append resolv.conf search domains.
            resolver.use_search_by_default = False
            self._made = resolver
        return self._made

    async def txt(self, name: str) -> list[str]:
        import dns.exception
        import dns.name
        import dns.rdatatype
        import dns.resolver

        try:
            qname = dns.name.from_text(name)  # absolute: relative to the root
        except dns.exception.DNSException as exc:
            raise DnsLookupError(f"{name!r} is not a valid DNS name") from exc
        try:
            answer = await self._resolver.resolve(
                qname, dns.rdatatype.TXT, search=False, raise_on_no_answer=False
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.resolver.LifetimeTimeout as exc:
            raise DnsLookupError(f"DNS lookup of TXT {name} timed out; will retry") from exc
        except dns.resolver.NoNameservers as exc:
            raise DnsLookupError(
                f"no DNS server could answer TXT {name} (SERVFAIL or refused); will retry"
            ) from exc
        except dns.exception.DNSException as exc:
            raise DnsLookupError(
                f"DNS lookup of TXT {name} failed ({type(exc).__name__}); will retry"
            ) from exc
        if answer.rrset is None:
            return []
        # A TXT record is one or more <=255-byte character-strings; publishers split long
        # values, so the record's value is their concatenation.
        return [
            b"".join(rdata.strings).decode("utf-8", errors="replace")
            for rdata in answer.rrset
            if rdata.rdtype == dns.rdatatype.TXT
        ]
