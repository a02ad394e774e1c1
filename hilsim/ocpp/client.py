"""The charge point's OCPP 1.6J side: one handler per CSMS-initiated action, one method per call.

Handlers translate wire payloads into calls on the charge point's services (typed against the
small Protocols of `hilsim.ocpp.ports`) and their answers back into payloads; they decide nothing
themselves. Effects that a handler's decision produces (a StartTransaction after RemoteStart, for
instance) come back with its payload as a `Reply`; the router runs them once the CALLRESULT is on
the wire, so the CSMS always sees the answer before the consequence and no handler ever awaits a
CALL of its own (which would deadlock the reader).

The OCPP-J framing is done here rather than by the `ocpp` library's ``ChargePoint``, for the
small boards this runs on: the library turns every payload into a dataclass, a dict and camelCase
again, validates even our own frames with `jsonschema` and waits for each answer through a task,
a queue and ``wait_for``; importing it (and `jsonschema`) alone took about 75 ms of a 260 ms
cold start. What it did that matters is kept, with the same results on the wire: every payload
the CSMS sends is validated against the library's own OCPP 1.6 schemas (`validation`), a schema
violation is answered with the same CALLERROR code, an unknown action with NotImplemented, one
CALL of ours is outstanding at a time, and a CALL not answered in time raises TimeoutError. Our
own payloads are built as camelCase dicts and not validated at run time: the tests check every
frame we send against the official schemas, applied strictly, at the built-in CSMS.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from hilsim.errors import CsmsError
from hilsim.ocpp.core_handlers import CoreProfileHandlers
from hilsim.ocpp.firmware_handlers import FirmwareHandlers
from hilsim.ocpp.ports import ChargerPort
from hilsim.ocpp.routing import Reply, handlers, on
from hilsim.ocpp.smart_charging_handlers import SmartChargingHandlers
from hilsim.ocpp.validation import Schemas, SchemaViolation, snake_case
from hilsim.ocpp.wire import CALL, CALLERROR, CALLRESULT
from hilsim.security import redact
from hilsim.tasks import TaskSet

log = logging.getLogger(__name__)

#: OCPP-J 1.6 spells two error codes differently from OCPP-J 2.0 (and the `ocpp` library).
_ERROR_CODES_16 = {
    "FormatViolation": "FormationViolation",
    "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
}
#: Schema violations whose CALLERROR carries the validator's message alone; for the others the
#: payload is quoted too (as the library does).
_PLAIN_MESSAGE_CODES = frozenset({"TypeConstraintViolation", "ProtocolError", "NotImplemented"})
#: Codes the library never gives: their description names the field first, so that the 255
#: characters a description may have are not spent on quoting the payload.
_FIELD_FIRST_CODES = frozenset({"PropertyConstraintViolation", "OccurenceConstraintViolation"})

#: Compact JSON, as the library sends it (and ASCII-only, as it does).
_encode = json.JSONEncoder(separators=(",", ":")).encode


@dataclass(frozen=True, slots=True)
class Identity:
    """What BootNotification says about the charge point."""

    vendor: str
    model: str
    firmware_version: str | None = None
    serial_number: str | None = None
    charge_box_serial_number: str | None = None
    meter_serial_number: str | None = None
    meter_type: str | None = None


@dataclass(frozen=True, slots=True)
class BootResult:
    """The CSMS's answer to BootNotification."""

    status: str
    interval: int
    current_time: str


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


def _routes(client: object) -> dict[str, _Route]:
    marked = handlers(type(client))
    return {action: _Route(getattr(client, name), wants_id) for action, name, wants_id in marked}


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


class ChargePointClient(CoreProfileHandlers, SmartChargingHandlers, FirmwareHandlers):
    """One connected OCPP session. A new instance is made for every (re)connection."""

    def __init__(
        self,
        charge_point_id: str,
        connection: Connection,
        charger: ChargerPort,
        *,
        response_timeout: float = 30.0,
        schemas: Schemas | None = None,
        after_configuration_change: Callable[[], None] | None = None,
    ) -> None:
        """``after_configuration_change``: run once each ChangeConfiguration answer is sent."""
        self.id = charge_point_id
        self.charger = charger
        self._after_configuration_change = after_configuration_change
        self.on_activity: Callable[[], None] = _noop
        self._connection = connection
        self._response_timeout = response_timeout
        self._schemas = schemas if schemas is not None else Schemas()
        self._routes: dict[str, _Route] | None = None  # bound at the first CALL, not before boot
        self._pending: dict[str, asyncio.Future[list[Any]]] = {}
        self._call_lock = asyncio.Lock()
        self._after_tasks = TaskSet("ocpp-after")
        #: the last GetConfiguration entries and their wire form (see on_get_configuration)
        self._answered: tuple[object, list[dict[str, Any]]] = (None, [])

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
                log.warning("CSMS sent %.100s, which is not an OCPP 1.6 action", action)
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
            code = exc.error_code
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
        except Exception:
            log.exception("handler for %s failed", action)
            await self._send_error(
                unique_id, "InternalError", "the charge point failed to handle it"
            )

    async def _handle_call(self, unique_id: str, route: _Route, payload: dict[str, Any]) -> None:
        kwargs = snake_case(payload)
        if route.on_wants_id:
            result = route.on(**kwargs, call_unique_id=unique_id)
        else:
            result = route.on(**kwargs)
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
        code = _ERROR_CODES_16.get(code, code)
        await self._connection.send(_encode([CALLERROR, unique_id, code, description[:255], {}]))

    # -- outgoing ------------------------------------------------------------------------------

    async def _call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
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

    async def boot_notification(self, identity: Identity) -> BootResult:
        payload = _without_nones(
            chargePointVendor=identity.vendor,
            chargePointModel=identity.model,
            chargePointSerialNumber=identity.serial_number,
            chargeBoxSerialNumber=identity.charge_box_serial_number,
            firmwareVersion=identity.firmware_version,
            meterType=identity.meter_type,
            meterSerialNumber=identity.meter_serial_number,
        )
        result = await self._call("BootNotification", payload)
        return BootResult(result["status"], result["interval"], result["currentTime"])

    async def heartbeat(self) -> str:
        result = await self._call("Heartbeat", {})
        return str(result["currentTime"])

    async def status_notification(
        self, connector_id: int, status: str, error_code: str, timestamp: str
    ) -> None:
        await self._call(
            "StatusNotification",
            {
                "connectorId": connector_id,
                "errorCode": error_code,
                "status": status,
                "timestamp": timestamp,
            },
        )

    async def authorize(self, id_tag: str) -> dict[str, Any]:
        result = await self._call("Authorize", {"idTag": id_tag})
        return dict(snake_case(result["idTagInfo"]))

    async def start_transaction(
        self,
        connector_id: int,
        id_tag: str,
        meter_start: int,
        timestamp: str,
        reservation_id: int | None = None,
    ) -> tuple[int, dict[str, Any]]:
        result = await self._call(
            "StartTransaction",
            _without_nones(
                connectorId=connector_id,
                idTag=id_tag,
                meterStart=meter_start,
                timestamp=timestamp,
                reservationId=reservation_id,
            ),
        )
        return result["transactionId"], dict(snake_case(result["idTagInfo"]))

    async def stop_transaction(
        self,
        transaction_id: int,
        meter_stop: int,
        timestamp: str,
        reason: str,
        id_tag: str | None = None,
        transaction_data: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """The IdTagInfo the CSMS answers with (snake_case), {} when it sends none.

        ``transaction_data``: MeterValue objects, camelCase as on the wire.
        """
        result = await self._call(
            "StopTransaction",
            _without_nones(
                meterStop=meter_stop,
                timestamp=timestamp,
                transactionId=transaction_id,
                reason=reason,
                idTag=id_tag,
                transactionData=transaction_data or None,
            ),
        )
        return dict(snake_case(result.get("idTagInfo") or {}))

    async def meter_values(
        self, connector_id: int, transaction_id: int | None, meter_value: list[dict[str, Any]]
    ) -> None:
        """``meter_value`` is sent as given: camelCase, as on the wire."""
        payload: dict[str, Any] = {"connectorId": connector_id, "meterValue": meter_value}
        if transaction_id is not None:
            payload["transactionId"] = transaction_id
        await self._call("MeterValues", payload)

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a payload stored as it goes on the wire (the outbox's transaction messages)."""
        return await self._call(action, payload)

    # -- incoming: one handler per action, named as in the spec ---------------------------------

    @on("Authorize")
    def on_authorize(self, id_tag: str) -> dict[str, Any]:
        # The spec keeps this a dummy: the CSMS asking us to authorise is not a gate for anything.
        return {"idTagInfo": {"status": "Accepted"}}

    @on("GetConfiguration")
    def on_get_configuration(self, key: list[str] | None = None) -> dict[str, Any]:
        known, unknown = self.charger.configuration.get_configuration(key)
        if known is not self._answered[0]:  # the charger hands out the same list while unchanged
            entries = [
                {"key": e.key, "readonly": e.readonly, "value": e.value}
                if e.value is not None
                else {"key": e.key, "readonly": e.readonly}
                for e in known
            ]
            self._answered = (known, entries)
        entries = self._answered[1]
        if unknown:
            return {"configurationKey": entries, "unknownKey": unknown}
        return {"configurationKey": entries}

    @on("ChangeConfiguration")
    async def on_change_configuration(self, key: str, value: str) -> Reply:
        status = await self.charger.configuration.change_configuration(key, value)
        # A new SecurityProfile or AuthorizationKey connects again, after the answer.
        return Reply({"status": status}, self._after_configuration_change)

    @on("RemoteStartTransaction")
    def on_remote_start_transaction(
        self,
        id_tag: str,
        connector_id: int | None = None,
        charging_profile: dict[str, Any] | None = None,
    ) -> Reply:
        status, release = self.charger.remote_start(id_tag, connector_id, charging_profile)
        return Reply({"status": status}, release)

    @on("RemoteStopTransaction")
    def on_remote_stop_transaction(self, transaction_id: int) -> Reply:
        status, release = self.charger.remote_stop(transaction_id)
        return Reply({"status": status}, release)


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


def _without_nones(**fields: Any) -> dict[str, Any]:
    """A payload without its absent optional fields (OCPP-J leaves them out, never null)."""
    return {key: value for key, value in fields.items() if value is not None}
