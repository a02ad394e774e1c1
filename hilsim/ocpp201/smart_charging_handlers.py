"""The handlers of the CSMS's OCPP 2.0.1 SmartCharging CALLs: SetChargingProfile,
ClearChargingProfile, GetChargingProfiles (then ReportChargingProfiles) and GetCompositeSchedule.

A mixin of `ChargePointClient201` (its router finds the ``@on`` methods of every base and calls
them with the payload's keys in snake_case, SetChargingProfile with its payload raw). Each
translates with `hilsim.ocpp201.smart_charging` and makes one call on the charger's
`ChargingLimits`, the same schedule engine 1.6 uses; the 2.0.1 rules it adds are in that
module's docstring.

A TxProfile names its transaction by the 2.0.1 transactionId; the services know it by its local
id. The client provides the mapping as ``transaction_ids`` (`TransactionIds`), so this module
does not depend on how the transactions layer keeps it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from hilsim.ocpp.routing import Reply, on
from hilsim.ocpp201.smart_charging import (
    Refused,
    camel_case,
    clear_to_16,
    composite_to_201,
    duplicate_of,
    profile_to_16,
    profile_to_201,
    report_payloads,
    select_profiles,
    status_info,
)
from hilsim.smart_charging import Profile, ProfileSet

if TYPE_CHECKING:
    from hilsim.clock import Clock

log = logging.getLogger(__name__)


class InstalledLimits(Protocol):
    """What these handlers need of `hilsim.charging_limits.ChargingLimits`."""

    @property
    def profiles(self) -> ProfileSet: ...
    async def set(self, connector_id: int, data: Mapping[str, Any]) -> str: ...
    async def clear(
        self,
        profile_id: int | None,
        connector_id: int | None,
        purpose: str | None,
        stack_level: int | None,
    ) -> str: ...
    def composite(self, connector_id: int, duration: int, unit: str | None) -> dict[str, Any]: ...
    def as_sent(self, profile: Profile) -> dict[str, Any] | None: ...


class SmartCharger(Protocol):
    """What these handlers need of the charger: its limits, its connectors (EVSEs), its clock."""

    @property
    def smart_charging(self) -> InstalledLimits: ...
    @property
    def connectors(self) -> Mapping[int, Any]: ...
    @property
    def wall(self) -> Clock: ...


class TransactionIds(Protocol):
    """The 2.0.1 transactionId of a transaction <-> the local id the services know it by."""

    def local_id(self, tx_id: str) -> int | None: ...
    def tx_id(self, local_id: int) -> str | None: ...


class _NoTransactionIds:
    """Until the client knows 2.0.1 transactionIds: none (a TxProfile gets TxNotFound)."""

    def local_id(self, tx_id: str) -> int | None:
        return None

    def tx_id(self, local_id: int) -> str | None:
        return None


class SmartChargingHandlers201:
    """SetChargingProfile, ClearChargingProfile, GetChargingProfiles, GetCompositeSchedule."""

    charger: SmartCharger  # provided by ChargePointClient201
    #: the transactions layer's mapping; the client (or its transactions mixin) sets its own
    transaction_ids: TransactionIds = _NoTransactionIds()

    #: sends a CALL and returns its CALLRESULT payload; provided by ChargePointClient201
    call: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]

    @property
    def _limits(self) -> InstalledLimits:
        return self.charger.smart_charging

    def _unknown_evse(self, evse_id: int) -> Refused | None:
        if evse_id == 0 or evse_id in self.charger.connectors:
            return None
        return Refused("UnknownEvse", f"this station has no EVSE {evse_id}")

    @on("SetChargingProfile", raw=True)
    async def on_set_charging_profile(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Raw, as on the wire: the profile is kept as sent, customData's vendor keys too."""
        evse_id = int(payload["evseId"])
        sent: dict[str, Any] = payload["chargingProfile"]
        try:
            if (unknown := self._unknown_evse(evse_id)) is not None:
                raise unknown
            data = profile_to_16(
                evse_id,
                sent,
                self.transaction_ids.local_id,
                received_at=self.charger.wall.now().timestamp(),
            )
            if (clash := duplicate_of(evse_id, sent, self._limits.profiles.profiles)) is not None:
                raise clash
            local_id = data.get("transaction_id")
            if local_id is not None:
                running = self.charger.connectors[evse_id].machine.state.local_id
                if running != local_id:
                    raise Refused(
                        "TxNotFound",
                        f"transaction {sent['transactionId']} is not running on EVSE {evse_id}",
                    )
        except Refused as refused:
            log.warning(
                "EVSE %d SetChargingProfile %s refused: %s", evse_id, sent.get("id"), refused
            )
            return refused.payload()
        status = await self._limits.set(evse_id, data)
        if status == "Accepted":
            return {"status": status}
        # The engine's own limits: stack level, periods, rate unit, profiles installed.
        return {
            "status": "Rejected",
            "statusInfo": status_info(
                "InvalidProfile",
                "beyond this station's smart charging limits (ChargeProfileMaxStackLevel, "
                "PeriodsPerSchedule, RateUnit or the number installed); its log says which",
            ),
        }

    @on("ClearChargingProfile")
    async def on_clear_charging_profile(
        self,
        charging_profile_id: int | None = None,
        charging_profile_criteria: dict[str, Any] | None = None,
        custom_data: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        criteria = (
            None if charging_profile_criteria is None else camel_case(charging_profile_criteria)
        )
        args = clear_to_16(charging_profile_id, criteria)
        if args is None:
            return {"status": "Unknown"}
        return {"status": await self._limits.clear(*args)}

    @on("GetChargingProfiles")
    def on_get_charging_profiles(
        self,
        request_id: int,
        charging_profile: dict[str, Any],
        evse_id: int | None = None,
        custom_data: dict[str, Any] | None = None,
    ) -> dict[str, Any] | Reply:
        limits = self._limits
        selected = select_profiles(limits.profiles.profiles, evse_id, camel_case(charging_profile))
        if not selected:
            return {"status": "NoProfiles"}
        reports = report_payloads(
            request_id,
            [
                (p.connector_id, profile_to_201(p, limits.as_sent(p), self.transaction_ids.tx_id))
                for p in selected
            ],
        )

        async def report() -> None:
            # After the answer (K09.FR.01): the profiles as they were when asked for.
            for payload in reports:
                await self.call("ReportChargingProfiles", payload)

        return Reply({"status": "Accepted"}, report)

    @on("GetCompositeSchedule")
    def on_get_composite_schedule(
        self,
        duration: int,
        evse_id: int,
        charging_rate_unit: str | None = None,
        custom_data: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if (unknown := self._unknown_evse(evse_id)) is not None:
            return unknown.payload()
        if duration < 0:
            return Refused("InvalidValue", f"duration {duration} s: a schedule cannot end before "
                           "it starts").payload()  # fmt: skip
        # The engine's schedule of duration 0 has no period; the 2.0.1 one needs one. A long
        # one comes back shorter than asked (the engine's bound): its duration says so.
        answer = composite_to_201(
            evse_id, self._limits.composite(evse_id, max(1, duration), charging_rate_unit)
        )
        if "schedule" in answer:
            answer["schedule"]["duration"] = min(duration, answer["schedule"]["duration"])
        return answer
