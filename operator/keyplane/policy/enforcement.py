"""``enforcement`` of an SSODomain: parsed fail-closed.

A bundle entry without ``enforcement``, or with a value this version does not know, is an error:
reading it as ``Optional`` would open local (password) login to a domain that must use its IdP.
"""

from __future__ import annotations

import enum


class Enforcement(enum.StrEnum):
    REQUIRED = "Required"
    OPTIONAL = "Optional"


def parse_enforcement(value: object) -> Enforcement:
    """The enforcement named by ``value``; ValueError for a missing or unknown one."""
    if value is None:
        raise ValueError("enforcement is missing (it must be 'Required' or 'Optional')")
    if isinstance(value, str):
        for known in Enforcement:
            if value == known.value:
                return known
    raise ValueError(f"unknown enforcement {value!r} (it must be 'Required' or 'Optional')")
