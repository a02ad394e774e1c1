"""One connected OCPP 1.6 charge point, as the built-in central system sees it.

A :class:`ChargePointSession` is the ``ocpp`` library's central-system ``ChargePoint`` (1.6) with

* one ``@on`` handler per charge-point-initiated OCPP 1.6 action (answers come from the
  :class:`~hilsim.csms.server.CentralSystem` settings and its transaction ledger);
* strict checking against the official OCA schemas (see :mod:`hilsim.csms.strict`) instead of the
  library's more lenient copies, answered with the OCPP-J 1.6 error codes;
* the version-neutral machinery of :class:`~hilsim.csms.base.SessionBase`: the record of every
  CALL received (:attr:`received`) and every protocol violation (:attr:`violations`),
  :meth:`wait_for`, and the ways to send the central system's own CALLs;
* the central-system-initiated calls as plain coroutines returning what is on the wire.

The OCPP 2.0.1 session is :class:`hilsim.csms.session201.ChargePointSession201`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ocpp.messages import Call
from ocpp.v16 import ChargePoint
from ocpp.v16.enums import Action

from hilsim.csms import strict
from hilsim.csms.base import Message, SessionBase
from hilsim.csms.commands import CentralSystemCalls
from hilsim.csms.handlers import ChargePointHandlers

if TYPE_CHECKING:
    from hilsim.csms.server import CentralSystem

__all__ = ["ChargePointSession", "Message"]

logger = logging.getLogger(__name__)

#: What a charge point may send while Pending, once the central system asked with TriggerMessage.
_TRIGGERABLE = frozenset(
    {
        "BootNotification",
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "MeterValues",
        "StatusNotification",
    }
)
#: Actions of the security whitepaper for 1.6: known, not supported here, not a violation to send.
_SECURITY_EXTENSION = frozenset(
    {
        "LogStatusNotification",
        "SecurityEventNotification",
        "SignCertificate",
        "SignedFirmwareStatusNotification",
    }
)


class ChargePointSession(ChargePointHandlers, CentralSystemCalls, SessionBase, ChargePoint):
    """The central system's side of one OCPP 1.6 charge point connection."""

    ocpp_version = "1.6"
    schemas = strict
    # OCPP-J 1.6 4.2.3: too few elements is a ProtocolError, wrong types a FormationViolation
    malformed_call_codes = ("ProtocolError", "FormationViolation")
    request_suffix = ".req"

    def __init__(
        self,
        charge_point_id: str,
        connection: Any,
        central: CentralSystem,
        *,
        response_timeout: float = 30,
    ) -> None:
        super().__init__(charge_point_id, connection, central, response_timeout=response_timeout)
        #: the last BootNotification.req payload
        self.boot: dict[str, Any] | None = None
        #: connectorId -> last StatusNotification.req payload
        self.statuses: dict[int, dict[str, Any]] = {}
        self.diagnostics_status: str | None = None
        self.firmware_status: str | None = None

    async def refuse_unhandled(self, msg: Call) -> None:
        """An action without a handler: NotSupported if OCPP 1.6 knows it, else NotImplemented."""
        known = msg.action in Action.__members__.values()
        if not known:
            self.record_violation(f"{msg.action!r} is not an OCPP 1.6 action")
            code, text = "NotImplemented", f"Unknown action {msg.action!r}"
        else:
            if msg.action not in _SECURITY_EXTENSION:
                self.record_violation(
                    f"{msg.action}.req is sent by a central system, not a charge point"
                )
            code, text = "NotSupported", f"{msg.action} is not supported by this central system"
        await self.send_call_error(msg.unique_id, code, text)

    def registration_problem(self, action: str) -> str | None:
        status = self.central.registration_status(self.charge_point_id)
        if status in (None, "Accepted"):
            return None
        if status == "Pending" and self.triggered and action in _TRIGGERABLE:
            return None
        return (
            f"{action}.req sent while the registration status is {status} "
            f"(OCPP 1.6 4.2: nothing but BootNotification until Accepted)"
        )
