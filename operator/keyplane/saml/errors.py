"""The one exception the SAML package raises for bad input."""

from __future__ import annotations


class MetadataError(Exception):
    """Bad IdP metadata or certificate input.

    `reason` is a CamelCase condition reason; `message` tells the admin what to do and never
    contains secrets (it may quote public metadata values such as entity IDs and URLs).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


def capped_list(items: list[str], cap: int = 10) -> str:
    """`a, b, c (and 4 more)`: keeps condition messages short for big federation aggregates."""
    shown = ", ".join(items[:cap])
    if len(items) > cap:
        shown += f" (and {len(items) - cap} more)"
    return shown
