"""The one place where gpiozero's threads meet the asyncio event loop.

gpiozero calls button handlers on its own threads (a pin's edge thread, a mock pin's caller, a
debounce timer). The charger and its state machines belong to the event loop and are not
thread-safe, so a handler may do exactly one thing: post the news to the loop, where it runs in
order with every other event. Keeping this in one small class makes the rule easy to check.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class LoopBridge:
    """Posts calls from any thread onto one event loop (`loop.call_soon_threadsafe`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._open = True

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop soon. Safe from any thread; never blocks the caller."""
        if not self._open:
            return
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            # The loop closed under a late edge (shutdown): like a press on a switched-off
            # charger, it is dropped.
            log.debug("event loop closed; dropped %r", fn)

    def close(self) -> None:
        """Drop whatever gpiozero reports from now on (its threads may lag behind close)."""
        self._open = False
