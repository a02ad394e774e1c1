"""The handlers of the CSMS's Core, LocalAuthListManagement, Reservation and RemoteTrigger CALLs.

A mixin of `ChargePointClient`, whose router finds every ``@on`` method of the class and its
bases. Like the client's own handlers these translate and pass on: each calls one method of the
charge point's availability (`AvailabilityPort`) or operations (`OperationsPort`) and turns the
answer into the CALLRESULT payload.
Whatever the answer sets in motion (a StatusNotification, a StopTransaction, a reconnection, the
triggered message) goes back to the router as the `Reply`'s after-step, run once the CALLRESULT
is on the wire, so the CSMS always sees the answer before its consequence.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from hilsim.ocpp.ports import ChargerPort, OperationsPort
from hilsim.ocpp.routing import Reply, on

log = logging.getLogger(__name__)


class CoreProfileHandlers:
    """One handler per CSMS-initiated action of the four profiles, named as in the spec."""

    # Provided by ChargePointClient.
    charger: ChargerPort
    _call: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]

    @property
    def operations(self) -> OperationsPort:
        operations = self.charger.operations
        if operations is None:
            raise RuntimeError("the charger has no operations attached")
        return operations

    # -- Core ----------------------------------------------------------------------------------

    @on("ChangeAvailability")
    async def on_change_availability(self, connector_id: int, type: str) -> Reply:
        status, release = await self.charger.availability.change_availability(
            connector_id, type == "Operative"
        )
        return Reply({"status": str(status)}, release)

    @on("Reset")
    def on_reset(self, type: str) -> Reply:
        status, release = self.charger.availability.reset(type)
        return Reply({"status": str(status)}, release)

    @on("UnlockConnector")
    def on_unlock_connector(self, connector_id: int) -> Reply:
        status, release = self.operations.unlock_connector(connector_id)
        return Reply({"status": str(status)}, release)

    @on("ClearCache")
    async def on_clear_cache(self) -> dict[str, Any]:
        return {"status": await self.operations.clear_cache()}

    @on("DataTransfer")
    def on_data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: str | None = None
    ) -> dict[str, Any]:
        status, answer = self.operations.data_transfer(vendor_id, message_id, data)
        if answer is None:
            return {"status": str(status)}
        return {"status": str(status), "data": answer}

    # -- LocalAuthListManagement ---------------------------------------------------------------

    @on("SendLocalList")
    async def on_send_local_list(
        self,
        list_version: int,
        update_type: str,
        local_authorization_list: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        status = await self.operations.send_local_list(
            list_version, update_type, local_authorization_list
        )
        return {"status": str(status)}

    @on("GetLocalListVersion")
    def on_get_local_list_version(self) -> dict[str, Any]:
        return {"listVersion": self.operations.get_local_list_version()}

    # -- Reservation ---------------------------------------------------------------------------

    @on("ReserveNow")
    async def on_reserve_now(
        self,
        connector_id: int,
        expiry_date: str,
        id_tag: str,
        reservation_id: int,
        parent_id_tag: str | None = None,
    ) -> Reply:
        status, release = await self.operations.reserve_now(
            connector_id, expiry_date, id_tag, reservation_id, parent_id_tag
        )
        return Reply({"status": str(status)}, release)

    @on("CancelReservation")
    async def on_cancel_reservation(self, reservation_id: int) -> Reply:
        status, release = await self.operations.cancel_reservation(reservation_id)
        return Reply({"status": str(status)}, release)

    # -- RemoteTrigger -------------------------------------------------------------------------

    @on("TriggerMessage")
    def on_trigger_message(self, requested_message: str, connector_id: int | None = None) -> Reply:
        # The triggered message goes out through this connection's client: this object.
        status, release = self.operations.trigger_message(requested_message, connector_id, self)
        return Reply({"status": str(status)}, release)

    # -- the two status notifications a trigger (or a firmware/diagnostics job) sends ----------

    async def diagnostics_status_notification(self, status: str) -> None:
        await self._call("DiagnosticsStatusNotification", {"status": status})

    async def firmware_status_notification(self, status: str) -> None:
        await self._call("FirmwareStatusNotification", {"status": status})
