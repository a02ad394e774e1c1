"""The demo page's server: static files, a JSON state, and a WebSocket of live updates.

It runs in the service's own event loop on `websockets`' HTTP handling (`process_request`
answers plain GETs; `/ws` upgrades), so no web framework is needed and nothing new can block the
charger. The page is told about changes as they happen: the charger's status, link and event
listeners and the CSMS link's frame listener only note the change (`LivePush.mark`, in
:mod:`hilsim.web.push`, which decides when and to whom a message goes); a burst of changes costs
one push, and while at least one page is open a once-a-second push carries power and energy for
the charts. :mod:`hilsim.web.http` holds the static files and the headers of every answer.

Nobody looking costs nothing: every listener returns at once when no page is open (the frame
listener only appends the frame to a ring), and the once-a-second task exists only while a page
does. `messages_built` counts serialisations, so a test can hold that promise to account.

Buttons go through `Service.command`, the code path of `hilsim ctl`, after the page has unlocked
its connection with the `[web]` password; only the button commands are reachable from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from hilsim import __version__
from hilsim.charger import Charger
from hilsim.errors import ConfigError
from hilsim.evse import ErrorCode, Outcome, Status, events
from hilsim.ocpp.session import LinkState
from hilsim.ocpp.wire import Frame, QuietLibraryLog
from hilsim.panel import Panel
from hilsim.web.auth import Guard
from hilsim.web.config import WebSettings
from hilsim.web.estop import EmergencyStop
from hilsim.web.frames import FrameLog, power_samples
from hilsim.web.http import asset_response, load_assets, peer_address, response, same_origin
from hilsim.web.push import Client, LivePush
from hilsim.web.view import connector_view, csms_view, identity_view

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

#: The commands a page may send: exactly the buttons. Never config-set or anything else.
BUTTON_COMMANDS = ("plug", "unplug", "tag", "fault", "clear")
#: Seconds of power history kept per connector; the page draws the last CHART_S of it.
HISTORY_S = 600.0
CHART_S = 300.0
#: Pages open at once; more get 503 (each costs a queue and a task).
MAX_CLIENTS = 32
MAX_MESSAGE = 64 * 1024
#: How long an `/api/state` answer is reused.
STATE_CACHE_S = 1.0


class WebServer:
    """`async with WebServer(...)` listens; leaving the block closes every page's connection."""

    def __init__(
        self,
        settings: WebSettings,
        charger: Charger,
        command: Handler,
        panel: Panel | None = None,
        *,
        tick_s: float = 1.0,
    ) -> None:
        """`command`: `Service.command`, the handler behind `hilsim ctl`."""
        self.settings = settings
        self.charger = charger
        self.command = command
        self.panel = panel
        self.tick_s = tick_s
        self.guard = Guard(settings.password)
        self.estop = EmergencyStop(charger, self._panel_estop)
        self.frames = FrameLog(self._connector_of_transaction)
        self.history: dict[int, deque[tuple[float, float]]] = {
            cid: deque(maxlen=int(HISTORY_S / tick_s) * 2) for cid in charger.connectors
        }
        self.port: int | None = None
        self.push = LivePush(self.frames, self._update, self._sample, tick_s)
        self._server: Server | None = None
        self._assets: dict[str, bytes] = {}
        self._state_cache: tuple[float, bytes] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> WebServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def clients(self) -> int:
        return len(self.push.clients)

    @property
    def messages_built(self) -> int:
        """JSON messages serialised so far: stays 0 while no page is open."""
        return self.push.messages_built

    async def wait_idle(self, timeout: float) -> None:
        """Until no page is open (their connections' handlers have all finished)."""
        await asyncio.wait_for(self.push.idle.wait(), timeout)

    @property
    def url(self) -> str:
        """The address to open on this machine (a wildcard listen shows as 127.0.0.1)."""
        host = self.settings.host or "127.0.0.1"
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    async def start(self) -> None:
        settings = self.settings
        assert settings.host is not None, "the page is off: no [web] listen"
        self._assets = load_assets()
        try:
            self._server = await self._listen(settings.port)
        except OSError as exc:
            raise ConfigError(
                settings.source,
                "web.listen",
                f"cannot listen on {settings.host}:{settings.port} ({exc.strerror or exc}); "
                "expected a free port on an address of this machine",
            ) from None
        self.port = int(self._server.sockets[0].getsockname()[1])
        charger = self.charger
        charger.status_listeners.append(self._on_status)
        charger.link_listeners.append(self._on_link)
        charger.event_listeners.append(self._on_event)
        if charger.link is not None:
            # Before the link connects: each connection copies its listeners when it opens.
            charger.link.frame_listeners.append(self._on_frame)
        self._announce()

    async def _listen(self, port: int) -> Server:
        return await serve(
            self._serve,
            self.settings.host,
            port,
            process_request=self._route,
            compression=None,  # five pages would compress every message five times
            max_size=MAX_MESSAGE,
            server_header=f"hilsim/{__version__}",
            logger=QuietLibraryLog(logging.getLogger("hilsim.web.http"), {}),
        )

    def _announce(self) -> None:
        host = self.settings.host or ""
        where = self.url
        if host in ("0.0.0.0", "::"):
            where = f"http://{socket.gethostname()}:{self.port}/ (every address of this machine)"
        buttons = (
            "buttons unlock with the [web] password"
            if self.guard.enabled
            else "read-only: set [web] password to enable the buttons"
        )
        log.info("demo page on %s; %s", where, buttons)

    async def stop(self) -> None:
        charger = self.charger
        for listeners, fn in (
            (charger.status_listeners, self._on_status),
            (charger.link_listeners, self._on_link),
            (charger.event_listeners, self._on_event),
            (charger.link.frame_listeners if charger.link else [], self._on_frame),
        ):
            with contextlib.suppress(ValueError):
                listeners.remove(fn)  # type: ignore[arg-type]
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None
        self.push.stop()
        await self.push.tasks.cancel_all()

    # -- HTTP ----------------------------------------------------------------------------------

    def _route(self, connection: ServerConnection, request: Request) -> Response | None:
        """Answer one request. The page and its static files are not logged above DEBUG (a
        page load is several); anything else is one INFO line (websockets' own are DEBUG)."""
        method = getattr(request, "method", "GET")  # websockets < 14 parses only GET
        path = urlsplit(request.path).path
        if method == "GET" and (static := asset_response(self._assets, path)) is not None:
            log.debug("web: GET %s from %s", path, peer_address(connection))
            return static
        answer = self._dynamic(method, path, request)
        status = "WebSocket" if answer is None else str(answer.status_code)
        log.info("web: %s %s -> %s from %s", method, path, status, peer_address(connection))
        return answer

    def _dynamic(self, method: str, path: str, request: Request) -> Response | None:
        if method != "GET":
            return response(405, b"only GET\n", "text/plain; charset=utf-8", Allow="GET")
        if path == "/ws":
            return self._admit(request)
        if path == "/api/state":
            return response(200, self._state_json(), "application/json")
        return response(404, b"not found\n", "text/plain; charset=utf-8")

    def _admit(self, request: Request) -> Response | None:
        """None lets the WebSocket handshake go on."""
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return response(426, b"a WebSocket endpoint\n", "text/plain; charset=utf-8")
        origin = request.headers.get("Origin")
        if origin is not None and not same_origin(origin, request.headers.get("Host")):
            # Another site's page in a visitor's browser must not drive this charger.
            log.warning("web: WebSocket from foreign origin %s refused", origin)
            return response(403, b"foreign origin\n", "text/plain; charset=utf-8")
        if len(self.push.clients) >= MAX_CLIENTS:
            return response(503, b"too many pages open\n", "text/plain; charset=utf-8")
        return None

    def _state_json(self) -> bytes:
        """`/api/state`, built at most once a second: asking in a loop cannot load the charger."""
        now = time.monotonic()
        if self._state_cache is None or now - self._state_cache[0] >= STATE_CACHE_S:
            body = self.push.dumps(self._state(self.frames.decoded())).encode()
            self._state_cache = (now, body)
        return self._state_cache[1]

    # -- one page ------------------------------------------------------------------------------

    async def _serve(self, ws: ServerConnection) -> None:
        client = Client(ws, peer_address(ws))
        entries = self.frames.watch()
        if not self.push.clients:
            self._seed_history(entries)
        self.push.join(client, {"type": "hello", **self._state(entries)})
        log.debug("web: page opened from %s (%d open)", client.address, self.clients)
        writer = asyncio.get_running_loop().create_task(self.push.write(client))
        try:
            async for message in ws:
                answer = await self._answer(client, message)
                self.push.push(client, self.push.dumps({"type": "answer", **answer}))
        except ConnectionClosed:
            pass
        finally:
            self.push.clients.discard(client)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            self.push.leave(client)
            log.debug("web: page closed from %s (%d open)", client.address, self.clients)

    # -- what the page asks --------------------------------------------------------------------

    async def _answer(self, client: Client, message: str | bytes) -> dict[str, Any]:
        try:
            request = json.loads(message)
        except ValueError:
            return {"id": None, "ok": False, "error": "not JSON"}
        if not isinstance(request, dict):
            return {"id": None, "ok": False, "error": "expected a JSON object"}
        ident = request.get("id")
        kind = request.get("type")
        if kind == "unlock":
            verdict = self.guard.check(client.address, request.get("password"))
            client.unlocked = verdict.ok
            if verdict.ok:
                log.info("web: buttons unlocked from %s", client.address)
                return {"id": ident, "ok": True, "result": {"unlocked": True}}
            answer = {"id": ident, "ok": False, "error": verdict.error}
            if verdict.retry_after_s is not None:
                answer["retry_after_s"] = round(verdict.retry_after_s)
            return answer
        if kind == "lock":
            client.unlocked = False
            return {"id": ident, "ok": True, "result": {"unlocked": False}}
        if kind not in ("command", "estop"):
            return {"id": ident, "ok": False, "error": f"unknown request type {kind!r}"}
        if not self.guard.enabled:
            return {"id": ident, "ok": False, "error": "the buttons are off: no [web] password"}
        if not client.unlocked:
            return {"id": ident, "ok": False, "error": "locked: enter the password first"}
        if kind == "estop":
            engage = request.get("engage")
            if not isinstance(engage, bool):  # "no" is truthy: never guess which was meant
                shown = json.dumps(engage)[:40]
                log.warning("web %s: estop with engage=%s refused", client.address, shown)
                error = f"estop: engage must be true or false (a JSON boolean), not {shown}"
                return {"id": ident, "ok": False, "error": error}
            answer = self.estop.press(engage, client.address)
            self.push.mark()
            return {"id": ident, **answer}
        return {"id": ident, **await self._button(client, request)}

    async def _button(self, client: Client, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request.get("cmd")
        if cmd not in BUTTON_COMMANDS:
            known = ", ".join(BUTTON_COMMANDS)
            return {"ok": False, "error": f"no button {cmd!r} (buttons: {known})"}
        connector = request.get("connector")
        if not isinstance(connector, int) or isinstance(connector, bool):
            return {"ok": False, "error": f"{cmd}: expected a connector number"}
        forwarded: dict[str, Any] = {"cmd": cmd, "connector": connector}
        if cmd == "tag":
            tag = request.get("id_tag")
            forwarded["id_tag"] = tag.strip() if isinstance(tag, str) else tag
        elif cmd == "fault":
            forwarded["error_code"] = str(self._fault_code(connector))
        elif (
            cmd == "clear" and connector in self.charger.connectors and self.estop.holds(connector)
        ):
            return {"ok": False, "error": f"connector {connector}: the emergency stop is engaged"}
        answer = await self.command(forwarded)
        shown = (
            (answer.get("result") or {}).get("status") if answer.get("ok") else answer.get("error")
        )
        log.info("web %s: %s connector %s -> %s", client.address, cmd, connector, shown)
        return answer

    def _fault_code(self, connector: int) -> ErrorCode:
        """The code the connector's physical fault button raises (OtherError without one)."""
        panel = self.panel.settings.connector(connector) if self.panel is not None else None
        return panel.fault_code if panel is not None else ErrorCode.OTHER_ERROR

    def _panel_estop(self) -> bool:
        panel = self.panel
        if panel is None or panel.hardware is None:
            return False
        return bool(panel.describe().get("emergency_stop"))

    # -- what the page is told -----------------------------------------------------------------

    def _state(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        """Everything a page needs when it opens."""
        link = self.charger.link
        cutoff = time.time() - HISTORY_S
        return {
            "version": __version__,
            "identity": identity_view(
                link.charge_point_id if link else None, link.identity if link else None
            ),
            "controls": {
                "buttons": self.guard.enabled,
                "id_tags": list(self.settings.id_tags),
                "fault_codes": {cid: str(self._fault_code(cid)) for cid in self.charger.connectors},
            },
            "chart_s": CHART_S,
            "update": self._update(),
            "history": {
                cid: [[round(t, 3), w] for t, w in points if t >= cutoff]
                for cid, points in self.history.items()
            },
            "frames": entries,
            "frames_kept": self.frames.size,
        }

    def _update(self, samples: dict[int, list[float]] | None = None) -> dict[str, Any]:
        snapshot = self.charger.snapshot()
        link = self.charger.link
        online = link is not None and link.state == LinkState.CONNECTED
        panel = self._panel_estop()
        update: dict[str, Any] = {
            "now": round(time.time(), 3),
            "csms": csms_view(snapshot),
            "connectors": [connector_view(c, online=online) for c in snapshot["connectors"]],
            "emergency_stop": {
                "engaged": self.estop.engaged or panel,
                "web": self.estop.engaged,
                "panel": panel,
            },
        }
        if samples is not None:
            update["samples"] = samples
        return update

    def _sample(self) -> dict[int, list[float]]:
        """The ticker's point: each connector's power now, also kept for the charts."""
        now = time.time()
        samples: dict[int, list[float]] = {}
        for cid, rt in self.charger.connectors.items():
            power = rt.meter.read(self.charger.clock()).power_W
            if power is not None:
                self.history[cid].append((now, float(power)))
                samples[cid] = [round(now, 3), round(float(power), 1)]
        return samples

    def _seed_history(self, entries: list[dict[str, Any]]) -> None:
        """At the first page open: what MeterValues said while nobody was looking."""
        cutoff = time.time() - HISTORY_S
        found: dict[int, list[tuple[float, float]]] = {}
        for cid, at, watts in power_samples(entries):
            if cid in self.history and at >= cutoff:
                found.setdefault(cid, []).append((at, watts))
        for cid, points in self.history.items():
            merged = sorted({*points, *found.get(cid, ())})
            points.clear()
            points.extend(p for p in merged if p[0] >= cutoff)

    # -- listeners: each returns at once while no page is open ---------------------------------

    def _on_frame(self, frame: Frame) -> None:
        self.frames.record(frame)  # the ring, always: a page that opens later shows it
        self.push.mark()

    def _on_status(self, connector_id: int, status: Status, error_code: ErrorCode) -> None:
        self.push.mark()

    def _on_link(self, state: LinkState) -> None:
        self.push.mark()

    def _on_event(self, connector_id: int, event: events.Event, outcome: Outcome) -> None:
        if not self.push.clients or (isinstance(event, events.Tick) and not outcome.effects):
            return
        self.push.event(
            {
                "at": round(time.time(), 3),
                "connector": connector_id,
                "event": type(event).__name__,
                "detail": _fields(event),
                "refused": outcome.refused,
                "status": str(outcome.state.status),
            }
        )

    def _connector_of_transaction(self, transaction_id: int) -> int | None:
        for cid in self.charger.connectors:
            if self.charger.transaction_id(cid) == transaction_id:
                return cid
        return None


def _fields(event: events.Event) -> dict[str, Any]:
    """An event's fields as plain JSON values (enums as their OCPP strings)."""
    if not dataclasses.is_dataclass(event):
        return {}
    plain: dict[str, Any] = {}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if isinstance(value, Enum):
            value = value.value
        elif not isinstance(value, str | int | float | bool | type(None)):
            value = str(value)
        plain[f.name] = value
    return plain
