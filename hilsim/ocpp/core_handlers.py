"""The handlers of the CSMS's Core, LocalAuthListManagement, Reservation and RemoteTrigger CALLs.

A mixin of `ChargePointClient`, whose router finds every ``@on``/``@after`` method of the class
and its bases. Like the client's own handlers these translate and pass on: each calls one method
of the charger's `Operations` and turns the answer into the CALLRESULT payload. Whatever the
answer sets in motion (a StatusNotification, a StopTransaction, a reconnection, the triggered
message) is held until the CALLRESULT is on the wire and released from the ``@after`` hook, so
the CSMS always sees the answer before its consequence.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from hilsim.ocpp.routing import after, on

if TYPE_CHECKING:
    from hilsim.operations import Operations

log = logging.getLogger(__name__)

Release = Callable[[], None]


def _noop() -> None:
    return None


class CoreProfileHandlers:
    """One handler per CSMS-initiated action of the four profiles, named as in the spec."""

    # Provided by ChargePointClient.
    charger: Any
    _held: dict[str, Release]
    _call: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]

    @property
    def operations(self) -> Operations:
        operations: Operations | None = getattr(self.charger, "operations", None)
        if operations is None:
            raise RuntimeError("the charger has no operations attached")
        return operations

    def _release_after(self, call_unique_id: str, **_: Any) -> None:
        self._held.pop(call_unique_id, _noop)()

    # -- Core ----------------------------------------------------------------------------------

    @on("ChangeAvailability")
    async def on_change_availability(
        self, connector_id: int, type: str, call_unique_id: str
    ) -> dict[str, Any]:
        status, release = await self.operations.change_availability(
            connector_id, type == "Operative"
        )
        self._held[call_unique_id] = release
        return {"status": str(status)}

    @after("ChangeAvailability")
    def after_change_availability(self, call_unique_id: str, **_: Any) -> None:
        self._release_after(call_unique_id)

    @on("Reset")
    def on_reset(self, type: str, call_unique_id: str) -> dict[str, Any]:
        status, release = self.operations.reset(type)
        self._held[call_unique_id] = release
        return {"status": status}

    @after("Reset")
    def after_reset(self, call_unique_id: str, **_: Any) -> None:
        self._release_after(call_unique_id)

    @on("UnlockConnector")
    def on_unlock_connector(self, connector_id: int, call_unique_id: str) -> dict[str, Any]:
        status, release = self.operations.unlock_connector(connector_id)
        self._held[call_unique_id] = release
        return {"status": str(status)}

    @after("UnlockConnector")
    def after_unlock_connector(self, call_unique_id: str, **_: Any) -> None:
        self._release_after(call_unique_id)

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
        call_unique_id: str,
        parent_id_tag: str | None = None,
    ) -> dict[str, Any]:
        status, release = await self.operations.reserve_now(
            connector_id, expiry_date, id_tag, reservation_id, parent_id_tag
        )
        self._held[call_unique_id] = release
        return {"status": str(status)}

    @after("ReserveNow")
    def after_reserve_now(self, call_unique_id: str, **_: Any) -> None:
        self._release_after(call_unique_id)

    @on("CancelReservation")
    async def on_cancel_reservation(
        self, reservation_id: int, call_unique_id: str
    ) -> dict[str, Any]:
        status, release = await self.operations.cancel_reservation(reservation_id)
        self._held[call_unique_id] = release
        return {"status": str(status)}

    @after("CancelReservation")
    def after_cancel_reservation(self, call_unique_id: str, **_: Any) -> None:
        self._release_after(call_unique_id)

    # -- RemoteTrigger -------------------------------------------------------------------------

    @on("TriggerMessage")
    def on_trigger_message(
        self, requested_message: str, call_unique_id: str, connector_id: int | None = None
    ) -> dict[str, Any]:
        operations = self.operations
        status, trigger = operations.trigger_message(requested_message, connector_id)
        if trigger is not None:
            self._held[call_unique_id] = lambda: operations._spawn(
                trigger(self), f"trigger-{requested_message}"
            )
        return {"status": str(status)}

    @after("TriggerMessage")
    def after_trigger_message(self, call_unique_id: str, **_: Any) -> None:
        self._release_after(call_unique_id)

    # -- the two status notifications a trigger (or a firmware/diagnostics job) sends ----------

    async def diagnostics_status_notification(self, status: str) -> None:
        await self._call("DiagnosticsStatusNotification", {"status": status})

    async def firmware_status_notification(self, status: str) -> None:
        await self._call("FirmwareStatusNotification", {"status": status})
