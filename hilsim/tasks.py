"""Background tasks that can never fail unseen: the one way hilsim starts one.

A task started with a bare ``create_task`` that raises only says "Task exception was never
retrieved" when it is garbage-collected, if ever; the connector it worked for waits forever (an
Authorize that never ends keeps it Preparing: "idTag ... is already waiting"). Every background
step therefore runs in a `TaskSet`: it is named, kept referenced until it ends, its failure is
logged (ERROR with the traceback; a dropped link, which is no bug, as a WARNING) and handed to the
owner's ``on_failure`` hook, which turns it into a state change (a connector usable again, a
fault shown).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from websockets.exceptions import ConnectionClosed

from hilsim.errors import CsmsError

log = logging.getLogger(__name__)

#: Told the exception of a task that failed (not of one that was cancelled).
FailureHook = Callable[[BaseException], None]

#: The link went away under the task: expected, logged without a traceback.
_LINK_ERRORS = (CsmsError, ConnectionClosed, TimeoutError)


class TaskSet:
    """The background tasks of one owner (the charger, a job, a server)."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._tasks: set[asyncio.Future[Any]] = set()

    def spawn(
        self, work: Awaitable[Any], name: str, on_failure: FailureHook | None = None
    ) -> asyncio.Future[Any]:
        """Run ``work`` in the background as ``owner-name``; see the module docstring."""
        task = asyncio.ensure_future(work)
        label = f"{self.owner}-{name}"
        if isinstance(task, asyncio.Task):
            task.set_name(label)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda done: _ended(done, label, on_failure))
        return task

    def pending(self) -> list[asyncio.Future[Any]]:
        return [task for task in self._tasks if not task.done()]

    async def cancel_all(self) -> None:
        """Cancel every task and wait for them to end (their failures are logged, not raised)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __iter__(self) -> Iterator[asyncio.Future[Any]]:
        return iter(list(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)


def _ended(task: asyncio.Future[Any], label: str, on_failure: FailureHook | None) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is None:
        return
    if isinstance(exc, _LINK_ERRORS):
        log.warning("%s: %s", label, exc or type(exc).__name__)
    else:
        log.error("background task %s failed: %s", label, exc, exc_info=exc)
    if on_failure is None:
        return
    try:
        on_failure(exc)
    except Exception:
        log.exception("background task %s: its failure hook failed too", label)
