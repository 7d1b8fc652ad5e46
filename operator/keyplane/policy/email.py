"""The canonical email address: computed once, here, for every login, SCIM write and bundle entry.

Canonical form: ``local@domain`` where

* syntax and IDNA come from the kept library ``email-validator`` (no DNS lookups);
* the local part is NFKC-normalised and lower-cased (IdPs, SCIM clients and users disagree on
  case; every IdP Keyplane supports treats addresses case-insensitively);
* the domain is its lower-case IDNA A-label form (``xn--bcher-kva.de``), the form the bundle's domain
  table and the SSODomain CRD use, without a trailing dot (one trailing dot is accepted and dropped).

Refused (no canonical form): anything ``email-validator`` refuses (two ``@``, empty parts, quoted
local parts, IP literals, special-use domains such as ``.local`` or ``.test``, zero-width spaces…),
plus what it lets through but a person cannot see or tell apart: format characters (Unicode ``Cf``),
invisible letters such as the Hangul fillers, and domain labels that mix scripts (``acme.com`` spelt
with a Cyrillic ``a``, U+0430).
"""

from __future__ import annotations

import functools
import unicodedata

# Letters that render as nothing (Unicode treats them as letters or symbols, not as format characters).
INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0\u2800\u17b4\u17b5\u180e\u034f")
# Unicode categories with no visible, unambiguous glyph: control, format, surrogate, private use,
# unassigned, and line/paragraph/space separators.
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"})
# Scripts that legitimately share one label (Japanese mixes Han, Hiragana and Katakana; Korean Han and
# Hangul; all of them may carry Latin), after UTS #39's "highly restrictive" profile.
EAST_ASIAN = frozenset({"CJK", "HIRAGANA", "KATAKANA", "HANGUL", "BOPOMOFO"})
MAX_LENGTH = 320


class InvalidEmail(ValueError):
    """The address has no canonical form; ``str()`` says why."""


def _invisible_character(raw: str) -> str | None:
    for char in raw:
        if char in INVISIBLE or unicodedata.category(char) in INVISIBLE_CATEGORIES:
            return f"U+{ord(char):04X} {unicodedata.name(char, 'UNNAMED')}"
    return None


def _script(char: str) -> str | None:
    """The script of a letter (the first word of its Unicode name); None for digits, marks and hyphens."""
    if not unicodedata.category(char).startswith("L"):
        return None
    word = unicodedata.name(char).split()[0]  # every assigned letter has a name
    return "CJK" if word in EAST_ASIAN else word


def mixed_script_label(domain: str) -> str | None:
    """The first label of a Unicode domain that mixes scripts (a confusable), or None."""
    for label in domain.split("."):
        scripts = {s for s in map(_script, label) if s is not None}
        if len(scripts) > 1 and scripts != {"LATIN", "CJK"}:
            return label
    return None


def canonical_email(raw: object) -> str:
    """The canonical form of an address, or :class:`InvalidEmail` saying why it has none."""
    if not isinstance(raw, str) or not raw:
        raise InvalidEmail("no email address")
    return _canonical_email(str(raw))


# A pure function of the text, and not a cheap one (~60 µs: email-validator's syntax and IDNA checks): one
# SSODomain's addresses and domains are checked several times per reconcile (spec validation, claims,
# break-glass entries), and an app's logins repeat the same addresses. Refusals are not cached (raised).
@functools.lru_cache(maxsize=4096)
def _canonical_email(raw: str) -> str:
    if len(raw) > MAX_LENGTH:
        raise InvalidEmail(f"longer than {MAX_LENGTH} characters")
    invisible = _invisible_character(raw)
    if invisible:
        raise InvalidEmail(f"contains the invisible character {invisible}")
    text = raw[:-1] if raw.endswith(".") else raw
    # email-validator compiles its grammar at import (~20 ms): only paid once an address is checked,
    # not by every `keyplane render` or operator start.
    from email_validator import EmailNotValidError, validate_email

    try:
        parsed = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from exc
    label = mixed_script_label(parsed.domain)
    if label is not None:
        raise InvalidEmail(f"the domain label {label!r} mixes scripts (a look-alike of another domain)")
    local = unicodedata.normalize("NFKC", parsed.local_part).lower()
    if _invisible_character(local) or "@" in local:
        raise InvalidEmail("the local part is not a plain address after normalisation")
    return f"{local}@{parsed.ascii_domain.lower()}"


def try_canonical_email(raw: object) -> str | None:
    """:func:`canonical_email`, or None when the address has no canonical form."""
    try:
        return canonical_email(raw)
    except InvalidEmail:
        return None


def domain_of(canonical: str) -> str:
    """The domain of a canonical address (the text after its only ``@``)."""
    return canonical.rpartition("@")[2]
