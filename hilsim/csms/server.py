"""The built-in OCPP central system: a websockets server with one session per charge point.

Charge points connect to ``ws://<host>:<port>/<any path>/<charge point id>`` with the subprotocol
``ocpp1.6`` or ``ocpp2.0.1``. The charge point lists the ones it speaks in its order of
preference (RFC 6455 4.1); the server takes the first one it serves, as CSMSs do, so a charge
point offering both gets what it put first. A 1.6 connection gets a
:class:`~hilsim.csms.session.ChargePointSession`, a 2.0.1 one a
:class:`~hilsim.csms.session201.ChargePointSession201` (imported on the first such connection).
Every frame in both directions goes to the log (``hilsim.csms.frames``, INFO), to the
``on_frame`` callback and, for :func:`serve`, to one readable trace line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as websockets_serve
from websockets.exceptions import ConnectionClosed, NegotiationError
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from hilsim.csms.auth import credentials_problem
from hilsim.csms.auth import security_options as security_options  # `hilsim csms` options
from hilsim.csms.errors import ChargePointDisconnected
from hilsim.csms.ledger import TransactionLedger
from hilsim.csms.ledger201 import TransactionLedger201
from hilsim.csms.session import ChargePointSession
from hilsim.errors import CsmsError
from hilsim.ocpp.wire import (
    ActionNamer,
    Frame,
    QuietLibraryLog,
    TracedConnection,
    format_frame,
)
from hilsim.security import redact
from hilsim.tasks import TaskSet

if TYPE_CHECKING:
    from hilsim.csms.session201 import ChargePointSession201

    #: a connected charge point's session, of either OCPP version
    Session = ChargePointSession | ChargePointSession201

logger = logging.getLogger(__name__)
frames_logger = logging.getLogger("hilsim.csms.frames")

SUBPROTOCOL = Subprotocol("ocpp1.6")
SUBPROTOCOL_201 = Subprotocol("ocpp2.0.1")
#: OCPP version -> its WebSocket subprotocol
SUBPROTOCOLS = {"1.6": SUBPROTOCOL, "2.0.1": SUBPROTOCOL_201}
BOOT_STATUSES = ("Accepted", "Pending", "Rejected")
_KEEP_UNCLAIMED = 50  # closed sessions nobody asked for, kept for wait_for_charge_point


def charge_point_id_from_path(path: str) -> str:
    """The charge point id is the last segment of the request path (query ignored)."""
    return unquote(urlsplit(path).path.rstrip("/").rsplit("/", 1)[-1])


def _stamp(at: float | None = None) -> str:
    at = time.time() if at is None else at
    return time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at % 1 * 1000):03d}"


class CentralSystem:
    """An OCPP 1.6J and 2.0.1 central system for demos and tests. ``async with`` starts and
    stops it.

    ``boot_status``, ``heartbeat_interval`` and ``id_tags`` may be changed at any time; they
    apply to the next BootNotification / Authorize, of either version. ``ledger`` (1.6, with
    the transaction ids) and ``ledger201`` live here, so they survive reconnects.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        id_tags: Iterable[str] = ("04A2B3C4", "DEADBEEF"),
        boot_status: str = "Accepted",
        heartbeat_interval: int = 120,
        strict: bool = True,
        on_frame: Callable[[str, Frame], None] | None = None,
        trace: Callable[[str], None] | None = None,
        response_timeout: float = 30,
        ssl_context: ssl.SSLContext | None = None,
        passwords: Mapping[str, bytes | str] | None = None,
        ocpp_versions: Sequence[str] = ("1.6", "2.0.1"),
    ) -> None:
        """``ocpp_versions``: the OCPP versions served ("1.6", "2.0.1"); a charge point offering
        none of them is refused at the handshake. ``ssl_context``: serve wss:// with it (a
        server certificate; with verify_mode CERT_REQUIRED also client certificates, whose
        common name must then be the charge point's id). ``passwords``: require HTTP Basic
        auth, charge point id -> its password (security profiles 1-2); a wrong or missing one
        is refused with HTTP 401.
        """
        unknown = [v for v in ocpp_versions if v not in SUBPROTOCOLS]
        if unknown or not ocpp_versions:
            raise ValueError(f"ocpp_versions must be some of 1.6, 2.0.1: {list(ocpp_versions)}")
        self.ocpp_versions = tuple(ocpp_versions)
        self.host = host
        self.ssl_context = ssl_context
        #: charge point id -> password; None: no Basic auth required. May change at any time.
        self.passwords: dict[str, bytes | str] | None = (
            None if passwords is None else dict(passwords)
        )
        #: handshakes refused (charge point id, why), in order
        self.refusals: list[tuple[str, str]] = []
        self._requested_port = port
        self.id_tags: set[str] = set(id_tags)
        self.boot_status = boot_status
        self.heartbeat_interval = heartbeat_interval
        self.strict = strict
        self.on_frame = on_frame
        self.trace = trace
        self.response_timeout = response_timeout
        #: currently connected charge points, either version (``session.ocpp_version``)
        self.sessions: dict[str, Session] = {}
        self.ledger = TransactionLedger()
        #: OCPP 2.0.1 transactions by transactionId, with every TransactionEvent
        self.ledger201 = TransactionLedger201()
        #: failure injection: answer the next N CALLs of an action with CALLERROR InternalError
        self.refuse_next: dict[str, int] = {}
        #: failure injection: answer the next CALLs of an action with these CALLRESULT payloads,
        #: sent exactly as given (a CSMS that answers out of range or off the schema), one each
        self.answer_next: dict[str, list[Any]] = {}
        #: per idTag, IdTagInfo fields (camelCase) that override the default answer, e.g.
        #: {"status": "Blocked"} or {"parentIdTag": "FLEET", "expiryDate": "2030-01-01T00:00:00Z"}
        self.id_tag_details: dict[str, dict[str, Any]] = {}
        #: per idToken, 2.0.1 IdTokenInfoType fields (camelCase) that override the answer
        #: derived from the 1.6 rules, e.g. {"status": "NotAtThisTime"} or {"language1": "de"}
        self.id_token_details: dict[str, dict[str, Any]] = {}
        self._registration: dict[str, str] = {}
        self._history: list[Session] = []  # connected sessions not yet handed out
        self._connected = asyncio.Condition()
        self._server: Server | None = None
        self._tasks = TaskSet("csms")

    # ----------------------------------------------------------------------------- settings

    @property
    def boot_status(self) -> str:
        return self._boot_status

    @boot_status.setter
    def boot_status(self, status: str) -> None:
        if status not in BOOT_STATUSES:
            raise ValueError(f"boot_status must be one of {', '.join(BOOT_STATUSES)}: {status!r}")
        self._boot_status = status

    @property
    def heartbeat_interval(self) -> int:
        return self._heartbeat_interval

    @heartbeat_interval.setter
    def heartbeat_interval(self, seconds: int) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
            raise ValueError(f"heartbeat_interval must be whole seconds >= 0: {seconds!r}")
        self._heartbeat_interval = seconds

    def authorization_status(self, id_tag: str) -> str:
        """idTagInfo.status: Accepted for a configured tag (case-insensitive), else Invalid."""
        known = {tag.casefold() for tag in self.id_tags}
        return "Accepted" if id_tag.casefold() in known else "Invalid"

    def id_tag_info(self, id_tag: str) -> dict[str, Any]:
        """The IdTagInfo (camelCase) for an idTag: its status and any details set for it."""
        info: dict[str, Any] = {"status": self.authorization_status(id_tag)}
        for tag, details in self.id_tag_details.items():
            if tag.casefold() == id_tag.casefold():
                info.update(details)
        return info

    def registration_status(self, charge_point_id: str) -> str | None:
        """What the last BootNotification of this charge point was answered with, if any."""
        return self._registration.get(charge_point_id)

    def set_registration_status(self, charge_point_id: str, status: str) -> None:
        self._registration[charge_point_id] = status

    # ----------------------------------------------------------------------------- lifecycle

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the central system is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        host = self.host or "0.0.0.0"
        if ":" in host:
            host = f"[{host}]"
        scheme = "wss" if self.ssl_context is not None else "ws"
        return f"{scheme}://{host}:{self.port}"

    async def start(self) -> None:
        if self._server is not None:
            return
        try:
            self._server = await websockets_serve(
                self._serve_connection,
                self.host,
                self._requested_port,
                subprotocols=[SUBPROTOCOLS[version] for version in self.ocpp_versions],
                select_subprotocol=self._select_subprotocol,
                ssl=self.ssl_context,
                process_request=self._authenticate,
                # It logs handshake headers at DEBUG: never a Basic auth password. Its INFO
                # lines (connection open/closed) are DEBUG: this server logs its own, once.
                logger=QuietLibraryLog(logging.getLogger("websockets.server"), {}),
            )
        except OSError as exc:
            raise CsmsError(
                f"cannot listen on {self.host}:{self._requested_port}: {exc.strerror or exc}"
            ) from exc
        logger.log(self._traced_level, "central system listening on %s", self.url)

    async def stop(self) -> None:
        """Close every connection (1001 going away) and stop listening.

        A later :meth:`start` listens on the same port again, so the charge points configured
        with :attr:`url` find the central system back (scenario files' ``link = "up"``).
        """
        server, self._server = self._server, None
        if server is None:
            return
        self._requested_port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        logger.info("central system stopped")

    async def __aenter__(self) -> CentralSystem:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ----------------------------------------------------------------------------- waiting

    async def wait_for_charge_point(
        self, charge_point_id: str | None = None, timeout: float = 10
    ) -> Session:
        """The next connected session with that id (any id if None) not handed out before.

        Sessions are handed out in connection order, each once, so after a reconnect the next
        call returns the new session. A session that already closed is skipped when a newer one
        of the same charge point is waiting.
        """

        def pick() -> Session | None:
            candidates = [
                s for s in self._history if charge_point_id is None or s.id == charge_point_id
            ]
            for index, session in enumerate(candidates):
                newer = candidates[index + 1 :]
                if session.closed and any(later.id == session.id for later in newer):
                    continue
                return session
            return None

        async with self._connected:
            try:
                async with asyncio.timeout(timeout):
                    while (session := pick()) is None:
                        await self._connected.wait()
            except TimeoutError:
                who = f"charge point {charge_point_id!r}" if charge_point_id else "charge point"
                now = ", ".join(sorted(self.sessions)) or "none"
                raise TimeoutError(
                    f"no {who} connected within {timeout:g} s (connected now: {now})"
                ) from None
        self._history.remove(session)
        return session

    # ----------------------------------------------------------------------------- connections

    @property
    def _traced_level(self) -> int:
        """What the trace prints goes to the log at DEBUG: `hilsim csms` shows each line once."""
        return logging.DEBUG if self.trace is not None else logging.INFO

    def _emit(self, line: str) -> None:
        if self.trace is None:
            return
        try:
            self.trace(line)
        except Exception:
            logger.exception("trace callable failed")

    def _select_subprotocol(
        self, connection: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol:
        """The first subprotocol in the charge point's list that this CSMS serves."""
        served = [SUBPROTOCOLS[version] for version in self.ocpp_versions]
        for subprotocol in offered:
            if subprotocol in served:
                return subprotocol
        request = getattr(connection, "request", None)
        path = request.path if request is not None else "?"
        text = (
            f"refused {path} from {connection.remote_address}: subprotocol "
            f"{' or '.join(served)} not offered (offered: {', '.join(offered) or 'none'})"
        )
        logger.warning("%s", text)
        self._emit(f"{_stamp()}  {text}")
        raise NegotiationError(text)

    async def _authenticate(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        """Security profiles 1-3 at the handshake: the Basic auth password, the client cert."""
        charge_point_id = charge_point_id_from_path(request.path)
        why = credentials_problem(
            self.ssl_context, self.passwords, connection, request, charge_point_id
        )
        if why is None:
            return None
        text = f"refused {charge_point_id or request.path}: {why}"
        logger.warning("%s", text)
        self._emit(f"{_stamp()}  {text}")
        async with self._connected:
            self.refusals.append((charge_point_id, why))
            self._connected.notify_all()
        response = connection.respond(HTTPStatus.UNAUTHORIZED, f"{why}\n")
        response.headers["WWW-Authenticate"] = 'Basic realm="OCPP", charset="UTF-8"'
        return response

    async def wait_for_refusal(self, timeout: float = 10) -> tuple[str, str]:
        """The next handshake refused from now on: (charge point id, why)."""
        seen = len(self.refusals)
        async with self._connected:
            try:
                async with asyncio.timeout(timeout):
                    while len(self.refusals) == seen:
                        await self._connected.wait()
            except TimeoutError:
                raise TimeoutError(f"no handshake refused within {timeout:g} s") from None
        return self.refusals[seen]

    def _frame_listener(self, charge_point_id: str, namer: ActionNamer) -> Callable[[Frame], None]:

        def listen(frame: Frame) -> None:
            frames_logger.log(  # a frame setting the AuthorizationKey is not written out
                self._traced_level,
                "%s %s %s",
                charge_point_id,
                "<-" if not frame.sent else "->",
                redact(frame.text),
            )
            if self.on_frame is not None:
                try:
                    self.on_frame(charge_point_id, frame)
                except Exception:
                    logger.exception("on_frame callback failed")
            if self.trace is not None:
                self._emit(format_frame(frame, namer=namer, local="CSMS", remote=charge_point_id))

        return listen

    async def _serve_connection(self, websocket: ServerConnection) -> None:
        charge_point_id = charge_point_id_from_path(websocket.request.path)
        peer = websocket.remote_address
        where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else str(peer)
        if not charge_point_id:
            logger.warning("refused %s from %s: no charge point id", websocket.request.path, where)
            self._emit(
                f"{_stamp()}  refused {websocket.request.path} from {where}: no charge "
                f"point id in the path"
            )
            await websocket.close(1008, "charge point id missing in the URL path")
            return
        kind: type[Session] = ChargePointSession
        if websocket.subprotocol == SUBPROTOCOL_201:
            from hilsim.csms.session201 import ChargePointSession201 as kind
        listener = self._frame_listener(charge_point_id, kind.trace_namer())
        connection = TracedConnection(websocket, [listener])
        session = kind(charge_point_id, connection, self, response_timeout=self.response_timeout)
        previous = self.sessions.get(charge_point_id)
        self.sessions[charge_point_id] = session
        said = f"{charge_point_id} connected from {where} (OCPP {session.ocpp_version})"
        logger.log(self._traced_level, "%s", said)
        self._emit(f"{_stamp()}  {said}")
        async with self._connected:
            self._remember(session)
            self._connected.notify_all()
        if previous is not None and not previous.closed:
            logger.info("%s: closing the previous connection, replaced", charge_point_id)
            self._tasks.spawn(previous.close(), f"close-replaced-{charge_point_id}")
        try:
            await session.start()
        except (ConnectionClosed, ChargePointDisconnected):
            pass
        except Exception:
            logger.exception("%s: session failed", charge_point_id)
        finally:
            await session.mark_closed()
            if self.sessions.get(charge_point_id) is session:
                del self.sessions[charge_point_id]
            code = websocket.close_code
            reason = f"{code} {websocket.close_reason}".strip() if code is not None else "no close"
            logger.log(self._traced_level, "%s disconnected (%s)", charge_point_id, reason)
            self._emit(f"{_stamp()}  {charge_point_id} disconnected ({reason})")

    def _remember(self, session: Session) -> None:
        self._history.append(session)
        closed = [s for s in self._history if s.closed]
        for stale in closed[: max(0, len(closed) - _KEEP_UNCLAIMED)]:
            self._history.remove(stale)


def _lan_address() -> str | None:
    """The address other devices on the network (a phone hotspot) reach this one at, if any."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: picks a route, sends nothing
            address: str = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


async def serve(
    host: str,
    port: int,
    id_tags: Sequence[str],
    *,
    trace: Callable[[str], None] = print,
    boot_status: str = "Accepted",
    heartbeat_interval: int = 120,
    strict: bool = True,
    ssl_context: ssl.SSLContext | None = None,
    passwords: Mapping[str, bytes | str] | None = None,
    console_socket: Path | None = None,
    ocpp_versions: Sequence[str] = ("1.6", "2.0.1"),
) -> None:
    """Run a central system until cancelled, tracing one line per frame and per (dis)connect.

    ``console_socket``: serve `hilsim csms send`/`list` there (:mod:`hilsim.csms.console`).
    """
    from hilsim.control import ControlServer
    from hilsim.csms.console import Console

    central = CentralSystem(
        host,
        port,
        id_tags=id_tags,
        boot_status=boot_status,
        heartbeat_interval=heartbeat_interval,
        strict=strict,
        trace=trace,
        ssl_context=ssl_context,
        passwords=passwords,
        ocpp_versions=ocpp_versions,
    )
    async with central, contextlib.AsyncExitStack() as stack:
        versions = " and ".join(v.replace("1.6", "1.6J") for v in central.ocpp_versions)
        trace(f"{_stamp()}  CSMS listening on {central.url}/<charge point id> (OCPP {versions})")
        if console_socket is not None:
            await stack.enter_async_context(ControlServer(console_socket, Console(central)))
            trace(f"{_stamp()}  console on {console_socket} (hilsim csms send | list)")
        if host in ("", "0.0.0.0", "::"):
            address = await asyncio.to_thread(_lan_address)
            if address:
                trace(
                    f"{_stamp()}  reachable from the network at "
                    f"{central.url.split(':')[0]}://{address}:{central.port}/"
                    f"<charge point id>"
                )
        tags = ", ".join(id_tags) or "none"
        trace(
            f"{_stamp()}  accepted id tags: {tags}; BootNotification answered {boot_status}, "
            f"heartbeat {heartbeat_interval} s; strict schema checks {'on' if strict else 'off'}"
        )
        forever: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await forever
