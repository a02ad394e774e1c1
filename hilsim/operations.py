"""What the CSMS's commands do to the charger: Core, LocalAuthListManagement, Reservation and
RemoteTrigger (OCPP 1.6 chapters 5.1-5.17), except ChangeAvailability and Reset, which
`hilsim.availability` owns.

The OCPP handlers (`hilsim.ocpp.core_handlers`) translate each CALL into one method here; the
connectors' machines decide transitions; this class decides what a real charger answers and
hands back the effects to release once that answer is on the wire. Where OCPP leaves a choice,
the choice is written next to the code and in README.md ("OCPP feature profiles").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from hilsim.authorization import Authorizer
from hilsim.connectors import ConnectorDispatcher
from hilsim.errors import StoreError
from hilsim.evse import ErrorCode, StopReason, events
from hilsim.local_list import LocalAuthList, UpdateStatus
from hilsim.ocpp.ports import Release, TriggerSender, nothing
from hilsim.ocpp.session import CsmsLink
from hilsim.reservations import CancelStatus, Reservations, ReservationStatus
from hilsim.tasks import TaskSet

if TYPE_CHECKING:
    from hilsim.availability import Availability
    from hilsim.metering import Metering
    from hilsim.store import Store

log = logging.getLogger(__name__)

#: The vendorId hilsim answers DataTransfer for (CiString255: compared case-insensitively).
VENDOR_ID = "hilsim"


class UnlockStatus(StrEnum):
    UNLOCKED = "Unlocked"
    UNLOCK_FAILED = "UnlockFailed"
    NOT_SUPPORTED = "NotSupported"


class DataTransferStatus(StrEnum):
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    UNKNOWN_MESSAGE_ID = "UnknownMessageId"
    UNKNOWN_VENDOR_ID = "UnknownVendorId"


class TriggerStatus(StrEnum):
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    NOT_IMPLEMENTED = "NotImplemented"


#: Sends the message a TriggerMessage asked for, once its answer is on the wire.
Trigger = Callable[[TriggerSender], Awaitable[None]]


class JobStatuses(Protocol):
    """The last Firmware/DiagnosticsStatusNotification sent (`hilsim.firmware.Firmware`)."""

    @property
    def firmware_status(self) -> str: ...
    @property
    def diagnostics_status(self) -> str: ...


class OperationsHost(ConnectorDispatcher, Protocol):
    """What the CSMS's operations need of the charger beyond its connectors."""

    @property
    def firmware(self) -> JobStatuses | None: ...

    @property
    def store(self) -> Store: ...
    def snapshot(self) -> dict[str, Any]: ...
    def transaction_id(self, connector_id: int) -> int | None: ...
    def learn_time(self, current_time: str) -> None: ...
    def adopt_heartbeat_interval(self, seconds: int) -> None: ...


class Operations:
    """The charge point's side of every CSMS command outside transactions and configuration."""

    def __init__(
        self,
        charger: OperationsHost,
        link: CsmsLink,
        authorizer: Authorizer,
        local_list: LocalAuthList,
        metering: Metering,
        availability: Availability,
    ) -> None:
        """``availability`` states connector 0's status (triggered, or with a list conflict)."""
        self.charger = charger
        self.link = link
        self.authorizer = authorizer
        self.local_list = local_list
        self.metering = metering
        self.availability = availability
        self.reservations = Reservations(charger, charger.store)
        self._tasks = TaskSet("operations")
        authorizer.conflict_listeners.append(self._local_list_conflict)

    async def restore(self) -> None:
        """Load what the CSMS set before the last stop, before the charge point connects."""
        await self.local_list.load()
        await self.reservations.restore()

    async def close(self) -> None:
        await self.reservations.close()
        await self._tasks.cancel_all()

    # -- UnlockConnector -----------------------------------------------------------------------

    def unlock_connector(self, connector_id: int) -> tuple[UnlockStatus, Release]:
        """The lock answers as `[[connector]] unlock` says; a running transaction is stopped
        first (reason UnlockCommand), as 5.17 says, whether the lock then opens or not.
        """
        rt = self.charger.connectors.get(connector_id)
        if rt is None:
            log.info("UnlockConnector C%d: NotSupported (no such connector)", connector_id)
            return UnlockStatus.NOT_SUPPORTED, nothing
        outcome_of_lock = {
            "unlocked": UnlockStatus.UNLOCKED,
            "failed": UnlockStatus.UNLOCK_FAILED,
            "not_supported": UnlockStatus.NOT_SUPPORTED,
        }[rt.settings.unlock]
        if outcome_of_lock == UnlockStatus.NOT_SUPPORTED:
            log.info("UnlockConnector C%d: NotSupported (the connector has no lock)", connector_id)
            return outcome_of_lock, nothing
        release: Release = nothing
        if rt.machine.state.transaction is not None:
            outcome = self.charger.dispatch(
                connector_id, events.EndTransaction(StopReason.UNLOCK_COMMAND), hold=True
            )
            if outcome.accepted:
                release = self.charger.held(connector_id, outcome)
        if outcome_of_lock == UnlockStatus.UNLOCKED:
            log.info("UnlockConnector C%d: Unlocked", connector_id)
        else:
            log.error("UnlockConnector C%d: UnlockFailed (the lock did not open)", connector_id)
        return outcome_of_lock, release

    # -- ClearCache ----------------------------------------------------------------------------

    async def clear_cache(self) -> str:
        """Rejected while AuthorizationCacheEnabled is false: there is no cache in use to clear."""
        if not self.charger.keys.get("AuthorizationCacheEnabled"):
            log.info("ClearCache: Rejected (AuthorizationCacheEnabled is false)")
            return "Rejected"
        try:
            await self.charger.store.clear_authorization_cache()
        except StoreError as exc:
            log.error("ClearCache: Rejected (%s)", exc)
            return "Rejected"
        log.info("ClearCache: authorization cache cleared")
        return "Accepted"

    # -- DataTransfer --------------------------------------------------------------------------

    def data_transfer(
        self, vendor_id: str, message_id: str | None, data: str | None
    ) -> tuple[DataTransferStatus, str | None]:
        """Vendor "hilsim" knows two messages, for demos and tests:

        * ``Echo``: Accepted, ``data`` sent back unchanged;
        * ``Status``: Accepted, ``data`` the JSON of `hilsim ctl status` (the whole charge
          point), or of one connector when ``data`` is its id; Rejected for any other ``data``.

        Any other messageId (or none) is UnknownMessageId; any other vendor UnknownVendorId.
        """
        if vendor_id.casefold() != VENDOR_ID:
            log.info("DataTransfer from vendor %r: UnknownVendorId", vendor_id)
            return DataTransferStatus.UNKNOWN_VENDOR_ID, None
        if message_id == "Echo":
            log.info("DataTransfer Echo: Accepted")
            return DataTransferStatus.ACCEPTED, data
        if message_id == "Status":
            snapshot = self.charger.snapshot()
            if not data:
                return DataTransferStatus.ACCEPTED, json.dumps(snapshot)
            for connector in snapshot["connectors"]:
                if str(connector["id"]) == data.strip():
                    return DataTransferStatus.ACCEPTED, json.dumps(connector)
            log.info("DataTransfer Status %r: Rejected (no such connector)", data)
            return DataTransferStatus.REJECTED, None
        log.info("DataTransfer messageId %r: UnknownMessageId", message_id)
        return DataTransferStatus.UNKNOWN_MESSAGE_ID, None

    # -- LocalAuthListManagement ---------------------------------------------------------------

    async def send_local_list(
        self,
        list_version: int,
        update_type: str,
        local_authorization_list: Sequence[Mapping[str, Any]] | None,
    ) -> UpdateStatus:
        return await self.local_list.update(list_version, update_type, local_authorization_list)

    def get_local_list_version(self) -> int:
        return self.local_list.reported_version()

    def _local_list_conflict(self, id_tag: str, why: str) -> None:
        """3.5.3: the CSMS answered differently from the list; say so on connector 0."""
        self.availability.send_charge_point_status(ErrorCode.LOCAL_LIST_CONFLICT)

    # -- Reservation ---------------------------------------------------------------------------

    async def reserve_now(
        self,
        connector_id: int,
        expiry_date: str,
        id_tag: str,
        reservation_id: int,
        parent_id_tag: str | None = None,
    ) -> tuple[ReservationStatus, Release]:
        return await self.reservations.reserve(
            connector_id, expiry_date, id_tag, reservation_id, parent_id_tag
        )

    async def cancel_reservation(self, reservation_id: int) -> tuple[CancelStatus, Release]:
        return await self.reservations.cancel(reservation_id)

    # -- TriggerMessage ------------------------------------------------------------------------

    def trigger_message(
        self, requested_message: str, connector_id: int | None, sender: TriggerSender
    ) -> tuple[TriggerStatus, Release]:
        """Accepted, with the message to send through ``sender`` after the answer (the release);
        Rejected for an unknown connector (or connector 0 for MeterValues, which has no meter of
        its own). Every message OCPP 1.6 lets a CSMS trigger is implemented, so NotImplemented is
        never needed.
        A connectorId is ignored for the messages that are not about a connector.
        """
        known = self.charger.connectors
        if connector_id is not None and connector_id != 0 and connector_id not in known:
            why = "no such connector"
            log.info("TriggerMessage %s C%d: Rejected (%s)", requested_message, connector_id, why)
            return TriggerStatus.REJECTED, nothing
        trigger: Trigger
        if requested_message == "BootNotification":
            trigger = self._trigger_boot
        elif requested_message == "Heartbeat":
            trigger = self._trigger_heartbeat
        elif requested_message == "StatusNotification":
            ids = [0, *known] if connector_id is None else [connector_id]
            trigger = partial(self._trigger_status, connector_ids=ids)
        elif requested_message == "MeterValues":
            if connector_id == 0:
                log.info("TriggerMessage MeterValues C0: Rejected (no main meter)")
                return TriggerStatus.REJECTED, nothing
            ids = list(known) if connector_id is None else [connector_id]
            trigger = partial(self.metering.triggered, connector_ids=ids)
        elif requested_message == "DiagnosticsStatusNotification":
            trigger = self._trigger_diagnostics_status
        elif requested_message == "FirmwareStatusNotification":
            trigger = self._trigger_firmware_status
        else:
            log.warning("TriggerMessage %s: NotImplemented", requested_message)
            return TriggerStatus.NOT_IMPLEMENTED, nothing
        where = "" if connector_id is None else f" C{connector_id}"
        log.info("TriggerMessage %s%s: Accepted", requested_message, where)
        return TriggerStatus.ACCEPTED, lambda: self._spawn(
            trigger(sender), f"trigger-{requested_message}"
        )

    async def _trigger_boot(self, sender: TriggerSender) -> None:
        # A triggered BootNotification restarts nothing (5.17); its answer is taken in as usual.
        result = await sender.boot_notification(self.link.identity)
        self.charger.learn_time(result.current_time)
        if result.status == "Accepted" and result.interval > 0:
            self.charger.adopt_heartbeat_interval(int(result.interval))

    async def _trigger_heartbeat(self, sender: TriggerSender) -> None:
        self.charger.learn_time(await sender.heartbeat())

    async def _trigger_diagnostics_status(self, sender: TriggerSender) -> None:
        await sender.diagnostics_status_notification(self._job_statuses()[1])

    async def _trigger_firmware_status(self, sender: TriggerSender) -> None:
        await sender.firmware_status_notification(self._job_statuses()[0])

    def _job_statuses(self) -> tuple[str, str]:
        """The firmware and diagnostics jobs' last statuses (their owner is the firmware
        service; a charge point without one has nothing running: Idle)."""
        firmware = self.charger.firmware
        if firmware is None:
            return "Idle", "Idle"
        return firmware.firmware_status, firmware.diagnostics_status

    async def _trigger_status(self, sender: TriggerSender, connector_ids: list[int]) -> None:
        for cid in connector_ids:
            if cid == 0:
                status, error = self.availability.charge_point_status(), ErrorCode.NO_ERROR
            else:
                status, error = self.charger.connectors[cid].ocpp_status
            await sender.status_notification(cid, status, error, self.charger.wall.iso())

    # -- for `hilsim ctl status` -----------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "local_list": {
                "enabled": self.local_list.enabled,
                "version": self.local_list.version,
                "id_tags": len(self.local_list),
            },
            "reservations": self.reservations.snapshot(),
            "firmware_status": self._job_statuses()[0],
            "diagnostics_status": self._job_statuses()[1],
        }

    def _spawn(self, work: Awaitable[Any], name: str) -> None:
        self._tasks.spawn(work, name)
