"""
Run a Kopf operator in-process, in the background of a test, and stop it in about a second.

Kopf's shutdown waits 5 s for, and then cancels, every task it "did not start" — which, to Kopf,
is every task that did not exist when it started: the test framework's and the HTTP server's too.
Here the operator runs with ``kopf.spawn_tasks`` + ``kopf.run_tasks(ignored=...)`` where
``ignored`` is every task *not* spawned (transitively) by the operator: a task factory tags tasks
created inside the operator's context. Teardown then takes milliseconds.
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import weakref
from collections.abc import AsyncIterator, Collection, Coroutine, Iterator
from typing import Any

import kopf

__all__ = ['running_operator']

logger = logging.getLogger(__name__)

_OperatorTasks = weakref.WeakSet[asyncio.Future[Any]]
_SCOPE: contextvars.ContextVar[_OperatorTasks | None] = contextvars.ContextVar('keyplane_operator_tasks',
                                                                                default=None)


class _NotOperatorTasks(Collection[asyncio.Task[Any]]):
    """Contains every task except the operator's own (as ``ignored`` for ``kopf.run_tasks``)."""

    def __init__(self, tasks: _OperatorTasks) -> None:
        self._tasks = tasks

    def __contains__(self, task: object) -> bool:
        return task not in self._tasks

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:  # not enumerable; Kopf only tests membership
        return iter(())

    def __len__(self) -> int:
        return 0


def _install_task_tagger(loop: asyncio.AbstractEventLoop) -> Any:
    previous = loop.get_task_factory()

    def factory(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any,
                ) -> asyncio.Future[Any]:
        if previous is not None:
            task = previous(loop, coro, **kwargs)
        else:
            task = asyncio.Task(coro, loop=loop, **kwargs)
        context = kwargs.get('context')
        scope = context.get(_SCOPE) if context is not None else _SCOPE.get()
        if scope is not None:
            scope.add(task)
        return task

    loop.set_task_factory(factory)  # type: ignore[arg-type]
    return previous, factory


@contextlib.asynccontextmanager
async def running_operator(
        *,
        registry: kopf.OperatorRegistry | None = None,
        namespaces: list[str] | None = None,
        clusterwide: bool = True,
        peering_name: str | None = None,
        priority: int = 0,
        liveness_endpoint: str | None = None,
        memo: object | None = None,
        settings: kopf.OperatorSettings | None = None,
        startup_timeout: float = 10.0,
        shutdown_timeout: float = 1.0,
) -> AsyncIterator[None]:
    """
    Run a Kopf operator in a background task for the duration of the ``async with`` block.

    ``registry=None`` uses Kopf's default registry (handlers declared with plain ``@kopf.on…``,
    including its default login via the kubernetes client — see :func:`use_kubeconfig`).
    With ``namespaces``, the operator serves only those; otherwise it is cluster-wide if
    ``clusterwide``. Without ``peering_name``, it runs standalone (no peering resources needed).

    Entering waits until Kopf reports readiness (startup handlers done, logged in); an operator
    that fails to start raises here. Exiting sets the stop flag and waits up to
    ``shutdown_timeout`` for a clean exit before cancelling; errors of the operator are re-raised.
    """
    loop = asyncio.get_running_loop()
    stop_flag = asyncio.Event()
    ready_flag = asyncio.Event()
    operator_tasks: _OperatorTasks = weakref.WeakSet()
    previous, factory = _install_task_tagger(loop)

    async def main() -> None:
        tasks = await kopf.spawn_tasks(
            registry=registry,
            settings=settings,
            memo=memo,
            standalone=peering_name is None,
            peering_name=peering_name,
            priority=priority,
            liveness_endpoint=liveness_endpoint,
            clusterwide=clusterwide and not namespaces,
            namespaces=namespaces or (),
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
        await kopf.run_tasks(tasks, ignored=_NotOperatorTasks(operator_tasks))

    context = contextvars.copy_context()
    context.run(_SCOPE.set, operator_tasks)
    task = loop.create_task(main(), name='keyplane-testing-operator', context=context)
    try:
        await _until_ready(task, ready_flag, startup_timeout)
        yield
    finally:
        stop_flag.set()
        try:
            await _until_stopped(task, operator_tasks, shutdown_timeout)
        finally:
            if loop.get_task_factory() is factory:
                loop.set_task_factory(previous)


async def _until_ready(task: asyncio.Task[None], ready_flag: asyncio.Event, startup_timeout: float) -> None:
    """Wait for Kopf's readiness; an operator that exits or stays unready meanwhile raises here."""
    ready = asyncio.get_running_loop().create_task(ready_flag.wait())
    try:
        await asyncio.wait([ready, task], timeout=startup_timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ready.cancel()
    if task.done():
        task.result()  # re-raise the startup failure
        raise RuntimeError('The operator exited during its startup.')
    if not ready_flag.is_set():
        raise TimeoutError(f'The operator did not become ready within {startup_timeout}s.')


async def _until_stopped(task: asyncio.Task[None], operator_tasks: _OperatorTasks, shutdown_timeout: float) -> None:
    """Wait for the (already flagged) operator to exit; cancel it, naming what is pending, if it does not."""
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout=shutdown_timeout)
    except TimeoutError:
        pending = [t for t in operator_tasks if not t.done()]
        logger.warning('The operator did not stop within %ss; cancelling it; pending tasks: %r',
                       shutdown_timeout, pending)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
