"""The handlers of the CSMS's SmartCharging CALLs: SetChargingProfile, ClearChargingProfile and
GetCompositeSchedule.

A mixin of `ChargePointClient` (its router finds the ``@on`` methods of every base). Each turns
the payload into one call on the charger's `ChargingLimits` and its answer into the CALLRESULT;
the rules are in `hilsim.smart_charging`.
"""

from __future__ import annotations

from typing import Any

from hilsim.ocpp.ports import ChargerPort, SmartChargingPort
from hilsim.ocpp.routing import on


class SmartChargingHandlers:
    """SetChargingProfile, ClearChargingProfile, GetCompositeSchedule."""

    charger: ChargerPort  # provided by ChargePointClient

    @property
    def smart_charging(self) -> SmartChargingPort:
        return self.charger.smart_charging

    @on("SetChargingProfile")
    async def on_set_charging_profile(
        self, connector_id: int, cs_charging_profiles: dict[str, Any]
    ) -> dict[str, Any]:
        return {"status": await self.smart_charging.set(connector_id, cs_charging_profiles)}

    @on("ClearChargingProfile")
    async def on_clear_charging_profile(
        self,
        id: int | None = None,
        connector_id: int | None = None,
        charging_profile_purpose: str | None = None,
        stack_level: int | None = None,
    ) -> dict[str, Any]:
        status = await self.smart_charging.clear(
            id, connector_id, charging_profile_purpose, stack_level
        )
        return {"status": status}

    @on("GetCompositeSchedule")
    def on_get_composite_schedule(
        self, connector_id: int, duration: int, charging_rate_unit: str | None = None
    ) -> dict[str, Any]:
        return self.smart_charging.composite(connector_id, duration, charging_rate_unit)
