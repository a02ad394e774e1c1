"""OCPP-J framing, shared by the 1.6 and the 2.0.1 charge point clients.

Both versions frame messages alike (CALL, CALLRESULT, CALLERROR over one WebSocket, one CALL of
ours outstanding at a time) and differ in three things only, which a subclass gives: the schemas
the CSMS's payloads are validated against (`Schemas` of one version), the spelling of two
CALLERROR codes (1.6's FormationViolation/OccurenceConstraintViolation, 2.0's
FormatViolation/OccurrenceConstraintViolation), and its handlers, the ``@on`` methods of the
class and its mixins, which the router finds once per connection.

Why hilsim frames OCPP-J itself rather than through the `ocpp` library's ``ChargePoint`` is told
in `hilsim.ocpp.client`. The hot path (route_message, _call) is the one the 1.6 client had; the
version's differences cost one attribute lookup per CALLERROR.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from hilsim.errors import CsmsError
from hilsim.ocpp.routing import CallErrorReply, Reply, handlers
from hilsim.ocpp.validation import Schemas, SchemaViolation, snake_case
from hilsim.ocpp.wire import CALL, CALLERROR, CALLRESULT
from hilsim.security import redact
from hilsim.tasks import TaskSet

log = logging.getLogger(__name__)

#: OCPP-J 1.6 spells two error codes differently from OCPP-J 2.0 (and the `ocpp` library): each
#: version's client answers in its own spelling, whichever one the code arrives in.
ERROR_CODES_16 = {
    "FormatViolation": "FormationViolation",
    "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
}
ERROR_CODES_201 = {
    "FormationViolation": "FormatViolation",
    "OccurenceConstraintViolation": "OccurrenceConstraintViolation",
}
#: OCPP-J 2.0.1 (4.3) no longer calls an incomplete payload a ProtocolError ("not conform the
#: PDU structure" now): a missing required field violates an occurrence constraint.
VIOLATION_CODES_201 = {"required": "OccurrenceConstraintViolation"}
#: Schema violations whose CALLERROR carries the validator's message alone; for the others the
#: payload is quoted too (as the library does).
_PLAIN_MESSAGE_CODES = frozenset({"TypeConstraintViolation", "ProtocolError", "NotImplemented"})
#: Codes the library never gives: their description names the field first, so that the 255
#: characters a description may have are not spent on quoting the payload.
_FIELD_FIRST_CODES = frozenset({"PropertyConstraintViolation", "OccurenceConstraintViolation"})

#: Compact JSON, as the library sends it (and ASCII-only, as it does).
_encode = json.JSONEncoder(separators=(",", ":")).encode


class Connection(Protocol):
    async def recv(self) -> str: ...
    async def send(self, message: str) -> None: ...


class CallErrorReceived(CsmsError):
    """The CSMS answered one of our CALLs with a CALLERROR."""

    def __init__(self, action: str, code: str, description: str) -> None:
        self.code = code
        super().__init__(f"CSMS answered {action} with {code}: {description}")


class InvalidResultReceived(CallErrorReceived):
    """The CSMS answered one of our CALLs with a CALLRESULT that breaks its schema."""

    def __init__(self, action: str, violation: SchemaViolation) -> None:
        self.code = violation.error_code
        CsmsError.__init__(
            self, f"CSMS answered {action} with an invalid CALLRESULT ({self.code}): {violation}"
        )


def _noop() -> None:
    return None


@dataclass(frozen=True, slots=True)
class _Route:
    """The handler of one incoming action and whether it wants the CALL's unique id."""

    on: Callable[..., Any]
    on_wants_id: bool
    #: called with the payload as it came (``@on(action, raw=True)``), not with snake_case fields
    raw: bool = False


def _routes(client: object) -> dict[str, _Route]:
    return {
        h.action: _Route(getattr(client, h.name), h.wants_id, h.raw) for h in handlers(type(client))
    }


def _expire(future: asyncio.Future[list[Any]], action: str, timeout: float) -> None:
    if not future.done():
        future.set_exception(TimeoutError(f"no answer to {action} within {timeout:g} s"))


def _malformed(msg: Any) -> str | None:
    """The CALLERROR code for a frame that is not OCPP-J, or None when it is well-formed."""
    if not isinstance(msg, list) or not msg:
        return "ProtocolError"
    kind = msg[0]
    if kind == CALL:
        return None if len(msg) == 4 else "ProtocolError"
    if kind == CALLRESULT:
        return None if len(msg) in (3, 4) else "ProtocolError"
    if kind == CALLERROR:
        return None if len(msg) in (4, 5) else "ProtocolError"
    return "PropertyConstraintViolation"


class OcppJClient:
    """One connected OCPP-J session: framing, routing and outgoing CALLs, for any version.

    A new instance is made for every (re)connection. Subclasses set `error_codes` and
    `version_label` and add handlers (``@on``) and outgoing methods.
    """

    #: CALLERROR codes as this version spells them (code in either spelling -> this version's)
    error_codes: ClassVar[Mapping[str, str]] = ERROR_CODES_16
    #: violated schema keyword -> CALLERROR code, where this version's OCPP-J differs from 1.6's
    #: (`hilsim.ocpp.violations`)
    violation_codes: ClassVar[Mapping[str, str]] = {}
    #: how log lines name the protocol ("OCPP 1.6", "OCPP 2.0.1")
    version_label: ClassVar[str] = "OCPP 1.6"

    def __init__(
        self,
        charge_point_id: str,
        connection: Connection,
        *,
        response_timeout: float = 30.0,
        schemas: Schemas | None = None,
    ) -> None:
        """``schemas``: the validators of this version (the 1.6 ones when None)."""
        self.id = charge_point_id
        self.on_activity: Callable[[], None] = _noop
        self._connection = connection
        self._response_timeout = response_timeout
        self._schemas = schemas if schemas is not None else Schemas()
        self._routes: dict[str, _Route] | None = None  # bound at the first CALL, not before boot
        self._pending: dict[str, asyncio.Future[list[Any]]] = {}
        self._call_lock = asyncio.Lock()
        self._after_tasks = TaskSet("ocpp-after")

    # -- incoming: every frame, and every malformed or unknown one gets the right answer ---------

    async def start(self) -> None:
        """Read and handle frames until the connection closes (ConnectionClosed)."""
        recv = self._connection.recv
        while True:
            message = await recv()
            self.on_activity()
            await self.route_message(message)

    async def route_message(self, raw_msg: str) -> None:
        try:
            msg = json.loads(raw_msg)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than it can parse
            log.warning("ignoring a malformed frame (not JSON): %.200s", redact(raw_msg))
            return
        code = _malformed(msg)
        if code is not None:
            await self._answer_malformed(raw_msg, msg, code)
            return
        if msg[0] != CALL:
            self._take_reply(msg, raw_msg)
            return
        _, unique_id, action, payload = msg
        if not isinstance(unique_id, str):
            log.warning("ignoring a CALL with a non-string unique id: %.200s", raw_msg)
            return
        if not isinstance(action, str):  # the id is readable, so the CSMS gets its answer
            await self._send_error(unique_id, "FormationViolation", "action must be a string")
            return
        if not isinstance(payload, dict):
            await self._send_error(unique_id, "FormationViolation", "payload must be a JSON object")
            return
        if self._routes is None:
            self._routes = _routes(self)
        route = self._routes.get(action)
        if route is None:
            # OCPP-J 1.6, 4.2.3: NotImplemented for an action the receiver does not know,
            # NotSupported for one it knows but does not support.
            if self._schemas.knows(action):
                log.warning("CSMS sent %s, which hilsim does not support", action)
                await self._send_error(unique_id, "NotSupported", f"{action} is not supported")
            else:
                label = self.version_label
                log.warning("CSMS sent %.100s, which is not an %s action", action, label)
                await self._send_error(unique_id, "NotImplemented", f"{action} is not known")
            return
        try:
            self._schemas.check_call(action, payload)
            self._schemas.hold_dates_of_call(action, payload)
        except RecursionError:  # deeper than the validator can walk: no valid payload is
            log.warning("CSMS sent a %s nested too deeply to check", action)
            await self._send_error(unique_id, "FormationViolation", "payload nested too deeply")
            return
        except SchemaViolation as exc:
            log.warning("CSMS sent an invalid %s: %.300s", action, exc)
            code = self.violation_codes.get(exc.keyword) or exc.error_code
            if code in _PLAIN_MESSAGE_CODES or exc.keyword == "additionalProperties":
                description = exc.message
            elif code in _FIELD_FIRST_CODES:
                description = f"{action}: {exc}"
            else:
                description = (
                    f"Payload '{payload}' for action '{action}' is not valid: {exc.message}"
                )
            await self._send_error(unique_id, code, description)
            return
        try:
            await self._handle_call(unique_id, route, payload)
        except CallErrorReply as exc:
            log.warning("CSMS's %s answered with %s: %s", action, exc.code, exc.description)
            await self._send_error(unique_id, exc.code, exc.description)
        except Exception:
            log.exception("handler for %s failed", action)
            await self._send_error(
                unique_id, "InternalError", "the charge point failed to handle it"
            )

    async def _handle_call(self, unique_id: str, route: _Route, payload: dict[str, Any]) -> None:
        if route.raw:
            result = route.on(payload)
        elif route.on_wants_id:
            kwargs = snake_case(payload)
            result = route.on(**kwargs, call_unique_id=unique_id)
        else:
            result = route.on(**snake_case(payload))
        if inspect.isawaitable(result):  # an async handler
            result = await result
        then = None
        if isinstance(result, Reply):
            result, then = result
        await self._connection.send(_encode([CALLRESULT, unique_id, result]))
        if then is None:
            return
        try:
            done = then()
            if inspect.isawaitable(done):
                self._after_tasks.spawn(done, route.on.__name__)
        except Exception:
            # The CALLRESULT is already on the wire: nothing more may be answered.
            log.exception("after-step of %s failed", route.on.__name__)

    def _take_reply(self, msg: list[Any], raw_msg: str) -> None:
        """A CALLRESULT or CALLERROR: hand it to the CALL of ours that waits for it."""
        unique_id = msg[1]
        future = self._pending.get(unique_id) if isinstance(unique_id, str) else None
        if future is None or future.done():
            log.warning("ignoring an answer nobody is waiting for: %.200s", raw_msg)
            return
        future.set_result(msg)

    async def _answer_malformed(self, raw_msg: str, frame: Any, code: str) -> None:
        """Answer a broken frame if it is recognisably a CALL with an id; otherwise log it.

        OCPP-J gives no way to answer a frame whose unique id cannot be read, and a CALLRESULT or
        CALLERROR must never be answered at all.
        """
        if isinstance(frame, list) and len(frame) >= 2 and frame[0] == CALL:
            uid = frame[1]
            if isinstance(uid, str):
                await self._send_error(uid, code, "frame is not a valid OCPP-J CALL")
                return
        log.warning("ignoring a malformed frame (%s): %.200s", code, redact(raw_msg))

    async def _send_error(self, unique_id: str, code: str, description: str) -> None:
        code = self.error_codes.get(code, code)
        await self._connection.send(_encode([CALLERROR, unique_id, code, description[:255], {}]))

    # -- outgoing ------------------------------------------------------------------------------

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send one CALL, wait for its answer, and return the validated CALLRESULT payload.

        Raises CallErrorReceived for a CALLERROR (InvalidResultReceived for a CALLRESULT that
        breaks its schema), TimeoutError when no answer comes within the response timeout.
        """
        unique_id = _unique_id()
        frame = _encode([CALL, unique_id, action, payload])
        loop = asyncio.get_running_loop()
        async with self._call_lock:
            future: asyncio.Future[list[Any]] = loop.create_future()
            self._pending[unique_id] = future
            timer = loop.call_later(
                self._response_timeout, _expire, future, action, self._response_timeout
            )
            try:
                await self._connection.send(frame)
                reply = await future
            finally:
                timer.cancel()
                del self._pending[unique_id]
        if reply[0] == CALLERROR:
            raise CallErrorReceived(action, _as_text(reply[2]), _as_text(reply[3]))
        result = reply[2]
        try:
            self._schemas.check_result(action, result)
            self._schemas.hold_dates_of_result(action, result)
        except SchemaViolation as exc:
            raise InvalidResultReceived(action, exc) from None
        except RecursionError:
            violation = SchemaViolation("depth", "nested deeper than it can be checked")
            raise InvalidResultReceived(action, violation) from None
        return result  # type: ignore[no-any-return]

    #: The name the 1.6 handler mixins know it by (the outbox's stored payloads go through `call`).
    _call = call


def _as_text(value: Any) -> str:
    """A field of a CSMS frame as text, whatever JSON it holds (a hostile one: any depth)."""
    if isinstance(value, str):
        return value
    try:
        return _encode(value)[:255]
    except (RecursionError, ValueError):
        return "(unreadable)"


def _unique_id() -> str:
    """A random (version 4) UUID as text, without building a `uuid.UUID` for every CALL."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def without_nones(**fields: Any) -> dict[str, Any]:
    """A payload without its absent optional fields (OCPP-J leaves them out, never null)."""
    return {key: value for key, value in fields.items() if value is not None}
