"""One connected OCPP 2.0.1 charge point (a "charging station"), as the built-in CSMS sees it.

A :class:`ChargePointSession201` is the ``ocpp`` library's 2.0.1 ``ChargePoint`` with the same
machinery as the 1.6 session (:class:`~hilsim.csms.base.SessionBase`: strict checks, the record
of CALLs received and violations, :meth:`wait_for`, :meth:`call_action`), so that a test reads
the same for both versions::

    session = await csms.wait_for_charge_point("CP1")
    await session.wait_for("StatusNotification", lambda p: p["connectorStatus"] == "Available")
    await session.request_start("04A2B3C4", evse_id=1)
    started = await session.wait_for("TransactionEvent", lambda p: p["eventType"] == "Started")
    record = csms.ledger201[started["transactionInfo"]["transactionId"]]

What differs from 1.6: the official 2.0.1 schemas (:mod:`hilsim.csms.strict201`) and the
OCPP-J 2.0.1 error codes; the handlers (:mod:`hilsim.csms.handlers201`); the central system's
own answers are schema-checked too (:attr:`SessionBase.check_answers`); an unknown
MessageTypeId is answered with MessageTypeNotSupported, as OCPP-J 2.0.1 asks.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ocpp.messages import Call
from ocpp.v201 import ChargePoint
from ocpp.v201.enums import Action

from hilsim.csms import strict201
from hilsim.csms.actions201 import CSMS_ACTIONS_201
from hilsim.csms.base import SessionBase
from hilsim.csms.commands201 import CentralSystemCalls201
from hilsim.csms.handlers201 import ChargePointHandlers201, Report
from hilsim.ocpp.wire import ActionNamer

if TYPE_CHECKING:
    from hilsim.csms.server import CentralSystem

__all__ = ["CSMS_ACTIONS_201", "ChargePointSession201", "Report"]

logger = logging.getLogger(__name__)

#: What a charging station may send while Pending once asked with TriggerMessage (B02.FR.?,
#: MessageTriggerEnumType), by the action the trigger leads to.
_TRIGGERABLE = frozenset(
    {
        "BootNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "LogStatusNotification",
        "MeterValues",
        "PublishFirmwareStatusNotification",
        "SignCertificate",
        "StatusNotification",
        "TransactionEvent",
    }
)
#: What answers a request of the CSMS and so may come while Pending: report -> the request.
_ANSWERS = {
    "NotifyReport": ("GetBaseReport", "GetReport"),
    "NotifyMonitoringReport": ("GetMonitoringReport",),
    "ReportChargingProfiles": ("GetChargingProfiles",),
    "NotifyCustomerInformation": ("CustomerInformation",),
    "NotifyDisplayMessages": ("GetDisplayMessages",),
}
_CSMS_ONLY = frozenset(CSMS_ACTIONS_201) - {"DataTransfer"}


class ResponseNamer(ActionNamer):
    """Trace names as 2.0.1 says them: "HeartbeatResponse", not 1.6's "Heartbeat.conf"."""

    def name(self, msg: list[Any]) -> str:
        named = super().name(msg)
        return named.removesuffix(".conf") + "Response" if named.endswith(".conf") else named


class ChargePointSession201(
    ChargePointHandlers201, CentralSystemCalls201, SessionBase, ChargePoint
):
    """The central system's side of one OCPP 2.0.1 charging station connection."""

    ocpp_version = "2.0.1"
    schemas = strict201
    # OCPP-J 2.0.1 4.3: not a valid RPC request / syntactically incorrect
    malformed_call_codes = ("RpcFrameworkError", "FormatViolation")
    unknown_type_code = "MessageTypeNotSupported"
    request_suffix = "Request"
    check_answers = True
    trace_namer = ResponseNamer

    def __init__(
        self,
        charge_point_id: str,
        connection: Any,
        central: CentralSystem,
        *,
        response_timeout: float = 30,
    ) -> None:
        super().__init__(charge_point_id, connection, central, response_timeout=response_timeout)
        self.boot = None
        self.evses = {}
        self.reports = {}
        self.charging_profile_reports = {}
        self.events = []
        self.security_events = []
        self.meter_values = []
        self.firmware_status = None
        self.log_status = None

    async def call(  # type: ignore[override]
        self, request: Any, payload: dict[str, Any] | None = None, **options: Any
    ) -> Any:
        """``call("Reset", {"type": "Immediate"})``: :meth:`call_action` (schema-checked, the
        answer payload); ``call(dataclass, ...)``: the library's own call()."""
        if isinstance(request, str):
            return await self.call_action(request, payload or {}, **options)
        return await super().call(request, **options)

    async def refuse_unhandled(self, msg: Call) -> None:
        """NotImplemented for what OCPP 2.0.1 does not know; NotSupported for the rest."""
        if msg.action not in Action.__members__.values():
            self.record_violation(f"{msg.action!r} is not an OCPP 2.0.1 action")
            code, text = "NotImplemented", f"Unknown action {msg.action!r}"
        else:
            if msg.action in _CSMS_ONLY:
                self.record_violation(
                    f"{msg.action}Request is sent by a CSMS, not a charging station"
                )
            # else: a station's request this CSMS does not serve (certificates, ISO 15118)
            code, text = "NotSupported", f"{msg.action} is not supported by this CSMS"
        await self.send_call_error(msg.unique_id, code, text)

    def registration_problem(self, action: str) -> str | None:
        status = self.central.registration_status(self.charge_point_id)
        if status in (None, "Accepted"):
            return None
        if status == "Pending":
            if self.triggered and action in _TRIGGERABLE:
                return None
            if any(request in self.asked for request in _ANSWERS.get(action, ())):
                return None
        return (
            f"{action}Request sent while the registration status is {status} (OCPP 2.0.1 "
            f"B02/B03: nothing but BootNotification until Accepted, unless asked)"
        )

    async def wait_for_charging_profiles(self, request_id: int, timeout: float = 10) -> Report:
        """The ReportChargingProfiles stream of ``request_id`` once its last part is in."""
        await self.wait_for(
            "ReportChargingProfiles",
            lambda p: p["requestId"] == request_id and not p.get("tbc", False),
            timeout=timeout,
        )
        return self.charging_profile_reports[request_id]
