"""The calls the central system makes to a charge point, one coroutine per OCPP 1.6 action.

Kept apart from :mod:`hilsim.csms.session` (how a call travels and how the charge point's own
calls are answered): these only say what each request holds and which part of the answer a
test wants. Each returns what is on the wire (camelCase), mostly the answer's status.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ocpp.v16 import call

__all__ = ["CentralSystemCalls", "utc_now"]


def utc_now() -> str:
    """Current time as OCPP wants it: RFC 3339, UTC, with "Z"."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CentralSystemCalls:
    """The typed CSMS-to-charge-point calls, on top of the one way to send a call."""

    if TYPE_CHECKING:  # the session's (SessionBase), which must win in the MRO

        async def send_call(self, request: Any) -> dict[str, Any]:
            """Send one CALL (an ``ocpp.v16.call`` dataclass) and return the CALLRESULT payload
            as on the wire; :class:`~hilsim.csms.base.SessionBase` says how."""
            ...

    async def remote_start(
        self,
        id_tag: str,
        connector_id: int | None = None,
        charging_profile: dict[str, Any] | None = None,
    ) -> str:
        """RemoteStartTransaction; ``charging_profile`` camelCase as on the wire. The status."""
        reply = await self.send_call(
            call.RemoteStartTransaction(
                id_tag=id_tag, connector_id=connector_id, charging_profile=charging_profile
            )
        )
        return str(reply.get("status", ""))

    async def remote_stop(self, transaction_id: int) -> str:
        reply = await self.send_call(call.RemoteStopTransaction(transaction_id=transaction_id))
        return str(reply.get("status", ""))

    async def set_charging_profile(
        self,
        connector_id: int,
        limit: float,
        unit: str = "W",
        *,
        purpose: str = "TxDefaultProfile",
        stack_level: int = 0,
        profile_id: int = 1,
        transaction_id: int | None = None,
    ) -> str:
        """SetChargingProfile with one absolute period starting now. Returns the status.

        ``limit`` is rounded to one decimal: the schema wants a multiple of 0.1.
        """
        profile: dict[str, Any] = {
            "chargingProfileId": profile_id,
            "stackLevel": stack_level,
            "chargingProfilePurpose": purpose,
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "startSchedule": datetime.now(UTC)
                .isoformat(timespec="seconds")
                .replace("+00:00", "Z"),
                "chargingRateUnit": unit,
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": round(float(limit), 1)}],
            },
        }
        if transaction_id is not None:
            profile["transactionId"] = transaction_id
        reply = await self.send_call(
            call.SetChargingProfile(connector_id=connector_id, cs_charging_profiles=profile)
        )
        return str(reply.get("status", ""))

    # SmartCharging and FirmwareManagement (camelCase in, as on the wire).

    async def send_charging_profile(self, connector_id: int, profile: dict[str, Any]) -> str:
        """SetChargingProfile with a whole csChargingProfiles object. Returns the status."""
        reply = await self.send_call(
            call.SetChargingProfile(connector_id=connector_id, cs_charging_profiles=profile)
        )
        return str(reply.get("status", ""))

    async def clear_charging_profile(
        self,
        profile_id: int | None = None,
        connector_id: int | None = None,
        purpose: str | None = None,
        stack_level: int | None = None,
    ) -> str:
        reply = await self.send_call(
            call.ClearChargingProfile(
                id=profile_id,
                connector_id=connector_id,
                charging_profile_purpose=purpose,
                stack_level=stack_level,
            )
        )
        return str(reply.get("status", ""))

    async def get_composite_schedule(
        self, connector_id: int, duration: int, unit: str | None = None
    ) -> dict[str, Any]:
        """GetCompositeSchedule. The CALLRESULT payload."""
        return await self.send_call(
            call.GetCompositeSchedule(
                connector_id=connector_id, duration=duration, charging_rate_unit=unit
            )
        )

    async def update_firmware(
        self,
        location: str,
        retrieve_date: str | None = None,
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> None:
        """UpdateFirmware (retrieveDate defaults to now); watch FirmwareStatusNotification."""
        await self.send_call(
            call.UpdateFirmware(
                location=location,
                retrieve_date=retrieve_date or utc_now(),
                retries=retries,
                retry_interval=retry_interval,
            )
        )

    async def get_diagnostics(
        self,
        location: str,
        retries: int | None = None,
        retry_interval: int | None = None,
        start_time: str | None = None,
        stop_time: str | None = None,
    ) -> str | None:
        """GetDiagnostics. The fileName the charge point will upload, if it has one."""
        reply = await self.send_call(
            call.GetDiagnostics(
                location=location,
                retries=retries,
                retry_interval=retry_interval,
                start_time=start_time,
                stop_time=stop_time,
            )
        )
        name = reply.get("fileName")
        return None if name is None else str(name)

    async def get_configuration(self, keys: list[str] | None = None) -> dict[str, Any]:
        """GetConfiguration. The CALLRESULT payload, with absent lists filled in as []."""
        reply = await self.send_call(call.GetConfiguration(key=keys))
        return {"configurationKey": [], "unknownKey": [], **reply}

    async def change_configuration(self, key: str, value: str) -> str:
        reply = await self.send_call(call.ChangeConfiguration(key=key, value=value))
        return str(reply.get("status", ""))

    # Core, LocalAuthListManagement and Reservation: each returns the status it was answered.

    async def change_availability(self, connector_id: int, type: str) -> str:
        """``type`` is Operative or Inoperative."""
        reply = await self.send_call(call.ChangeAvailability(connector_id=connector_id, type=type))
        return str(reply.get("status", ""))

    async def reset(self, type: str) -> str:
        """``type`` is Hard or Soft."""
        reply = await self.send_call(call.Reset(type=type))
        return str(reply.get("status", ""))

    async def unlock_connector(self, connector_id: int) -> str:
        reply = await self.send_call(call.UnlockConnector(connector_id=connector_id))
        return str(reply.get("status", ""))

    async def clear_cache(self) -> str:
        reply = await self.send_call(call.ClearCache())
        return str(reply.get("status", ""))

    async def data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: str | None = None
    ) -> dict[str, Any]:
        """DataTransfer to the charge point. The CALLRESULT payload (status, maybe data)."""
        return await self.send_call(
            call.DataTransfer(vendor_id=vendor_id, message_id=message_id, data=data)
        )

    async def send_local_list(
        self,
        list_version: int,
        update_type: str = "Full",
        entries: list[dict[str, Any]] | None = None,
    ) -> str:
        """SendLocalList; ``entries`` camelCase as on the wire ({"idTag", "idTagInfo"})."""
        reply = await self.send_call(
            call.SendLocalList(
                list_version=list_version,
                update_type=update_type,
                local_authorization_list=entries,
            )
        )
        return str(reply.get("status", ""))

    async def get_local_list_version(self) -> int:
        reply = await self.send_call(call.GetLocalListVersion())
        return int(reply.get("listVersion", -2))

    async def reserve_now(
        self,
        connector_id: int,
        expiry_date: str,
        id_tag: str,
        reservation_id: int,
        parent_id_tag: str | None = None,
    ) -> str:
        reply = await self.send_call(
            call.ReserveNow(
                connector_id=connector_id,
                expiry_date=expiry_date,
                id_tag=id_tag,
                reservation_id=reservation_id,
                parent_id_tag=parent_id_tag,
            )
        )
        return str(reply.get("status", ""))

    async def cancel_reservation(self, reservation_id: int) -> str:
        reply = await self.send_call(call.CancelReservation(reservation_id=reservation_id))
        return str(reply.get("status", ""))

    async def trigger_message(self, requested_message: str, connector_id: int | None = None) -> str:
        reply = await self.send_call(
            call.TriggerMessage(requested_message=requested_message, connector_id=connector_id)
        )
        return str(reply.get("status", ""))
