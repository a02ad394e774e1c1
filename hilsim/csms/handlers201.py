"""How the built-in central system answers each charge-point-initiated OCPP 2.0.1 action.

The answers come from the same :class:`~hilsim.csms.server.CentralSystem` settings as for 1.6
(boot status, heartbeat interval, accepted tags) and its 2.0.1 ledger; what the charge point
said is kept on the session (statuses per EVSE and connector, reports by requestId, events) for
tests and `hilsim csms list` to read.
:class:`~hilsim.csms.session201.ChargePointSession201` routes and checks the frames first.

Every handler takes the camelCase payload from :meth:`current_payload` rather than the
library's snake_case keyword arguments: the payload is what was on the wire, checked already.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ocpp.routing import on
from ocpp.v201 import call_result
from ocpp.v201.enums import Action

from hilsim.csms.commands import utc_now

if TYPE_CHECKING:
    from hilsim.csms.server import CentralSystem

logger = logging.getLogger(__name__)

#: idToken types that carry no identity to check (OCPP 2.0.1 IdTokenEnumType): accepted as is.
_NOTHING_TO_CHECK = frozenset({"NoAuthorization"})


@dataclass
class Report:
    """One NotifyReport (or ReportChargingProfiles) stream: the parts of one requestId."""

    request_id: int
    #: each part's payload, in arrival order
    parts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """The last part (``tbc`` false or absent) has arrived."""
        return any(not part.get("tbc", False) for part in self.parts)

    @property
    def seq_nos(self) -> list[int]:
        return [int(part.get("seqNo", 0)) for part in self.parts]

    @property
    def report_data(self) -> list[dict[str, Any]]:
        """Every reportData entry (NotifyReport), parts in seqNo order."""
        ordered = sorted(self.parts, key=lambda part: int(part.get("seqNo", 0)))
        return [item for part in ordered for item in part.get("reportData", [])]

    def variables(self) -> dict[tuple[str, str], dict[str, Any]]:
        """(component name, variable name) -> the reportData entry (NotifyReport)."""
        return {
            (item["component"]["name"], item["variable"]["name"]): item for item in self.report_data
        }


def id_token_info(central: CentralSystem, id_token: dict[str, Any]) -> dict[str, Any]:
    """The 2.0.1 IdTokenInfoType (camelCase) for an idToken, by the same rules as 1.6.

    The 1.6 answer (:meth:`CentralSystem.id_tag_info`: accepted tags, ``id_tag_details``)
    translates as: status as is (Accepted, Blocked, Expired, Invalid, ConcurrentTx all exist in
    2.0.1), expiryDate -> cacheExpiryDateTime, parentIdTag -> groupIdToken (type Central).
    ``central.id_token_details`` then overrides with 2.0.1 fields for that token.
    """
    token = str(id_token.get("idToken", ""))
    if id_token.get("type") in _NOTHING_TO_CHECK:
        return {"status": "Accepted"}
    tag_info = central.id_tag_info(token)
    info: dict[str, Any] = {"status": tag_info["status"]}
    if tag_info.get("expiryDate") is not None:
        info["cacheExpiryDateTime"] = tag_info["expiryDate"]
    if tag_info.get("parentIdTag") is not None:
        info["groupIdToken"] = {"idToken": tag_info["parentIdTag"], "type": "Central"}
    for known, details in central.id_token_details.items():
        if known.casefold() == token.casefold():
            info.update(details)
    return info


class ChargePointHandlers201:
    """One ``@on`` handler per action a 2.0.1 charge point sends; the state they fill."""

    id: str
    central: CentralSystem
    triggered: bool
    asked: set[str]
    #: the last BootNotificationRequest payload
    boot: dict[str, Any] | None
    #: evseId -> connectorId -> the last StatusNotificationRequest payload
    evses: dict[int, dict[int, dict[str, Any]]]
    #: NotifyReport parts by requestId
    reports: dict[int, Report]
    #: ReportChargingProfiles parts by requestId
    charging_profile_reports: dict[int, Report]
    #: every eventData entry of NotifyEvent, in arrival order
    events: list[dict[str, Any]]
    #: every SecurityEventNotificationRequest payload
    security_events: list[dict[str, Any]]
    #: (evseId, MeterValue) of every MeterValuesRequest, in arrival order
    meter_values: list[tuple[int, dict[str, Any]]]
    firmware_status: str | None
    log_status: str | None

    if TYPE_CHECKING:  # the session's (SessionBase), which must win in the MRO

        @property
        def charge_point_id(self) -> str: ...

        def current_payload(self) -> dict[str, Any]: ...

    # ----------------------------------------------------------------------------- provisioning

    @on(Action.boot_notification)
    def on_boot_notification(self, **_: Any) -> call_result.BootNotification:
        self.boot = dict(self.current_payload())
        status = self.central.boot_status
        self.central.set_registration_status(self.charge_point_id, status)
        self.triggered = False
        self.asked.clear()
        return call_result.BootNotification(
            current_time=utc_now(), interval=self.central.heartbeat_interval, status=status
        )

    @on(Action.heartbeat)
    def on_heartbeat(self, **_: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=utc_now())

    @on(Action.status_notification)
    def on_status_notification(self, **_: Any) -> call_result.StatusNotification:
        payload = self.current_payload()
        self.evses.setdefault(payload["evseId"], {})[payload["connectorId"]] = dict(payload)
        return call_result.StatusNotification()

    @on(Action.notify_report)
    def on_notify_report(self, **_: Any) -> call_result.NotifyReport:
        payload = self.current_payload()
        report = self.reports.setdefault(payload["requestId"], Report(payload["requestId"]))
        report.parts.append(dict(payload))
        return call_result.NotifyReport()

    @on(Action.notify_event)
    def on_notify_event(self, **_: Any) -> call_result.NotifyEvent:
        self.events.extend(self.current_payload()["eventData"])
        return call_result.NotifyEvent()

    @on(Action.security_event_notification)
    def on_security_event_notification(self, **_: Any) -> call_result.SecurityEventNotification:
        self.security_events.append(dict(self.current_payload()))
        return call_result.SecurityEventNotification()

    @on(Action.firmware_status_notification)
    def on_firmware_status_notification(self, **_: Any) -> call_result.FirmwareStatusNotification:
        self.firmware_status = str(self.current_payload()["status"])
        return call_result.FirmwareStatusNotification()

    @on(Action.log_status_notification)
    def on_log_status_notification(self, **_: Any) -> call_result.LogStatusNotification:
        self.log_status = str(self.current_payload()["status"])
        return call_result.LogStatusNotification()

    @on(Action.data_transfer)
    def on_data_transfer(self, **_: Any) -> call_result.DataTransfer:
        vendor_id = str(self.current_payload()["vendorId"])
        status = "Accepted" if vendor_id.casefold() == "hilsim" else "UnknownVendorId"
        return call_result.DataTransfer(status=status)

    # ----------------------------------------------------------------------------- transactions

    @on(Action.authorize)
    def on_authorize(self, **_: Any) -> call_result.Authorize:
        info = id_token_info(self.central, self.current_payload()["idToken"])
        return call_result.Authorize(id_token_info=info)

    @on(Action.transaction_event)
    def on_transaction_event(self, **_: Any) -> call_result.TransactionEvent:
        payload = self.current_payload()
        info = None
        if "idToken" in payload:
            info = id_token_info(self.central, payload["idToken"])
        self.central.ledger201.event(
            self.charge_point_id, payload, None if info is None else str(info["status"])
        )
        return call_result.TransactionEvent(id_token_info=info)

    @on(Action.meter_values)
    def on_meter_values(self, **_: Any) -> call_result.MeterValues:
        payload = self.current_payload()
        self.meter_values.extend((payload["evseId"], value) for value in payload["meterValue"])
        return call_result.MeterValues()

    # ----------------------------------------------------------------------------- smart charging

    @on(Action.report_charging_profiles)
    def on_report_charging_profiles(self, **_: Any) -> call_result.ReportChargingProfiles:
        payload = self.current_payload()
        reports = self.charging_profile_reports
        report = reports.setdefault(payload["requestId"], Report(payload["requestId"]))
        report.parts.append(dict(payload))
        return call_result.ReportChargingProfiles()

    @on(Action.notify_charging_limit)
    def on_notify_charging_limit(self, **_: Any) -> call_result.NotifyChargingLimit:
        return call_result.NotifyChargingLimit()  # kept in `received`, nothing to answer

    @on(Action.cleared_charging_limit)
    def on_cleared_charging_limit(self, **_: Any) -> call_result.ClearedChargingLimit:
        return call_result.ClearedChargingLimit()

    # ----------------------------------------------------------------------------- the rest
    # Notifications whose answer is empty: taking them in costs nothing, and a charge point
    # sending them is not wrong. Their payloads are in `received`.

    @on(Action.reservation_status_update)
    def on_reservation_status_update(self, **_: Any) -> call_result.ReservationStatusUpdate:
        return call_result.ReservationStatusUpdate()

    @on(Action.notify_monitoring_report)
    def on_notify_monitoring_report(self, **_: Any) -> call_result.NotifyMonitoringReport:
        return call_result.NotifyMonitoringReport()

    @on(Action.notify_customer_information)
    def on_notify_customer_information(self, **_: Any) -> call_result.NotifyCustomerInformation:
        return call_result.NotifyCustomerInformation()

    @on(Action.notify_display_messages)
    def on_notify_display_messages(self, **_: Any) -> call_result.NotifyDisplayMessages:
        return call_result.NotifyDisplayMessages()

    @on(Action.publish_firmware_status_notification)
    def on_publish_firmware_status_notification(
        self, **_: Any
    ) -> call_result.PublishFirmwareStatusNotification:
        return call_result.PublishFirmwareStatusNotification()
