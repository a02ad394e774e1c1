"""The charge point's OCPP 1.6J side: one handler per CSMS-initiated action, one method per call.

Handlers translate wire payloads into calls on the `Charger` and its answers back into payloads;
they decide nothing themselves. Effects that a handler's decision produces (a StartTransaction
after RemoteStart, for instance) are held until the handler's CALLRESULT is on the wire and
released from the matching ``@after`` hook, so the CSMS always sees the answer before the
consequence and no handler ever awaits a CALL of its own (which would deadlock the reader).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallError, MessageType, unpack
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result

from hilsim.errors import CsmsError
from hilsim.ocpp.wire import QuietLibraryLog

log = logging.getLogger(__name__)

#: OCPP-J 1.6 spells two error codes differently from the library (which follows 2.0).
_ERROR_CODES_16 = {
    "FormatViolation": "FormationViolation",
    "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
}


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
class ConfigurationEntry:
    key: str
    readonly: bool
    value: str


class Release(Protocol):
    def __call__(self) -> None: ...


class ChargerPort(Protocol):
    """What the OCPP handlers need from the charger. Each returns the OCPP status string."""

    def get_configuration(
        self, keys: Sequence[str] | None
    ) -> tuple[list[ConfigurationEntry], list[str]]: ...

    async def change_configuration(self, key: str, value: str) -> str: ...

    def set_charging_profile(self, connector_id: int, profile: dict[str, Any]) -> str: ...

    def remote_start(
        self, id_tag: str, connector_id: int | None, profile: dict[str, Any] | None
    ) -> tuple[str, Release]: ...

    def remote_stop(self, transaction_id: int) -> tuple[str, Release]: ...


class CallErrorReceived(CsmsError):
    """The CSMS answered one of our CALLs with a CALLERROR."""

    def __init__(self, action: str, code: str, description: str) -> None:
        self.code = code
        super().__init__(f"CSMS answered {action} with {code}: {description}")


def _noop() -> None:
    return None


class ChargePointClient(ChargePoint):
    """One connected OCPP session. A new instance is made for every (re)connection."""

    def __init__(
        self,
        charge_point_id: str,
        connection: Any,
        charger: ChargerPort,
        *,
        response_timeout: float = 30.0,
    ) -> None:
        library_log = QuietLibraryLog(logging.getLogger("hilsim.ocpp.library"), {})
        super().__init__(charge_point_id, connection, response_timeout, logger=library_log)
        self.charger = charger
        self._held: dict[str, Release] = {}
        self.on_activity: Callable[[], None] = _noop

    # -- robustness: every malformed or unknown frame gets the right CALLERROR ------------------

    async def start(self) -> None:
        while True:
            message = await self._connection.recv()
            self.on_activity()
            await self.route_message(message)

    async def route_message(self, raw_msg: str) -> None:
        try:
            msg = unpack(raw_msg)
        except OCPPError as exc:
            await self._answer_malformed(raw_msg, exc)
            return
        if msg.message_type_id != MessageType.Call:
            self._response_queue.put_nowait(msg)
            return
        if not isinstance(msg.unique_id, str) or not isinstance(msg.action, str):
            log.warning("ignoring a CALL with a non-string unique id or action: %.200s", raw_msg)
            return
        if not isinstance(msg.payload, dict):
            await self._send_error(msg, "FormationViolation", "payload must be a JSON object")
            return
        if msg.action not in self.route_map:
            log.warning("CSMS sent %s, which hilsim does not implement", msg.action)
            await self._send_error(msg, "NotImplemented", f"{msg.action} is not implemented")
            return
        try:
            await self._handle_call(msg)
        except OCPPError as exc:
            log.warning("CSMS sent an invalid %s: %s", msg.action, exc.description)
            await self._send_error(msg, exc.code, str(exc.details.get("cause", exc.description)))
        except Exception:
            log.exception("handler for %s failed", msg.action)
            await self._send_error(msg, "InternalError", "the charge point failed to handle it")

    async def _answer_malformed(self, raw_msg: str, exc: OCPPError) -> None:
        """Answer a broken frame if it is recognisably a CALL with an id; otherwise log it.

        OCPP-J gives no way to answer a frame whose unique id cannot be read, and a CALLRESULT or
        CALLERROR must never be answered at all.
        """
        try:
            frame = json.loads(raw_msg)
        except ValueError:
            frame = None
        if isinstance(frame, list) and len(frame) >= 2 and frame[0] == 2:
            uid = frame[1]
            if isinstance(uid, str):
                fake = Call(uid, "?", {})
                await self._send_error(fake, exc.code, "frame is not a valid OCPP-J CALL")
                return
        log.warning("ignoring a malformed frame (%s): %.200s", exc.code, raw_msg)

    async def _send_error(self, msg: Call, code: str, description: str) -> None:
        code = _ERROR_CODES_16.get(code, code)
        await self._send(CallError(msg.unique_id, code, description[:255], {}).to_json())

    # -- outgoing ------------------------------------------------------------------------------

    async def _call(self, payload: Any) -> Any:
        try:
            return await self.call(payload, suppress=False)
        except OCPPError as exc:
            raise CallErrorReceived(type(payload).__name__, exc.code, exc.description) from None

    async def boot_notification(self, identity: Identity) -> call_result.BootNotification:
        result: call_result.BootNotification = await self._call(
            call.BootNotification(
                charge_point_vendor=identity.vendor,
                charge_point_model=identity.model,
                firmware_version=identity.firmware_version,
                charge_point_serial_number=identity.serial_number,
                charge_box_serial_number=identity.charge_box_serial_number,
                meter_serial_number=identity.meter_serial_number,
                meter_type=identity.meter_type,
            )
        )
        return result

    async def heartbeat(self) -> str:
        result: call_result.Heartbeat = await self._call(call.Heartbeat())
        return result.current_time

    async def status_notification(
        self, connector_id: int, status: str, error_code: str, timestamp: str
    ) -> None:
        await self._call(
            call.StatusNotification(
                connector_id=connector_id, error_code=error_code, status=status, timestamp=timestamp
            )
        )

    async def authorize(self, id_tag: str) -> dict[str, Any]:
        result: call_result.Authorize = await self._call(call.Authorize(id_tag=id_tag))
        return dict(result.id_tag_info)

    async def start_transaction(
        self,
        connector_id: int,
        id_tag: str,
        meter_start: int,
        timestamp: str,
        reservation_id: int | None = None,
    ) -> tuple[int, dict[str, Any]]:
        result: call_result.StartTransaction = await self._call(
            call.StartTransaction(
                connector_id=connector_id,
                id_tag=id_tag,
                meter_start=meter_start,
                timestamp=timestamp,
                reservation_id=reservation_id,
            )
        )
        return result.transaction_id, dict(result.id_tag_info)

    async def stop_transaction(
        self,
        transaction_id: int,
        meter_stop: int,
        timestamp: str,
        reason: str,
        id_tag: str | None = None,
    ) -> None:
        await self._call(
            call.StopTransaction(
                meter_stop=meter_stop,
                timestamp=timestamp,
                transaction_id=transaction_id,
                reason=reason,
                id_tag=id_tag,
            )
        )

    async def meter_values(
        self, connector_id: int, transaction_id: int | None, meter_value: list[dict[str, Any]]
    ) -> None:
        await self._call(
            call.MeterValues(
                connector_id=connector_id, transaction_id=transaction_id, meter_value=meter_value
            )
        )

    # -- incoming: one handler per action, named as in the spec ---------------------------------

    @on("Authorize")
    def on_authorize(self, id_tag: str) -> call_result.Authorize:
        # The spec keeps this a dummy: the CSMS asking us to authorise is not a gate for anything.
        return call_result.Authorize(id_tag_info={"status": "Accepted"})

    @on("GetConfiguration")
    def on_get_configuration(self, key: list[str] | None = None) -> call_result.GetConfiguration:
        known, unknown = self.charger.get_configuration(key)
        entries = [{"key": e.key, "readonly": e.readonly, "value": e.value} for e in known]
        return call_result.GetConfiguration(
            configuration_key=entries, unknown_key=unknown if unknown else None
        )

    @on("ChangeConfiguration")
    async def on_change_configuration(
        self, key: str, value: str
    ) -> call_result.ChangeConfiguration:
        status = await self.charger.change_configuration(key, value)
        return call_result.ChangeConfiguration(status=status)

    @on("SetChargingProfile")
    def on_set_charging_profile(
        self, connector_id: int, cs_charging_profiles: dict[str, Any]
    ) -> call_result.SetChargingProfile:
        status = self.charger.set_charging_profile(connector_id, cs_charging_profiles)
        return call_result.SetChargingProfile(status=status)

    @on("RemoteStartTransaction")
    def on_remote_start_transaction(
        self,
        id_tag: str,
        call_unique_id: str,
        connector_id: int | None = None,
        charging_profile: dict[str, Any] | None = None,
    ) -> call_result.RemoteStartTransaction:
        status, release = self.charger.remote_start(id_tag, connector_id, charging_profile)
        self._held[call_unique_id] = release
        return call_result.RemoteStartTransaction(status=status)

    @after("RemoteStartTransaction")
    def after_remote_start_transaction(self, call_unique_id: str, **_: Any) -> None:
        self._held.pop(call_unique_id, _noop)()

    @on("RemoteStopTransaction")
    def on_remote_stop_transaction(
        self, transaction_id: int, call_unique_id: str
    ) -> call_result.RemoteStopTransaction:
        status, release = self.charger.remote_stop(transaction_id)
        self._held[call_unique_id] = release
        return call_result.RemoteStopTransaction(status=status)

    @after("RemoteStopTransaction")
    def after_remote_stop_transaction(self, call_unique_id: str, **_: Any) -> None:
        self._held.pop(call_unique_id, _noop)()
