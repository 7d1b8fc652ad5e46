"""Turn a spec that fails the models' validation into one readable problem."""

from __future__ import annotations

from pydantic import ValidationError

from .model import Problem


def spec_problem(exc: ValidationError) -> Problem:
    """A permanent InvalidSpec problem naming each offending field (the CRD normally rejects these first)."""
    parts = []
    for error in exc.errors()[:5]:
        location = ".".join(str(p) for p in error.get("loc", ()))
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"spec.{location}: {message}" if location else message)
    more = len(exc.errors()) - 5
    if more > 0:
        parts.append(f"and {more} more")
    return Problem("InvalidSpec", "Fix the spec: " + "; ".join(parts) + ".")

