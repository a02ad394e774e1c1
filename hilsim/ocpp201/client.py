"""The OCPP 2.0.1 charge point client: the 1.6 client's outgoing methods, spoken in 2.0.1.

The services call the link's client by the 1.6 client's method names (``status_notification``,
``authorize``, ``meter_values``, ...) with 1.6-shaped arguments; `ChargePointClient201` has the
same methods and signatures and translates on the way out and back, so no service knows which
version is spoken (the design constants are in the project brief: EVSE id = connector id, each
EVSE's one connector is connectorId 1, the 1.6 -> 2.0.1 status mapping; idTokens, idTokenInfo
and meter values are translated in `hilsim.ocpp201.tx_wire`, for every message alike).

Incoming CALLs are handled by the mixins it is composed of, one module per functional area
(`hilsim.ocpp201.provisioning`, ...); the OCPP-J framing (validation against the 2.0.1 schemas,
2.0.1's CALLERROR spelling, one CALL outstanding) is the shared `hilsim.ocpp.framing.OcppJClient`.

What outlives one connection (whether this process has sent StartupOfTheDevice yet, which
connectors the CSMS has been told have a Problem) is kept in a `Memory201` the link's client
factory hands to every client it makes (`link_options`).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hilsim.errors import CsmsError
from hilsim.ocpp.client import BootResult, Identity
from hilsim.ocpp.framing import (
    ERROR_CODES_201,
    VIOLATION_CODES_201,
    CallErrorReceived,
    Connection,
    OcppJClient,
    without_nones,
)
from hilsim.ocpp.transport import ConnectionClosed
from hilsim.ocpp.validation import Schemas
from hilsim.ocpp201.device_model_handlers import DeviceModelHandlers
from hilsim.ocpp201.firmware_handlers import FirmwareHandlers201
from hilsim.ocpp201.provisioning import ProvisioningCharger, ProvisioningHandlers
from hilsim.ocpp201.security_events import FIRMWARE_UPDATED, Event, SecurityEvents
from hilsim.ocpp201.smart_charging_handlers import SmartChargingHandlers201
from hilsim.ocpp201.transaction_handlers import TransactionHandlers
from hilsim.ocpp201.tx_wire import id_tag_info, id_token, meter_values_201
from hilsim.tasks import TaskSet

log = logging.getLogger(__name__)

SUBPROTOCOL = "ocpp2.0.1"

#: OCPP 1.6 ChargePointStatus -> 2.0.1 ConnectorStatusEnumType.
CONNECTOR_STATUS = {
    "Available": "Available",
    "Preparing": "Occupied",
    "Charging": "Occupied",
    "SuspendedEV": "Occupied",
    "SuspendedEVSE": "Occupied",
    "Finishing": "Occupied",
    "Reserved": "Reserved",
    "Unavailable": "Unavailable",
    "Faulted": "Faulted",
}
#: 1.6 DiagnosticsStatus -> 2.0.1 UploadLogStatusEnumType (LogStatusNotification).
LOG_STATUS = {"Idle": "Idle", "Uploading": "Uploading", "Uploaded": "Uploaded",
              "UploadFailed": "UploadFailure"}  # fmt: skip
#: Actions the 1.6 services may still hand to `call` that 2.0.1 does not have.
ONLY_16 = frozenset({"StartTransaction", "StopTransaction", "DiagnosticsStatusNotification"})


@dataclass(slots=True)
class Memory201:
    """What a 2.0.1 charge point remembers across its connections (one per process)."""

    security: SecurityEvents = field(default_factory=SecurityEvents)
    #: connector id -> whether the CSMS was last told (NotifyEvent) that it has a Problem
    problems: dict[int, bool] = field(default_factory=dict)
    #: NotifyEvent eventIds, unique for the process
    event_ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    #: the reason the next BootNotification gives (RemoteReset after a reset, Soft or Hard)
    boot_reason: str = "PowerUp"


class ChargePointClient201(
    FirmwareHandlers201,
    TransactionHandlers,
    DeviceModelHandlers,
    SmartChargingHandlers201,
    ProvisioningHandlers,
    OcppJClient,
):
    """One connected OCPP 2.0.1 session. A new instance is made for every (re)connection."""

    error_codes = ERROR_CODES_201
    violation_codes = VIOLATION_CODES_201
    version_label = "OCPP 2.0.1"

    def __init__(
        self,
        charge_point_id: str,
        connection: Connection,
        charger: ProvisioningCharger,
        *,
        response_timeout: float = 30.0,
        schemas: Schemas | None = None,
        after_configuration_change: Callable[[], None] | None = None,
        memory: Memory201 | None = None,
    ) -> None:
        """``after_configuration_change``: run once a SetVariables answer that may change the
        security profile is sent (the device model's handlers use it)."""
        self.charger = charger
        self.after_configuration_change = after_configuration_change
        self.memory = memory if memory is not None else Memory201()
        self.tasks = TaskSet("ocpp201")
        self.memory.security.attach(charger.keys, charger.wall)
        super().__init__(
            charge_point_id,
            connection,
            response_timeout=response_timeout,
            schemas=schemas if schemas is not None else Schemas(version="v201"),
        )

    # -- outgoing: the 1.6 client's methods, in 2.0.1 ------------------------------------------

    async def start(self) -> None:
        """Read and handle frames until the connection closes; then this client reports no
        more security events (they wait for the next connection)."""
        try:
            await super().start()
        finally:
            self.memory.security.disconnected(self)

    async def boot_notification(self, identity: Identity, reason: str | None = None) -> BootResult:
        """``reason``: PowerUp, or RemoteReset after a reset (Triggered for a trigger)."""
        reason = reason or self.memory.boot_reason
        station = without_nones(
            model=identity.model,
            vendorName=identity.vendor,
            firmwareVersion=identity.firmware_version,
            serialNumber=identity.serial_number,
        )
        result = await self.call("BootNotification", {"reason": reason, "chargingStation": station})
        boot = BootResult(result["status"], result["interval"], result["currentTime"])
        if boot.status == "Accepted":
            self.memory.boot_reason = "PowerUp"
            self.send_security_events(self.memory.security.connected(self))
        return boot

    async def heartbeat(self) -> str:
        result = await self.call("Heartbeat", {})
        return str(result["currentTime"])

    async def status_notification(
        self, connector_id: int, status: str, error_code: str, timestamp: str
    ) -> None:
        """StatusNotification of EVSE ``connector_id``'s connector 1; a Faulted one is also a
        Problem of its Connector component (NotifyEvent), cleared when it is no longer faulted.
        Connector 0 (the charge point as a whole) has no status in 2.0.1: not sent."""
        if connector_id == 0:
            log.debug("StatusNotification of connector 0 (%s): none in OCPP 2.0.1", status)
            return
        await self.call(
            "StatusNotification",
            {
                "timestamp": timestamp,
                "connectorStatus": CONNECTOR_STATUS[str(status)],
                "evseId": connector_id,
                "connectorId": 1,
            },
        )
        problem = str(status) == "Faulted"
        if self.memory.problems.get(connector_id, False) != problem:
            await self.notify_problem(connector_id, problem, str(error_code), timestamp)
            self.memory.problems[connector_id] = problem

    async def notify_problem(
        self, connector_id: int, problem: bool, error_code: str, timestamp: str
    ) -> None:
        """NotifyEvent: the Connector of EVSE ``connector_id`` has a Problem (or no more)."""
        event: dict[str, Any] = {
            "eventId": next(self.memory.event_ids),
            "timestamp": timestamp,
            "trigger": "Delta",
            "actualValue": "true" if problem else "false",
            "eventNotificationType": "HardWiredNotification",
            "component": {"name": "Connector", "evse": {"id": connector_id, "connectorId": 1}},
            "variable": {"name": "Problem"},
        }
        if problem:
            event["techInfo"] = error_code
        else:
            event["cleared"] = True
        await self.call("NotifyEvent", {"generatedAt": timestamp, "seqNo": 0, "eventData": [event]})

    async def authorize(self, id_tag: str) -> dict[str, Any]:
        """The idTokenInfo, as the 1.6 IdTagInfo the authorizer takes."""
        result = await self.call("Authorize", {"idToken": id_token(id_tag)})
        return id_tag_info(result["idTokenInfo"])

    async def meter_values(
        self, connector_id: int, transaction_id: int | None, meter_value: list[dict[str, Any]]
    ) -> None:
        """MeterValues outside a transaction; ``meter_value`` in the 1.6 shape, as on the 1.6
        wire. ``transaction_id`` has no place in 2.0.1 MeterValues (a transaction's values go in
        TransactionEvent): ignored."""
        values = meter_values_201(meter_value)
        if not values:  # all of it beyond what 2.0.1 can say (minItems 1): nothing to send
            log.debug("MeterValues E%d: nothing 2.0.1 can say, not sent", connector_id)
            return
        await self.call("MeterValues", {"evseId": connector_id, "meterValue": values})

    async def firmware_status_notification(
        self, status: str, request_id: int | None = None
    ) -> None:
        """Installed (after the restart into the new image) is also the critical security event
        FirmwareUpdated (L01, security events appendix), which follows it."""
        await self.call(
            "FirmwareStatusNotification", without_nones(status=status, requestId=request_id)
        )
        if status == "Installed":
            firmware = getattr(self.charger, "firmware", None)
            version = getattr(firmware, "version", None) or "new firmware"
            self.memory.security.report(
                FIRMWARE_UPDATED, f"{version} installed (UpdateFirmware {request_id})"
            )

    async def diagnostics_status_notification(
        self, status: str, request_id: int | None = None
    ) -> None:
        """The 1.6 diagnostics upload's status, as 2.0.1 LogStatusNotification."""
        payload = without_nones(status=LOG_STATUS.get(status, "Idle"), requestId=request_id)
        await self.call("LogStatusNotification", payload)

    async def security_event(
        self, kind: str, tech_info: str | None = None, timestamp: str | None = None
    ) -> None:
        """SecurityEventNotification; a failure is logged, never raised (nothing waits on it)."""
        await self._deliver(kind, tech_info, timestamp or self.charger.wall.iso())

    async def _deliver(self, kind: str, tech_info: str | None, timestamp: str) -> bool:
        """Whether the CSMS got the event: False when the connection failed under it (an
        answer with a CALLERROR counts as got: sending it again would be refused again)."""
        payload = without_nones(type=kind, timestamp=timestamp, techInfo=tech_info)
        try:
            await self.call("SecurityEventNotification", payload)
        except CallErrorReceived as exc:
            log.warning("SecurityEventNotification %s refused by the CSMS: %s", kind, exc)
        except (CsmsError, TimeoutError, OSError, ConnectionClosed) as exc:
            log.warning("SecurityEventNotification %s not delivered: %s", kind, exc)
            return False
        return True

    def send_security_events(self, events: list[Event]) -> None:
        """Send these events in order, in the background."""
        if events:
            self.tasks.spawn(self._send_all(events), "security-events")

    async def _send_all(self, events: list[Event]) -> None:
        """In order; what the connection's end (a reconnect with a new SecurityProfile right
        after the answer that set it) leaves unsent waits for the next accepted boot."""
        remaining = list(events)
        try:
            while remaining and await self._deliver(*remaining[0]):
                remaining.pop(0)
        finally:
            if remaining:
                self.memory.security.requeue(remaining)

    async def start_transaction(self, *args: Any, **kwargs: Any) -> Any:
        raise CsmsError("StartTransaction does not exist in OCPP 2.0.1 (TransactionEvent does)")

    async def stop_transaction(self, *args: Any, **kwargs: Any) -> Any:
        raise CsmsError("StopTransaction does not exist in OCPP 2.0.1 (TransactionEvent does)")

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send one CALL; a 1.6-only action (a stored 1.6 transaction message) is refused with a
        log line instead of being sent to a CSMS that cannot know it."""
        if action in ONLY_16:
            log.error("%s is an OCPP 1.6 message: not sent to the OCPP 2.0.1 CSMS", action)
            raise CsmsError(f"{action}: not an OCPP 2.0.1 message")
        if action == "MeterValues" and "connectorId" in payload:
            # A 1.6 MeterValues the outbox stored (a transaction's samples): the same values
            # outside a transaction, until TransactionEvent carries them.
            values = meter_values_201(payload["meterValue"])
            if not values:  # nothing 2.0.1 can say: delivered, as far as the outbox goes
                log.debug("stored MeterValues: nothing 2.0.1 can say, not sent")
                return {}
            payload = {"evseId": payload["connectorId"], "meterValue": values}
        return await super().call(action, payload)


def link_options() -> dict[str, Any]:
    """What `hilsim.ocpp.session.CsmsLink` needs to speak 2.0.1: the client factory (all its
    clients sharing one `Memory201`), the subprotocol, the 2.0.1 schemas, and the security
    events as the watcher of failed connections. The first boot says why this run started:
    RemoteReset (or FirmwareUpdate) after a Reset Hard's exec."""
    from hilsim.restart import boot_reason_after_restart

    memory = Memory201(boot_reason=boot_reason_after_restart())

    def factory(*args: Any, **kwargs: Any) -> ChargePointClient201:
        return ChargePointClient201(*args, memory=memory, **kwargs)

    return {
        "client_factory": factory,
        "subprotocol": SUBPROTOCOL,
        "schemas": Schemas(version="v201"),
        "connection_watcher": memory.security,
    }
