"""GetCompositeSchedule for any duration a CSMS sends, in both versions, over the wire.

Found by probing: 2^31-1 s over a daily recurring profile made a 3 MB answer the CSMS closed the
connection over, after a second of the charge point's event loop. The schedule now stops at the
engine's bound and says, by its duration, how far it reaches; the connection carries on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hilsim.smart_charging.engine import MAX_COMPOSITE_STEPS

from conftest import serving

LONGEST = 2**31 - 1
#: 7 kW from 22:00 to 06:00 every night, the rest of the day the hardware's maximum
SCHEDULE_16 = {
    "chargingRateUnit": "W",
    "duration": 8 * 3600,
    "startSchedule": "2026-01-01T22:00:00Z",
    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7000}],
}
PROFILE_16 = {
    "chargingProfileId": 1,
    "stackLevel": 0,
    "chargingProfilePurpose": "ChargePointMaxProfile",
    "chargingProfileKind": "Recurring",
    "recurrencyKind": "Daily",
    "chargingSchedule": SCHEDULE_16,
}
PROFILE_201 = {
    "id": 1,
    "stackLevel": 0,
    "chargingProfilePurpose": "ChargingStationMaxProfile",
    "chargingProfileKind": "Recurring",
    "recurrencyKind": "Daily",
    "chargingSchedule": [SCHEDULE_16 | {"id": 1}],
}


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_the_longest_composite_schedule_is_bounded_and_the_connection_lives(
    short_dir: Path, version: str
) -> None:
    async with serving(short_dir, version) as served:
        session = served.session
        schedule: dict[str, Any]
        if version == "1.6":
            payload = {"connectorId": 0, "csChargingProfiles": PROFILE_16}
            assert await session.call_action("SetChargingProfile", payload) == {
                "status": "Accepted"
            }  # fmt: skip
            asked = {"connectorId": 0, "duration": LONGEST}
            answer = await session.call_action("GetCompositeSchedule", asked)
            schedule = answer["chargingSchedule"]
        else:
            payload = {"evseId": 0, "chargingProfile": PROFILE_201}
            assert (await session.call_action("SetChargingProfile", payload))["status"] == (
                "Accepted"
            )  # fmt: skip
            asked = {"evseId": 0, "duration": LONGEST}
            answer = await session.call_action("GetCompositeSchedule", asked)
            schedule = answer["schedule"]
        assert answer["status"] == "Accepted"
        periods = schedule["chargingSchedulePeriod"]
        assert 100 < len(periods) <= MAX_COMPOSITE_STEPS
        assert periods[-1]["startPeriod"] < schedule["duration"] < LONGEST
        # The charge point answers the next call on the same connection.
        asked["duration"] = 3600
        assert (await session.call_action("GetCompositeSchedule", asked))["status"] == (
            "Accepted"
        )  # fmt: skip
        assert not served.task.done()


async def test_a_2_0_1_composite_schedule_cannot_end_before_it_starts(short_dir: Path) -> None:
    async with serving(short_dir, "2.0.1") as served:
        asked = {"evseId": 1, "duration": -5}
        answer = await served.session.call_action("GetCompositeSchedule", asked)
        assert answer["status"] == "Rejected"
        assert answer["statusInfo"]["reasonCode"] == "InvalidValue"
        asked = {"evseId": 1, "duration": 0}
        answer = await served.session.call_action("GetCompositeSchedule", asked)
        assert answer["status"] == "Accepted" and answer["schedule"]["duration"] == 0
