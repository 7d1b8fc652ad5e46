"""A fast membership test for kmock views: the emulator's bottleneck at benchmark scale.

kmock decides which reaction serves a request with ``request in reaction._source``, and a view's
``__contains__`` iterates *every request the server ever received* through the view's filters to find
that one by identity. Each request therefore costs O(all requests so far) filter evaluations
(typing/enum/regex checks), i.e. the whole run is quadratic: 400 requests already spend ~0.2 s each
(cProfile: 85 of 93 s in kmock.filtering._check under View.__contains__).

For the plain chains the emulator uses (Root → Priority/Filter…), "is this request in the view" is
"is it in the root, and does it pass each filter on the way", evaluated for that one request in the same
order as iteration would. Views whose membership depends on other requests (slices like ``[:3]``,
groups, exclusions, streams) keep kmock's original test, so counted fault injections still work.
"""

from __future__ import annotations

from typing import Any

from kmock._internal import dsl, rendering

_original_contains = dsl.View.__contains__
_UNKNOWN = object()


def _member(view: Any, request: Any) -> Any:
    if type(view) is dsl.Root or (isinstance(view, dsl.Root) and not isinstance(view, dsl.Chained)):
        requests = view._requests
        return any(candidate is request for candidate in reversed(requests))
    if type(view) is dsl.Priority:
        return _member(view._source, request)
    if type(view) is dsl.Filter:
        inner = _member(view._source, request)
        if inner is _UNKNOWN or not inner:
            return inner
        return bool(view.criteria(request))
    return _UNKNOWN


def _contains(self: Any, item: Any) -> bool:
    if isinstance(item, rendering.Request):
        found = _member(self, item)
        if found is not _UNKNOWN:
            return bool(found)
    return bool(_original_contains(self, item))


def install() -> None:
    """Patch kmock (idempotent)."""
    if dsl.View.__contains__ is not _contains:
        dsl.View.__contains__ = _contains  # type: ignore[method-assign]


def install_emulator_cache() -> None:
    """Cache KeyplaneEmulator's "is this resource served" check (kmock rebuilds the list of resources,
    from every stored object, on each request: O(objects) per request). Positive answers only."""
    from keyplane.testing.emulator import KeyplaneEmulator

    original = KeyplaneEmulator.__dict__["_require_known"]
    if getattr(original, "_bench_cached", False):
        return
    known: dict[tuple[int, Any], Any] = {}

    def _require_known(self: Any, res: Any) -> Any:
        if res is None:
            return original(self, res)
        key = (id(self), (res.group, res.version, res.plural))
        if key not in known:
            known[key] = original(self, res)
        return known[key]

    _require_known._bench_cached = True  # type: ignore[attr-defined]
    KeyplaneEmulator._require_known = _require_known  # type: ignore[method-assign]
