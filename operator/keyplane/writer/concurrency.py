"""Independent writes of one pass, sent together instead of one after another.

Under load every request waits its turn at the API server: a new IdentityProvider's pass waited for its
SP metadata ConfigMap, then its bundle Secret, then its status. The ConfigMaps and the bundle Secret do not
depend on each other, so they go together; the order that matters stays with the caller (configuration
before statuses). Statuses stay one at a time: sending a burst's hundreds together raised the operator's
peak memory more than it saved time. A failure is re-raised as itself (not an ExceptionGroup), so the
namespace writer still tells a write conflict from other errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


async def concurrently(*writes: Coroutine[Any, Any, None]) -> None:
    """Await all; on a failure, cancel the rest and raise the first failure."""
    try:
        async with asyncio.TaskGroup() as group:
            for write in writes:
                group.create_task(write)
    except BaseExceptionGroup as failed:
        raise _first(failed) from None


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first
