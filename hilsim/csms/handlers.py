"""How the built-in central system answers each charge-point-initiated OCPP 1.6 action.

The answers come from the :class:`~hilsim.csms.server.CentralSystem` settings and its
transaction ledger; what the charge point said is kept on the session for tests to read.
:class:`~hilsim.csms.session.ChargePointSession` routes the frames and checks them first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ocpp.routing import on
from ocpp.v16 import call_result, datatypes
from ocpp.v16.enums import Action

from hilsim.csms.commands import utc_now

if TYPE_CHECKING:
    from hilsim.csms.server import CentralSystem


class ChargePointHandlers:
    """One ``@on`` handler per action a charge point sends; the session's state they fill."""

    id: str
    central: CentralSystem
    boot: dict[str, Any] | None
    statuses: dict[int, dict[str, Any]]
    diagnostics_status: str | None
    firmware_status: str | None
    triggered: bool

    @property
    def charge_point_id(self) -> str:
        return str(self.id)

    if TYPE_CHECKING:  # the session's (SessionBase), which must win in the MRO

        def current_payload(self) -> dict[str, Any]:
            """The CALL being handled, camelCase as on the wire (the session knows which)."""
            ...

    @on(Action.boot_notification)
    def on_boot_notification(self, **_: Any) -> call_result.BootNotification:
        self.boot = dict(self.current_payload())
        status = self.central.boot_status
        self.central.set_registration_status(self.charge_point_id, status)
        self.triggered = False
        return call_result.BootNotification(
            current_time=utc_now(), interval=self.central.heartbeat_interval, status=status
        )

    @on(Action.heartbeat)
    def on_heartbeat(self, **_: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=utc_now())

    @on(Action.status_notification)
    def on_status_notification(self, connector_id: int, **_: Any) -> call_result.StatusNotification:
        self.statuses[connector_id] = dict(self.current_payload())
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_tag: str, **_: Any) -> call_result.Authorize:
        return call_result.Authorize(id_tag_info=self._id_tag_info(id_tag))

    @on(Action.start_transaction)
    def on_start_transaction(self, id_tag: str, **_: Any) -> call_result.StartTransaction:
        info = self._id_tag_info(id_tag)
        record = self.central.ledger.start(
            self.charge_point_id, self.current_payload(), info.status
        )
        return call_result.StartTransaction(
            transaction_id=record.transaction_id,
            id_tag_info=info,
        )

    @on(Action.stop_transaction)
    def on_stop_transaction(
        self, id_tag: str | None = None, **_: Any
    ) -> call_result.StopTransaction:
        self.central.ledger.stop(self.charge_point_id, self.current_payload())
        if id_tag is None:
            return call_result.StopTransaction()
        return call_result.StopTransaction(id_tag_info=self._id_tag_info(id_tag))

    @on(Action.meter_values)
    def on_meter_values(self, **_: Any) -> call_result.MeterValues:
        self.central.ledger.meter_values(self.charge_point_id, self.current_payload())
        return call_result.MeterValues()

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, **_: Any) -> call_result.DataTransfer:
        # vendorId is a CiString255Type: case-insensitive
        status = "Accepted" if vendor_id.casefold() == "hilsim" else "UnknownVendorId"
        return call_result.DataTransfer(status=status)

    @on(Action.diagnostics_status_notification)
    def on_diagnostics_status_notification(
        self, status: str, **_: Any
    ) -> call_result.DiagnosticsStatusNotification:
        self.diagnostics_status = status
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    def on_firmware_status_notification(
        self, status: str, **_: Any
    ) -> call_result.FirmwareStatusNotification:
        self.firmware_status = status
        return call_result.FirmwareStatusNotification()

    def _id_tag_info(self, id_tag: str) -> datatypes.IdTagInfo:
        info = self.central.id_tag_info(id_tag)
        return datatypes.IdTagInfo(
            status=info["status"],
            parent_id_tag=info.get("parentIdTag"),
            expiry_date=info.get("expiryDate"),
        )
