"""Errors raised by the metadata fetcher.

``reason`` is a CamelCase condition reason; ``message`` is safe to put in a status
condition or an Event: it says what to do and never carries secrets, query strings or
response bodies.
"""

from __future__ import annotations

from typing import Final

URL_FORBIDDEN: Final = "MetadataURLForbidden"
UNREACHABLE: Final = "MetadataUnreachable"
TIMEOUT: Final = "MetadataTimeout"
TOO_LARGE: Final = "MetadataTooLarge"
HTTP_ERROR: Final = "MetadataHTTPError"
TOO_MANY_REDIRECTS: Final = "MetadataTooManyRedirects"

REASONS: Final = frozenset({URL_FORBIDDEN, UNREACHABLE, TIMEOUT, TOO_LARGE, HTTP_ERROR, TOO_MANY_REDIRECTS})


class FetchError(Exception):
    """A metadata fetch failed; ``reason`` and ``message`` go into the status condition."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def copy(self) -> FetchError:
        """A fresh exception with the same reason and message (safe to raise in another task)."""
        return FetchError(self.reason, self.message)

    def __repr__(self) -> str:
        return f"FetchError({self.reason!r}, {self.message!r})"
