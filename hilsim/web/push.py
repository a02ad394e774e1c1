"""The live half of the demo page's server: the open pages and what is pushed to them.

Changes are noted (`mark`) and sent `PUSH_DELAY_S` later as one message to every page (the state,
and the events and frames since the last push, serialised once for all pages); while at least
one page is open a ticker pushes power samples once a second. With no page open, nothing is
built: `messages_built` counts serialisations, so a test can hold that promise to account.
What a message holds is the server's business (`update`, `sample`); this module only decides
when to send, to whom, and drops a page that cannot keep up instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from hilsim.tasks import TaskSet
from hilsim.web.frames import FrameLog

log = logging.getLogger(__name__)

#: Changes are pushed this long after they happen, together: the charger's own messages (the
#: StatusNotification a button caused) leave first, and a burst costs one message, not many.
PUSH_DELAY_S = 0.02
#: Events kept for the next push; a flood beyond this keeps only the latest.
EVENTS_KEPT = 200
#: Messages waiting for one page; a page further behind than this is dropped, not waited for.
QUEUE_LIMIT = 2000

Samples = dict[int, list[float]]


@dataclass(eq=False, slots=True)
class Client:
    """One open page: its connection, its outgoing queue, and whether it gave the password."""

    ws: ServerConnection
    address: str
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    unlocked: bool = False
    dropped: bool = False


class LivePush:
    """The open pages, and the one push that tells them all what changed."""

    def __init__(
        self,
        frames: FrameLog,
        update: Callable[[Samples | None], dict[str, Any]],
        sample: Callable[[], Samples],
        tick_s: float,
    ) -> None:
        """`update(samples)`: the state part of a push; `sample()`: the ticker's power points."""
        self.frames = frames
        self.update = update
        self.sample = sample
        self.tick_s = tick_s
        #: JSON messages serialised so far: stays 0 while no page is open.
        self.messages_built = 0
        self.clients: set[Client] = set()
        self.idle = asyncio.Event()  # set while no page is open
        self.idle.set()
        self.tasks = TaskSet("web")
        self._ticker: asyncio.Future[None] | None = None
        self._flush_handle: asyncio.TimerHandle | None = None
        self._events: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)

    def dumps(self, message: dict[str, Any]) -> str:
        self.messages_built += 1
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False)

    def join(self, client: Client, hello: dict[str, Any]) -> None:
        """A page opened: `hello` (its full state) is queued before any live push can be."""
        client.queue.put_nowait(self.dumps(hello))
        self.clients.add(client)
        self.idle.clear()
        if self._ticker is None:
            self._ticker = self.tasks.spawn(self._tick(), "ticker")

    def leave(self, client: Client) -> None:
        """A page closed; the last one stops the ticker and whatever was waiting to be pushed."""
        self.clients.discard(client)
        if not self.clients:
            self.stop()
            self._events.clear()
            self.frames.unwatch()
            self.idle.set()

    async def write(self, client: Client) -> None:
        """Send a page its queue, until its connection closes."""
        with contextlib.suppress(ConnectionClosed):
            while True:
                await client.ws.send(await client.queue.get())

    def push(self, client: Client, text: str) -> None:
        if client.dropped:
            return
        try:
            client.queue.put_nowait(text)
        except asyncio.QueueFull:
            client.dropped = True
            log.warning("web: page at %s is too slow to follow; disconnecting it", client.address)
            self.tasks.spawn(client.ws.close(1013, "too slow to follow"), "close-slow-client")

    def broadcast(self, message: dict[str, Any]) -> None:
        if not self.clients:
            return
        text = self.dumps(message)  # once, however many pages are open
        for client in list(self.clients):
            self.push(client, text)

    def event(self, entry: dict[str, Any]) -> None:
        """An event for the next push (only while a page is open)."""
        if self.clients:
            self._events.append(entry)
            self.mark()

    def mark(self) -> None:
        """Something changed: tell every page shortly, once however many changes come together."""
        if self._flush_handle is not None or not self.clients:
            return
        loop = asyncio.get_running_loop()
        self._flush_handle = loop.call_later(PUSH_DELAY_S, self._flush)

    def stop(self) -> None:
        """No more pushes: the ticker and a pending push are cancelled."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        self.cancel_flush()

    def cancel_flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None

    def _flush(self, samples: Samples | None = None) -> None:
        """One message to every page: the state now, and the events and frames since the last."""
        self.cancel_flush()
        message = {"type": "update", **self.update(samples)}
        if self._events:
            message["events"] = list(self._events)
            self._events.clear()
        frames = self.frames.take()
        if frames:
            message["frames"] = frames
        self.broadcast(message)

    async def _tick(self) -> None:
        """While a page is open: power and energy once a second, and the charts' next point."""
        while True:
            await asyncio.sleep(self.tick_s)
            self._flush(self.sample())
