"""The handlers of the 2.0.1 CSMS's provisioning and availability CALLs (B, F, G, C, P blocks).

A mixin of `hilsim.ocpp201.client.ChargePointClient201`. Each handler translates the 2.0.1
payload into the call the 1.6 handler makes of the same service (`hilsim.availability`,
`hilsim.operations`) and the answer back: EVSE id = connector id, every EVSE's one connector is
connectorId 1. Nothing here decides what a 1.6 charge point would decide differently; where
2.0.1 asks for more (Reset OnIdle, UnlockConnector refused during a transaction) the rule is
applied here or by a method the service gained for it (`Availability.reset_when_idle`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from hilsim.ocpp.ports import AvailabilityPort, OperationsPort, Release, TriggerSender
from hilsim.ocpp.routing import Reply, on
from hilsim.ocpp201.firmware_handlers import triggered_status
from hilsim.ocpp201.security_events import RESET
from hilsim.ocpp201.tx_wire import id_tag_info

if TYPE_CHECKING:
    from hilsim.ocpp201.client import Memory201

log = logging.getLogger(__name__)

#: TriggerMessage's requestedMessage -> the message the 1.6 operations trigger sends (through
#: this client, which speaks it in 2.0.1: DiagnosticsStatusNotification goes as
#: LogStatusNotification).
TRIGGERS = {
    "BootNotification": "BootNotification",
    "Heartbeat": "Heartbeat",
    "StatusNotification": "StatusNotification",
    "MeterValues": "MeterValues",
    "FirmwareStatusNotification": "FirmwareStatusNotification",
    "LogStatusNotification": "DiagnosticsStatusNotification",
}
#: 1.6 UnlockStatus -> 2.0.1 UnlockStatusEnumType (an unknown connector is told apart first).
UNLOCK_STATUS = {"Unlocked": "Unlocked", "UnlockFailed": "UnlockFailed",
                 "NotSupported": "UnlockFailed"}  # fmt: skip
#: How long a reset waits for the CSMS to take its ResetOrReboot event.
REPORT_BEFORE_RESET_S = 5.0


class AvailabilityPort201(AvailabilityPort, Protocol):
    """`hilsim.availability.Availability`, with what 2.0.1 Reset needs beyond 1.6's."""

    hard_reset: Callable[[], None] | None

    def reset_when_idle(
        self, reset_type: str, before: Callable[[], Awaitable[None]] | None = None
    ) -> tuple[str, Release]: ...


class Wall(Protocol):
    def iso(self) -> str: ...


class ProvisioningCharger(Protocol):
    """What the provisioning handlers need of the charge point (`hilsim.charger.Charger`)."""

    @property
    def availability(self) -> AvailabilityPort201: ...
    @property
    def operations(self) -> OperationsPort | None: ...
    @property
    def connectors(self) -> Mapping[int, Any]: ...
    @property
    def wall(self) -> Wall: ...
    @property
    def keys(self) -> Any: ...


class _TriggeredBoot:
    """The client as a TriggerMessage's sender: its BootNotification says reason Triggered, a
    firmware or log status carries the requestId of the job it is about (2.0.1 requires it)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def boot_notification(self, identity: Any) -> Any:
        return await self.client.boot_notification(identity, reason="Triggered")

    async def firmware_status_notification(self, status: str) -> None:
        firmware = getattr(self.client.charger, "firmware", None)
        request_id = triggered_status(firmware, "FirmwareStatusNotification", status)
        await self.client.firmware_status_notification(status, request_id)

    async def diagnostics_status_notification(self, status: str) -> None:
        firmware = getattr(self.client.charger, "firmware", None)
        request_id = triggered_status(firmware, "LogStatusNotification", status)
        await self.client.diagnostics_status_notification(status, request_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


class ProvisioningHandlers:
    """Reset, ChangeAvailability, UnlockConnector, TriggerMessage, ClearCache, SendLocalList,
    GetLocalListVersion, DataTransfer."""

    # Provided by ChargePointClient201.
    charger: ProvisioningCharger
    call: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
    memory: Memory201

    @property
    def operations(self) -> OperationsPort:
        operations = self.charger.operations
        if operations is None:
            raise RuntimeError("the charger has no operations attached")
        return operations

    # -- Reset, ChangeAvailability -------------------------------------------------------------

    @on("Reset")
    def on_reset(self, type: str, evse_id: int | None = None, custom_data: Any = None) -> Reply:
        """Immediate: a 1.6 Hard reset (the program starts afresh) where the service can
        restart, else Soft; OnIdle: the same once no transaction runs (Scheduled meanwhile).
        An EVSE on its own cannot be reset: Rejected. ResetOrReboot is reported first."""
        if evse_id is not None:
            log.info("Reset %s of EVSE %d: Rejected (only the whole charge point resets)",
                     type, evse_id)  # fmt: skip
            return Reply({"status": "Rejected"})
        availability = self.charger.availability
        kind = "Hard" if availability.hard_reset is not None else "Soft"
        memory = self.memory
        why = f"Reset {type} requested by the CSMS"

        async def report() -> None:
            if kind == "Soft":
                memory.boot_reason = "RemoteReset"
            # A CSMS that does not answer must not hold the reset up for long.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REPORT_BEFORE_RESET_S):
                    await memory.security.report_and_wait(RESET, why)

        if type == "OnIdle":
            status, release = availability.reset_when_idle(kind, before=report)
        else:
            status, release = availability.reset(kind)
        if status != "Accepted" or type == "OnIdle":
            return Reply({"status": str(status)}, release)

        async def report_then_reset() -> None:
            await report()
            release()

        return Reply({"status": "Accepted"}, report_then_reset)

    @on("ChangeAvailability")
    async def on_change_availability(
        self,
        operational_status: str,
        evse: dict[str, Any] | None = None,
        custom_data: Any = None,
    ) -> Reply:
        connector_id = 0 if evse is None else int(evse["id"])
        if evse is not None and evse.get("connector_id", 1) != 1:
            log.info("ChangeAvailability EVSE %d connector %s: Rejected (no such connector)",
                     connector_id, evse.get("connector_id"))  # fmt: skip
            return Reply({"status": "Rejected"})
        status, release = await self.charger.availability.change_availability(
            connector_id, operational_status == "Operative"
        )
        return Reply({"status": str(status)}, release)

    # -- UnlockConnector -----------------------------------------------------------------------

    @on("UnlockConnector")
    def on_unlock_connector(
        self, evse_id: int, connector_id: int, custom_data: Any = None
    ) -> Reply:
        """UnknownConnector for another EVSE or connector; during a transaction 2.0.1 (F05)
        unlocks nothing (OngoingAuthorizedTransaction), where 1.6 stops the transaction first."""
        rt = self.charger.connectors.get(evse_id)
        if rt is None or connector_id != 1:
            log.info("UnlockConnector EVSE %d connector %d: UnknownConnector", evse_id,
                     connector_id)  # fmt: skip
            return Reply({"status": "UnknownConnector"})
        if rt.machine.state.transaction is not None:
            log.info("UnlockConnector EVSE %d: OngoingAuthorizedTransaction", evse_id)
            return Reply({"status": "OngoingAuthorizedTransaction"})
        status, release = self.operations.unlock_connector(evse_id)
        return Reply({"status": UNLOCK_STATUS.get(str(status), "UnlockFailed")}, release)

    # -- TriggerMessage ------------------------------------------------------------------------

    @on("TriggerMessage")
    def on_trigger_message(
        self, requested_message: str, evse: dict[str, Any] | None = None, custom_data: Any = None
    ) -> Reply:
        evse_id = None if evse is None else int(evse["id"])
        other = self.trigger_other(requested_message, evse_id)
        if other is not None:
            status, release = other
            return Reply({"status": str(status)}, release)
        message = TRIGGERS.get(requested_message)
        if message is None:
            log.warning("TriggerMessage %s: NotImplemented", requested_message)
            return Reply({"status": "NotImplemented"})
        sender: TriggerSender = _TriggeredBoot(self)  # type: ignore[assignment]
        status, release = self.operations.trigger_message(message, evse_id, sender)
        return Reply({"status": str(status)}, release)

    def trigger_other(
        self, requested_message: str, evse_id: int | None
    ) -> tuple[str, Release] | None:
        """A trigger another mixin answers (TransactionEvent: the transactions' mixin, placed
        before this one, overrides this); None: not one of those."""
        return None

    # -- ClearCache, local list ----------------------------------------------------------------

    @on("ClearCache")
    async def on_clear_cache(self, custom_data: Any = None) -> dict[str, Any]:
        return {"status": await self.operations.clear_cache()}

    @on("SendLocalList")
    async def on_send_local_list(
        self,
        version_number: int,
        update_type: str,
        local_authorization_list: list[dict[str, Any]] | None = None,
        custom_data: Any = None,
    ) -> dict[str, Any]:
        entries = [local_list_entry(entry) for entry in local_authorization_list or []]
        status = await self.operations.send_local_list(version_number, update_type, entries)
        # 2.0.1 has no NotSupported: a list this charge point cannot take has Failed.
        return {"status": "Failed" if str(status) == "NotSupported" else str(status)}

    @on("GetLocalListVersion")
    def on_get_local_list_version(self, custom_data: Any = None) -> dict[str, Any]:
        return {"versionNumber": self.operations.get_local_list_version()}

    # -- DataTransfer ----------------------------------------------------------------------------

    @on("DataTransfer", raw=True)
    def on_data_transfer(self, payload: dict[str, Any]) -> dict[str, Any]:
        """As in 1.6 (`Operations.data_transfer`); ``data`` may be any JSON in 2.0.1: a
        non-text one is handed over as its JSON text, and an answer to it sent back as JSON."""
        data = payload.get("data")
        text = data if data is None or isinstance(data, str) else json.dumps(data)
        status, answer = self.operations.data_transfer(
            payload["vendorId"], payload.get("messageId"), text
        )
        if answer is None:
            return {"status": str(status)}
        if data is not None and not isinstance(data, str):
            try:
                return {"status": str(status), "data": json.loads(answer)}
            except ValueError:
                pass
        return {"status": str(status), "data": answer}


def local_list_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A 2.0.1 AuthorizationData (snake_case keys) as the 1.6 one `hilsim.local_list` takes."""
    out: dict[str, Any] = {"id_tag": entry["id_token"]["id_token"]}
    info = entry.get("id_token_info")
    if info is not None:
        group = info.get("group_id_token")
        out["id_tag_info"] = id_tag_info({  # the one translation, in its camelCase
            "status": info.get("status"),
            "cacheExpiryDateTime": info.get("cache_expiry_date_time"),
            "groupIdToken": {"idToken": group.get("id_token")}
            if isinstance(group, Mapping) else None,
        })  # fmt: skip
    return out
