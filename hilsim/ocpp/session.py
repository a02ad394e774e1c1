"""Keeping the charge point connected: connect, boot, heartbeat, send in order, reconnect.

A bench CSMS is restarted all the time and Wi-Fi drops; the link must come back by itself without
anyone touching the Pi. Each connection gets a fresh `ChargePointClient`; everything that must
survive a reconnection (keys, connectors, transactions) lives in the `Charger`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from hilsim.errors import CsmsError
from hilsim.keys import ConfigurationKeys
from hilsim.ocpp.client import ChargePointClient, Identity
from hilsim.ocpp.ports import ChargerPort
from hilsim.ocpp.transport import SUBPROTOCOL, Backoff, ConnectionClosed, open_link
from hilsim.ocpp.validation import Schemas
from hilsim.ocpp.wire import FrameListener, TracedConnection
from hilsim.tasks import TaskSet

if TYPE_CHECKING:
    from hilsim.security import ConnectionSecurity

log = logging.getLogger(__name__)

#: How long to wait before re-sending BootNotification when the CSMS gave no interval.
DEFAULT_BOOT_RETRY_S = 30.0

Job = Callable[[ChargePointClient], Awaitable[Any]]
#: Makes the client of one connection: `ChargePointClient` (1.6), or in 2.0.1 mode
#: `hilsim.ocpp201.client.ChargePointClient201`, which has the same outgoing methods, so every
#: job works on either. Called as ``factory(id, connection, owner, response_timeout=...,
#: schemas=..., after_configuration_change=...)``.
ClientFactory = Callable[..., ChargePointClient]


class LinkState(StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    BOOTING = "booting"
    PENDING = "pending"  # BootNotification answered Pending or Rejected: retrying
    CONNECTED = "connected"


class ConnectionWatcher(Protocol):
    """Told of every attempt to open the WebSocket (OCPP 2.0.1's security events: a refused
    handshake or an untrusted CSMS certificate is reported after the next accepted boot)."""

    def connect_failed(self, error: CsmsError, owner: LinkOwner) -> None: ...

    def link_opened(self) -> None: ...


class LinkOwner(ChargerPort, Protocol):
    """What the link tells the charger about."""

    def link_changed(self, state: LinkState) -> None: ...

    def booted(self) -> None: ...

    def adopt_heartbeat_interval(self, seconds: int) -> None: ...

    def learn_time(self, current_time: str) -> None: ...


@dataclass(slots=True)
class _Queued:
    job: Job
    name: str
    future: asyncio.Future[Any] = field(default_factory=lambda: _loop().create_future())


class CsmsLink:
    """The charge point's one connection to its CSMS, across reconnections."""

    def __init__(
        self,
        endpoint: str,
        charge_point_id: str,
        identity: Identity,
        keys: ConfigurationKeys,
        *,
        backoff: Backoff | None = None,
        frame_listeners: list[FrameListener] | None = None,
        response_timeout: float = 30.0,
        security: ConnectionSecurity | None = None,
        client_factory: ClientFactory = ChargePointClient,
        subprotocol: str = SUBPROTOCOL,
        schemas: Schemas | None = None,
        connection_watcher: ConnectionWatcher | None = None,
    ) -> None:
        """``security``: profile 1-3 (`hilsim.security`); None: plain, as the URL says.
        ``connection_watcher``: told of each failed and each opened connection (2.0.1).

        ``client_factory``, ``subprotocol`` and ``schemas`` choose the OCPP version (1.6 unless
        given; `hilsim.wiring` gives the 2.0.1 ones in 2.0.1 mode).
        """
        self.endpoint = endpoint
        self.charge_point_id = charge_point_id
        self.identity = identity
        #: the charge point this link serves: given to `run`, so that the link can be built first
        #: and handed to the services the charge point is made of
        self._owner: LinkOwner | None = None
        self.keys = keys
        self.backoff = backoff or Backoff()
        self.frame_listeners = frame_listeners if frame_listeners is not None else []
        self.response_timeout = response_timeout
        # compiled on first use, kept across reconnections
        self.schemas = schemas if schemas is not None else Schemas()
        self.client_factory = client_factory
        self.subprotocol = subprotocol
        self.state = LinkState.DISCONNECTED
        self.connected = asyncio.Event()  # set exactly while state is CONNECTED
        self.disconnected = asyncio.Event()
        self.disconnected.set()
        self.client: ChargePointClient | None = None
        self.connected_since: float | None = None  # wall clock
        self.last_message_at: float | None = None  # wall clock
        self.connections = 0
        self._socket: Any = None  # the open WebSocket, for reconnect()
        self.security = security
        self.connection_watcher = connection_watcher
        self._tasks = TaskSet("link")
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue()
        self._keys_changed = asyncio.Event()
        #: whether this connection's BootNotification got a valid answer (resets the backoff)
        self._boot_answered = False
        keys.subscribe(lambda spec, value: self._keys_changed.set())

    # -- for the charger ---------------------------------------------------------------------

    def submit(self, job: Job, name: str, *, quiet: bool = False) -> asyncio.Future[Any]:
        """Queue a CALL to be sent in order; fails at once when not connected.

        ``quiet`` jobs are fire-and-forget: their failure is logged here instead of raised to a
        caller that is not listening.
        """
        item = _Queued(job, name)
        if self.state != LinkState.CONNECTED:
            item.future.set_exception(CsmsError(f"{name}: not connected to the CSMS"))
        else:
            self._queue.put_nowait(item)
        if quiet:
            item.future.add_done_callback(_log_failure)
        return item.future

    async def reconnect(self) -> None:
        """Close the connection on purpose (Reset Soft); `run` connects and boots again."""
        ws = self._socket
        if ws is not None:
            log.info("closing the connection to %s to connect again", self.endpoint)
            await ws.close()

    def _after_configuration_change(self) -> None:
        """A ChangeConfiguration answer is on the wire: a new SecurityProfile or AuthorizationKey
        takes effect by connecting again, only now (the CSMS must hear Accepted first)."""
        if self.security is not None and self.security.take_reconnect():
            self._tasks.spawn(self.reconnect(), "reconnect")

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, owner: LinkOwner) -> None:
        """Connect, serve ``owner``, and reconnect forever (until cancelled)."""
        self._owner = owner
        delays = self.backoff.delays()
        while True:
            self._set_state(LinkState.CONNECTING)
            try:
                ping = float(self.keys.get("WebSocketPingInterval")) or None
                # The security profile decides the scheme, Basic auth and TLS (hilsim.security).
                security = self.security
                url, options = (
                    security.connection(self.endpoint) if security else (self.endpoint, {})
                )
                ws = await open_link(
                    url,
                    open_timeout=self.response_timeout,
                    ping_interval=ping,
                    ping_timeout=ping,
                    subprotocol=self.subprotocol,
                    **options,
                )
            except CsmsError as exc:
                if self.security is not None:
                    self.security.connection_failed(exc)  # may fall back to the last good one
                if self.connection_watcher is not None:
                    self.connection_watcher.connect_failed(exc, owner)
                delay = next(delays)
                log.warning("%s; retrying in %.1f s", exc, delay)
                self._set_state(LinkState.DISCONNECTED)
                await asyncio.sleep(delay)
                continue
            self.connections += 1
            self._boot_answered = False
            self._socket = ws
            if self.security is not None:
                self.security.connected()
            if self.connection_watcher is not None:
                self.connection_watcher.link_opened()
            log.info("connected to %s", self.endpoint)
            try:
                await self._serve(ws, owner)
            except* (ConnectionClosed, CsmsError, TimeoutError, OSError) as group:
                log.warning("link to the CSMS lost: %s", _first_cause(group))
            finally:
                self.client = None
                self._socket = None
                self.connected_since = None
                self._set_state(LinkState.DISCONNECTED)
                self._fail_queued()
                with contextlib.suppress(Exception):
                    await ws.close()
            if self._boot_answered:
                # Only a CSMS that answered the boot properly earns a fresh start: one that
                # accepts the socket but garbles BootNotification.conf is backed off from like
                # one that refuses the socket, not knocked on every second forever.
                delays = self.backoff.delays()
            delay = next(delays)
            log.info("reconnecting in %.1f s", delay)
            await asyncio.sleep(delay)

    async def _serve(self, ws: Any, owner: LinkOwner) -> None:
        connection = TracedConnection(ws, [self._touch, *self.frame_listeners])
        client = self.client_factory(
            self.charge_point_id,
            connection,
            owner,
            response_timeout=self.response_timeout,
            schemas=self.schemas,
            after_configuration_change=self._after_configuration_change,
        )
        async with asyncio.TaskGroup() as tasks:
            reader = tasks.create_task(client.start(), name="ocpp-reader")
            await self._boot(client, owner)
            self.client = client
            self.connected_since = time.time()
            self._set_state(LinkState.CONNECTED)
            owner.booted()
            tasks.create_task(self._send_queued(client), name="ocpp-sender")
            tasks.create_task(self._heartbeat(owner), name="ocpp-heartbeat")
            await reader

    async def _boot(self, client: ChargePointClient, owner: LinkOwner) -> None:
        """BootNotification until Accepted; nothing else is sent meanwhile, as OCPP requires."""
        self._set_state(LinkState.BOOTING)
        while True:
            result = await client.boot_notification(self.identity)
            # Rejected is a valid answer too, but not one that proves the CSMS will have us.
            self._boot_answered = self._boot_answered or result.status != "Rejected"
            owner.learn_time(result.current_time)
            if result.status == "Accepted":
                if result.interval > 0:
                    owner.adopt_heartbeat_interval(int(result.interval))
                log.info("BootNotification accepted by the CSMS")
                return
            retry = float(result.interval) if result.interval > 0 else DEFAULT_BOOT_RETRY_S
            log.warning("BootNotification %s; sending it again in %g s", result.status, retry)
            self._set_state(LinkState.PENDING)
            await asyncio.sleep(retry)

    async def _send_queued(self, client: ChargePointClient) -> None:
        while True:
            item = await self._queue.get()
            if item.future.done():
                continue
            try:
                result = await item.job(client)
            except (ConnectionClosed, TimeoutError) as exc:
                item.future.set_exception(CsmsError(f"{item.name}: {exc or 'no answer'}"))
                raise
            except asyncio.CancelledError:
                # The connection died while this CALL waited for its answer (the reader's end
                # cancels this task): its caller, the outbox above all, must hear it, not wait
                # forever on a future nobody will ever resolve.
                if not item.future.done():
                    item.future.set_exception(CsmsError(f"{item.name}: link to the CSMS lost"))
                raise
            except Exception as exc:
                item.future.set_exception(exc)
            else:
                item.future.set_result(result)

    async def _heartbeat(self, owner: LinkOwner) -> None:
        """Heartbeat every HeartbeatInterval; a changed interval takes effect at once."""
        last = time.monotonic()
        while True:
            interval = float(self.keys.get("HeartbeatInterval"))
            remaining = last + interval - time.monotonic()
            if remaining > 0:
                self._keys_changed.clear()
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._keys_changed.wait()
                continue
            last = time.monotonic()
            owner.learn_time(await self.submit(lambda c: c.heartbeat(), "Heartbeat"))

    def _fail_queued(self) -> None:
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if not item.future.done():
                item.future.set_exception(CsmsError(f"{item.name}: link to the CSMS lost"))

    def _touch(self, frame: Any) -> None:
        self.last_message_at = time.time()

    def _set_state(self, state: LinkState) -> None:
        if state != self.state:
            self.state = state
            if state == LinkState.CONNECTED:
                self.disconnected.clear()
                self.connected.set()
            else:
                self.connected.clear()
                self.disconnected.set()
            if self._owner is not None:
                self._owner.link_changed(state)


def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("%s", future.exception())


def _first_cause(group: BaseExceptionGroup[Any]) -> str:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return str(exc) or type(exc).__name__
