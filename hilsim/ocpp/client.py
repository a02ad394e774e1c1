"""The charge point's OCPP 1.6J side: one handler per CSMS-initiated action, one method per call.

Handlers translate wire payloads into calls on the charge point's services (typed against the
small Protocols of `hilsim.ocpp.ports`) and their answers back into payloads; they decide nothing
themselves. Effects that a handler's decision produces (a StartTransaction after RemoteStart, for
instance) come back with its payload as a `Reply`; the router runs them once the CALLRESULT is on
the wire, so the CSMS always sees the answer before the consequence and no handler ever awaits a
CALL of its own (which would deadlock the reader).

The OCPP-J framing (`hilsim.ocpp.framing`, shared with the 2.0.1 client) is done by hilsim
rather than by the `ocpp` library's ``ChargePoint``, for the small boards this runs on: the
library turns every payload into a dataclass, a dict and camelCase again, validates even our own
frames with `jsonschema` and waits for each answer through a task, a queue and ``wait_for``;
importing it (and `jsonschema`) alone took about 75 ms of a 260 ms
cold start. What it did that matters is kept, with the same results on the wire: every payload
the CSMS sends is validated against the library's own OCPP 1.6 schemas (`validation`), a schema
violation is answered with the same CALLERROR code, an unknown action with NotImplemented, one
CALL of ours is outstanding at a time, and a CALL not answered in time raises TimeoutError. Our
own payloads are built as camelCase dicts and not validated at run time: the tests check every
frame we send against the official schemas, applied strictly, at the built-in CSMS.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hilsim.ocpp.core_handlers import CoreProfileHandlers
from hilsim.ocpp.firmware_handlers import FirmwareHandlers
from hilsim.ocpp.framing import (
    CallErrorReceived,
    Connection,
    InvalidResultReceived,
    OcppJClient,
    without_nones,
)
from hilsim.ocpp.ports import ChargerPort
from hilsim.ocpp.routing import Reply, on
from hilsim.ocpp.smart_charging_handlers import SmartChargingHandlers
from hilsim.ocpp.validation import Schemas, snake_case

__all__ = [
    "BootResult",
    "CallErrorReceived",
    "ChargePointClient",
    "Connection",
    "Identity",
    "InvalidResultReceived",
]

log = logging.getLogger(__name__)


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


class ChargePointClient(CoreProfileHandlers, SmartChargingHandlers, FirmwareHandlers, OcppJClient):
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
        self.charger = charger
        self._after_configuration_change = after_configuration_change
        #: the last GetConfiguration entries and their wire form (see on_get_configuration)
        self._answered: tuple[object, list[dict[str, Any]]] = (None, [])
        super().__init__(
            charge_point_id, connection, response_timeout=response_timeout, schemas=schemas
        )

    # -- outgoing ------------------------------------------------------------------------------

    async def boot_notification(self, identity: Identity) -> BootResult:
        payload = without_nones(
            chargePointVendor=identity.vendor,
            chargePointModel=identity.model,
            chargePointSerialNumber=identity.serial_number,
            chargeBoxSerialNumber=identity.charge_box_serial_number,
            firmwareVersion=identity.firmware_version,
            meterType=identity.meter_type,
            meterSerialNumber=identity.meter_serial_number,
        )
        result = await self.call("BootNotification", payload)
        return BootResult(result["status"], result["interval"], result["currentTime"])

    async def heartbeat(self) -> str:
        result = await self.call("Heartbeat", {})
        return str(result["currentTime"])

    async def status_notification(
        self, connector_id: int, status: str, error_code: str, timestamp: str
    ) -> None:
        await self.call(
            "StatusNotification",
            {
                "connectorId": connector_id,
                "errorCode": error_code,
                "status": status,
                "timestamp": timestamp,
            },
        )

    async def authorize(self, id_tag: str) -> dict[str, Any]:
        result = await self.call("Authorize", {"idTag": id_tag})
        return dict(snake_case(result["idTagInfo"]))

    async def start_transaction(
        self,
        connector_id: int,
        id_tag: str,
        meter_start: int,
        timestamp: str,
        reservation_id: int | None = None,
    ) -> tuple[int, dict[str, Any]]:
        result = await self.call(
            "StartTransaction",
            without_nones(
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
        result = await self.call(
            "StopTransaction",
            without_nones(
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
        await self.call("MeterValues", payload)

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
