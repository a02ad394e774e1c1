"""The calls the central system makes to an OCPP 2.0.1 charge point, one coroutine per action.

Each writes the request's payload (camelCase, as on the wire) and sends it with
:meth:`~hilsim.csms.base.SessionBase.call_action`, which checks it against the official 2.0.1
schema first; each returns what is on the wire, mostly the answer's status. Anything not here
goes through ``call_action(action, payload)`` (or ``call(action, payload)``) directly.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hilsim.csms.handlers201 import Report

__all__ = ["CentralSystemCalls201", "component_variable"]

logger = logging.getLogger(__name__)


def component_variable(
    component: str,
    variable: str,
    *,
    instance: str | None = None,
    evse_id: int | None = None,
    attribute: str | None = None,
) -> dict[str, Any]:
    """``{"component": {...}, "variable": {...}}`` as GetVariables/SetVariables want it."""
    part: dict[str, Any] = {"component": {"name": component}, "variable": {"name": variable}}
    if evse_id is not None:
        part["component"]["evse"] = {"id": evse_id}
    if instance is not None:
        part["variable"]["instance"] = instance
    if attribute is not None:
        part["attributeType"] = attribute
    return part


class CentralSystemCalls201:
    """The typed CSMS-to-charge-point 2.0.1 calls, on top of ``call_action``."""

    reports: dict[int, Report]

    if TYPE_CHECKING:  # the session's (SessionBase)

        async def call_action(
            self, action: str, payload: dict[str, Any], timeout: float = 30
        ) -> dict[str, Any]: ...

        async def wait_for(
            self, action: str, predicate: Any = None, timeout: float = 10
        ) -> dict[str, Any]: ...

    async def _status(self, action: str, payload: dict[str, Any]) -> str:
        return str((await self.call_action(action, payload)).get("status", ""))

    # Provisioning and the device model

    async def get_variables(self, *items: dict[str, Any]) -> list[dict[str, Any]]:
        """GetVariables for :func:`component_variable` items: the getVariableResult list."""
        reply = await self.call_action("GetVariables", {"getVariableData": list(items)})
        return list(reply.get("getVariableResult", []))

    async def get_variable(self, component: str, variable: str, **where: Any) -> str | None:
        """One variable's attributeValue (Actual unless ``attribute=``), None unless Accepted."""
        (result,) = await self.get_variables(component_variable(component, variable, **where))
        if result.get("attributeStatus") != "Accepted":
            return None
        return None if result.get("attributeValue") is None else str(result["attributeValue"])

    async def set_variables(self, *items: tuple[dict[str, Any], str]) -> list[dict[str, Any]]:
        """SetVariables for (:func:`component_variable` item, value): setVariableResult."""
        data = [{**item, "attributeValue": value} for item, value in items]
        reply = await self.call_action("SetVariables", {"setVariableData": data})
        return list(reply.get("setVariableResult", []))

    async def set_variable(self, component: str, variable: str, value: str, **where: Any) -> str:
        """One variable set: its attributeStatus (Accepted, Rejected, RebootRequired...)."""
        item = component_variable(component, variable, **where)
        (result,) = await self.set_variables((item, value))
        return str(result.get("attributeStatus", ""))

    async def get_base_report(self, request_id: int, report_base: str = "FullInventory") -> str:
        """GetBaseReport; the report arrives as NotifyReport (:meth:`wait_for_report`)."""
        return await self._status(
            "GetBaseReport", {"requestId": request_id, "reportBase": report_base}
        )

    async def wait_for_report(self, request_id: int, timeout: float = 10) -> Report:
        """The NotifyReport stream of ``request_id`` once its last part (tbc false) is in."""
        await self.wait_for(
            "NotifyReport",
            lambda p: p["requestId"] == request_id and not p.get("tbc", False),
            timeout=timeout,
        )
        return self.reports[request_id]

    async def reset(self, type: str = "Immediate", evse_id: int | None = None) -> str:
        """``type`` is Immediate or OnIdle."""
        payload: dict[str, Any] = {"type": type}
        if evse_id is not None:
            payload["evseId"] = evse_id
        return await self._status("Reset", payload)

    async def change_availability(
        self, operational_status: str, evse_id: int | None = None, connector_id: int | None = None
    ) -> str:
        """``operational_status`` is Operative or Inoperative; no EVSE: the whole station."""
        payload: dict[str, Any] = {"operationalStatus": operational_status}
        if evse_id is not None:
            payload["evse"] = {"id": evse_id}
            if connector_id is not None:
                payload["evse"]["connectorId"] = connector_id
        return await self._status("ChangeAvailability", payload)

    async def trigger_message(
        self, requested_message: str, evse_id: int | None = None, connector_id: int | None = None
    ) -> str:
        payload: dict[str, Any] = {"requestedMessage": requested_message}
        if evse_id is not None:
            payload["evse"] = {"id": evse_id}
            if connector_id is not None:
                payload["evse"]["connectorId"] = connector_id
        return await self._status("TriggerMessage", payload)

    # Transactions and authorization

    async def request_start(
        self,
        id_token: str | dict[str, Any],
        evse_id: int | None = None,
        remote_start_id: int = 1,
        charging_profile: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """RequestStartTransaction (a plain tag is an ISO14443 idToken). The answer payload."""
        token = (
            id_token if isinstance(id_token, dict) else {"idToken": id_token, "type": "ISO14443"}
        )
        payload: dict[str, Any] = {"idToken": token, "remoteStartId": remote_start_id}
        if evse_id is not None:
            payload["evseId"] = evse_id
        if charging_profile is not None:
            payload["chargingProfile"] = charging_profile
        return await self.call_action("RequestStartTransaction", payload)

    async def request_stop(self, transaction_id: str) -> str:
        return await self._status("RequestStopTransaction", {"transactionId": transaction_id})

    async def get_transaction_status(self, transaction_id: str | None = None) -> dict[str, Any]:
        payload = {} if transaction_id is None else {"transactionId": transaction_id}
        return await self.call_action("GetTransactionStatus", payload)

    async def unlock_connector(self, evse_id: int, connector_id: int = 1) -> str:
        payload = {"evseId": evse_id, "connectorId": connector_id}
        return await self._status("UnlockConnector", payload)

    async def clear_cache(self) -> str:
        return await self._status("ClearCache", {})

    async def send_local_list(
        self,
        version_number: int,
        update_type: str = "Full",
        entries: list[dict[str, Any]] | None = None,
    ) -> str:
        """SendLocalList; ``entries`` camelCase ({"idToken": {...}, "idTokenInfo": {...}})."""
        payload: dict[str, Any] = {"versionNumber": version_number, "updateType": update_type}
        if entries is not None:
            payload["localAuthorizationList"] = entries
        return await self._status("SendLocalList", payload)

    async def get_local_list_version(self) -> int:
        reply = await self.call_action("GetLocalListVersion", {})
        return int(reply.get("versionNumber", -2))

    async def data_transfer(
        self, vendor_id: str, message_id: str | None = None, data: Any = None
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"vendorId": vendor_id}
        if message_id is not None:
            payload["messageId"] = message_id
        if data is not None:
            payload["data"] = data
        return await self.call_action("DataTransfer", payload)

    # Smart charging

    async def set_charging_profile(self, evse_id: int, profile: dict[str, Any]) -> str:
        """SetChargingProfile with a whole chargingProfile object (camelCase)."""
        return await self._status(
            "SetChargingProfile", {"evseId": evse_id, "chargingProfile": profile}
        )

    async def clear_charging_profile(
        self, profile_id: int | None = None, criteria: dict[str, Any] | None = None
    ) -> str:
        payload: dict[str, Any] = {}
        if profile_id is not None:
            payload["chargingProfileId"] = profile_id
        if criteria is not None:
            payload["chargingProfileCriteria"] = criteria
        return await self._status("ClearChargingProfile", payload)

    async def get_charging_profiles(
        self, request_id: int, criteria: dict[str, Any], evse_id: int | None = None
    ) -> str:
        """GetChargingProfiles; the profiles arrive as ReportChargingProfiles."""
        payload: dict[str, Any] = {"requestId": request_id, "chargingProfile": criteria}
        if evse_id is not None:
            payload["evseId"] = evse_id
        return await self._status("GetChargingProfiles", payload)

    async def get_composite_schedule(
        self, evse_id: int, duration: int, unit: str | None = None
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"evseId": evse_id, "duration": duration}
        if unit is not None:
            payload["chargingRateUnit"] = unit
        return await self.call_action("GetCompositeSchedule", payload)
