"""Smart charging end to end: the built-in CSMS sends profiles, the charge point's power follows."""

from __future__ import annotations

from typing import Any

import pytest

from hilsim.evse import events
from hilsim.smart_charging import iso

from conftest import TAG, Bench, make_settings, start_service, stop_service


def profile(
    profile_id: int,
    periods: list[tuple[int, float]],
    *,
    purpose: str = "TxDefaultProfile",
    kind: str = "Relative",
    stack: int = 0,
    unit: str = "W",
    start: str | None = None,
    transaction_id: int | None = None,
) -> dict[str, Any]:
    """A csChargingProfiles object, camelCase as on the wire."""
    schedule: dict[str, Any] = {
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [{"startPeriod": s, "limit": limit} for s, limit in periods],
    }
    if start is not None:
        schedule["startSchedule"] = start
    data: dict[str, Any] = {
        "chargingProfileId": profile_id,
        "stackLevel": stack,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": schedule,
    }
    if transaction_id is not None:
        data["transactionId"] = transaction_id
    return data


def power_is(watts: float) -> Any:
    def match(payload: dict[str, Any]) -> bool:
        return any(
            v.get("measurand") == "Power.Active.Import" and float(v["value"]) == watts
            for mv in payload["meterValue"]
            for v in mv["sampledValue"]
        )

    return match


def limits(bench: Bench) -> list[float | None]:
    return [c["limit_W"] for c in bench.service.charger.snapshot()["connectors"]]


def installed(bench: Bench) -> list[int]:
    return sorted(p["id"] for p in bench.service.charger.snapshot()["smart_charging"]["profiles"])


async def test_meter_values_follow_the_composite_limit(bench: Bench) -> None:
    session = bench.session
    await session.change_configuration("MeterValueSampleInterval", "1")
    assert await session.send_charging_profile(0, profile(1, [(0, 6000)], stack=0)) == "Accepted"
    # A higher stack level on the connector itself wins over the charge point wide default.
    assert await session.send_charging_profile(1, profile(2, [(0, 4000)], stack=3)) == "Accepted"
    tx = await bench.start_local(1)
    await session.wait_for("MeterValues", power_is(4000))
    # A TxProfile for the transaction overrides both; a ChargePointMaxProfile caps it further.
    tx_profile = profile(3, [(0, 3000)], purpose="TxProfile", transaction_id=tx)
    assert await session.send_charging_profile(1, tx_profile) == "Accepted"
    await session.wait_for("MeterValues", power_is(3000))
    cap = profile(4, [(0, 2500)], purpose="ChargePointMaxProfile")
    assert await session.send_charging_profile(0, cap) == "Accepted"
    await session.wait_for("MeterValues", power_is(2500))
    assert limits(bench) == [2500, 2500]


async def test_a_period_boundary_changes_the_power_without_a_message(bench: Bench) -> None:
    """A Relative TxProfile: 5 kW for the transaction's first second, then 2 kW."""
    session = bench.session
    await session.change_configuration("MeterValueSampleInterval", "1")
    tx = await bench.start_local(1)
    lowered = bench.next_event(events.SetPowerLimit, connector=1)
    step = profile(7, [(0, 5000), (1, 2000)], purpose="TxProfile", transaction_id=tx)
    calls_before = len(session.received)
    assert await session.send_charging_profile(1, step) == "Accepted"
    outcome = await lowered
    assert outcome.state.power_limit_W in (5000, 2000)
    await session.wait_for("MeterValues", power_is(2000))
    # Nothing but the charge point's own messages passed meanwhile: the timer did it.
    assert {m.action for m in session.received[calls_before:]} <= {
        "MeterValues",
        "StatusNotification",
        "Heartbeat",
    }
    assert bench.service.charger.snapshot()["smart_charging"]["next_change"] is None


async def test_a_zero_period_suspends_and_the_next_resumes(bench: Bench) -> None:
    tx = await bench.start_local(1)
    now = bench.service.charger.wall.now().timestamp()
    pause = profile(
        8, [(0, 0), (2, 3000)], purpose="TxProfile", kind="Absolute", start=iso(now),
        transaction_id=tx,
    )  # fmt: skip
    assert await bench.session.send_charging_profile(1, pause) == "Accepted"
    await bench.status(1, "SuspendedEVSE")
    await bench.status(1, "Charging")  # two seconds later, by the schedule alone


async def test_charge_point_maximum_is_shared_between_charging_connectors(bench: Bench) -> None:
    cap = profile(1, [(0, 6000)], purpose="ChargePointMaxProfile")
    assert await bench.session.send_charging_profile(0, cap) == "Accepted"
    assert limits(bench) == [6000, 6000]  # each alone could take it all
    await bench.start_local(1)
    assert limits(bench) == [6000, 6000]
    await bench.start_local(2)
    assert limits(bench) == [3000, 3000]


async def test_tx_profile_goes_with_its_transaction(bench: Bench) -> None:
    session = bench.session
    assert await session.send_charging_profile(0, profile(1, [(0, 5000)])) == "Accepted"
    tx = await bench.start_local(1)
    assert (
        await session.send_charging_profile(
            1, profile(2, [(0, 1500)], purpose="TxProfile", transaction_id=tx)
        )
        == "Accepted"
    )
    assert limits(bench)[0] == 1500
    # A TxProfile naming another transaction, or on connector 0, is refused.
    wrong = profile(3, [(0, 1000)], purpose="TxProfile", transaction_id=tx + 1)
    assert await session.send_charging_profile(1, wrong) == "Rejected"
    on_zero = profile(3, [(0, 1000)], purpose="TxProfile")
    assert await session.send_charging_profile(0, on_zero) == "Rejected"
    assert await session.remote_stop(tx) == "Accepted"
    await bench.status(1, "Finishing")
    await session.wait_for("StopTransaction")
    assert installed(bench) == [1]
    assert limits(bench)[0] == 5000


async def test_remote_start_with_a_charging_profile(bench: Bench) -> None:
    session = bench.session
    tx_profile = profile(5, [(0, 16)], purpose="TxProfile", unit="A")
    assert await session.remote_start(TAG, connector_id=1, charging_profile=tx_profile) == (
        "Accepted"
    )
    assert limits(bench)[0] == 3680
    await bench.ctl("plug", 1)
    start = await session.wait_for("StartTransaction")
    await bench.status(1, "Charging")
    assert limits(bench)[0] == 3680
    assert await session.remote_stop(bench.service.charger.transaction_id(1)) == "Accepted"
    await session.wait_for("StopTransaction", lambda p: p["transactionId"] > 0)
    assert start["connectorId"] == 1
    assert installed(bench) == []
    assert limits(bench)[0] is None
    # Not a TxProfile: refused, and nothing starts.
    bad = profile(6, [(0, 16)], purpose="TxDefaultProfile", unit="A")
    assert await session.remote_start(TAG, connector_id=2, charging_profile=bad) == "Rejected"


async def test_get_composite_schedule(bench: Bench) -> None:
    session = bench.session
    two_step = profile(1, [(0, 6900), (600, 2300)], stack=1)
    assert await session.send_charging_profile(1, two_step) == "Accepted"
    reply = await session.get_composite_schedule(1, 1200, "W")
    assert reply["status"] == "Accepted" and reply["connectorId"] == 1
    schedule = reply["chargingSchedule"]
    assert schedule["chargingRateUnit"] == "W" and schedule["duration"] == 1200
    assert schedule["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 6900.0},
        {"startPeriod": 600, "limit": 2300.0},
    ]
    amps = await session.get_composite_schedule(1, 1200, "A")
    assert [p["limit"] for p in amps["chargingSchedule"]["chargingSchedulePeriod"]] == [30, 10]
    # Connector 2 has no profile: its hardware maximum; connector 0 the sum of both.
    two = await session.get_composite_schedule(2, 300)
    assert two["chargingSchedule"]["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 7400}]
    whole = await session.get_composite_schedule(0, 300)
    assert whole["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == 6900 + 7400
    assert (await session.get_composite_schedule(9, 300))["status"] == "Rejected"


def sampled(payload: dict[str, Any], measurand: str) -> dict[str | None, str]:
    """Phase (None: the total) -> value of one measurand in a MeterValues payload."""
    return {
        v.get("phase"): v["value"]
        for mv in payload["meterValue"]
        for v in mv["sampledValue"]
        if v.get("measurand") == measurand
    }


async def test_a_three_phase_connector_takes_amperes_per_phase(bench_factory: Any) -> None:
    bench: Bench = await bench_factory(phases=3)  # connector 1: 3 phases; connector 2: 1
    for connector in (0, 1, 2):
        await bench.status(connector, "Available")
    session = bench.session
    await session.change_configuration("MeterValueSampleInterval", "1")
    measurands = "Power.Active.Import,Current.Import,Current.Offered"
    assert await session.change_configuration("MeterValuesSampledData", measurands) == "Accepted"
    # 10 A without numberPhases: OCPP 1.6 assumes 3, as many as each connector has.
    assert await session.send_charging_profile(0, profile(1, [(0, 10)], unit="A")) == "Accepted"
    assert limits(bench) == [10 * 230 * 3, 10 * 230 * 1]
    await bench.start_local(1)
    values = await session.wait_for("MeterValues", power_is(6900))
    assert sampled(values, "Power.Active.Import") == {
        None: "6900.0", "L1": "2300.0", "L2": "2300.0", "L3": "2300.0"
    }
    assert sampled(values, "Current.Import") == {
        None: "10.00", "L1": "10.00", "L2": "10.00", "L3": "10.00"
    }
    assert sampled(values, "Current.Offered") == {None: "10.00"}
    # numberPhases 1 on the same connector: one phase of 10 A.
    one = profile(2, [(0, 10)], unit="A", stack=1)
    one["chargingSchedule"]["chargingSchedulePeriod"][0]["numberPhases"] = 1
    assert await session.send_charging_profile(1, one) == "Accepted"
    values = await session.wait_for("MeterValues", power_is(2300))
    assert sampled(values, "Current.Import")[None] == "3.33"  # 2300 W over three phases
    assert sampled(values, "Current.Offered") == {None: "3.33"}
    amps = await session.get_composite_schedule(1, 300, "A")
    assert amps["chargingSchedule"]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 3.3}
    ]
    assert bench.service.charger.snapshot()["connectors"][0]["phases"] == 3


@pytest.mark.parametrize(
    ("criteria", "status", "left"),
    [
        ({"profile_id": 2}, "Accepted", [1, 3]),
        ({"profile_id": 99}, "Unknown", [1, 2, 3]),
        ({"connector_id": 1}, "Accepted", [1, 3]),
        ({"connector_id": 0}, "Accepted", [2]),
        ({"purpose": "ChargePointMaxProfile"}, "Accepted", [2, 3]),
        ({"stack_level": 4}, "Accepted", [1, 2]),
        ({"connector_id": 2}, "Unknown", [1, 2, 3]),
        ({}, "Accepted", []),
    ],
)
async def test_clear_charging_profile(
    bench: Bench, criteria: dict[str, Any], status: str, left: list[int]
) -> None:
    session = bench.session
    cap = profile(1, [(0, 9000)], purpose="ChargePointMaxProfile")
    assert await session.send_charging_profile(0, cap) == "Accepted"
    assert await session.send_charging_profile(1, profile(2, [(0, 4000)], stack=1)) == "Accepted"
    assert await session.send_charging_profile(0, profile(3, [(0, 5000)], stack=4)) == "Accepted"
    assert limits(bench) == [4000, 5000]
    assert await session.clear_charging_profile(**criteria) == status
    assert installed(bench) == left
    expected = {
        (): [None, None],
        (1,): [9000, 7400],
        (2,): [4000, None],
        (2, 3): [4000, 5000],
        (1, 3): [5000, 5000],
        (1, 2): [4000, 7400],
        (1, 2, 3): [4000, 5000],
    }[tuple(left)]
    assert limits(bench) == expected


async def test_profiles_beyond_the_keys_limits_are_rejected(bench: Bench) -> None:
    session = bench.session
    config = await session.get_configuration(
        [
            "ChargeProfileMaxStackLevel",
            "ChargingScheduleAllowedChargingRateUnit",
            "ChargingScheduleMaxPeriods",
            "MaxChargingProfilesInstalled",
        ]
    )
    values = {e["key"]: (e["value"], e["readonly"]) for e in config["configurationKey"]}
    assert values == {
        "ChargeProfileMaxStackLevel": ("10", True),
        "ChargingScheduleAllowedChargingRateUnit": ("Current,Power", True),
        "ChargingScheduleMaxPeriods": ("24", True),
        "MaxChargingProfilesInstalled": ("20", True),
    }
    assert await session.send_charging_profile(1, profile(1, [(0, 1)], stack=11)) == "Rejected"
    many = profile(1, [(60 * i, 1000) for i in range(25)])
    assert await session.send_charging_profile(1, many) == "Rejected"
    for n in range(20):
        assert await session.send_charging_profile(
            1, profile(n + 1, [(0, 1000)], stack=n % 11)
        ) in ("Accepted",)
    assert len(installed(bench)) == 11  # same stack level and purpose on a connector replaces
    for n in range(9):
        assert await session.send_charging_profile(2, profile(50 + n, [(0, 1)], stack=n)) == (
            "Accepted"
        )
    assert await session.send_charging_profile(0, profile(99, [(0, 1)], stack=0)) == "Rejected"
    assert await session.change_configuration("MaxChargingProfilesInstalled", "99") == "Rejected"


async def test_profiles_survive_a_restart(csms, short_dir) -> None:
    settings = make_settings(short_dir, csms.url)
    service, task = await start_service(settings)
    try:
        session = await csms.wait_for_charge_point(timeout=5)
        await session.wait_for("BootNotification")
        daily = profile(
            1,
            [(0, 4000)],
            kind="Recurring",
            start="2026-01-01T00:00:00Z",
        )
        daily["recurrencyKind"] = "Daily"
        assert await session.send_charging_profile(0, daily) == "Accepted"
        cap = profile(2, [(0, 3000)], purpose="ChargePointMaxProfile", kind="Absolute")
        cap["chargingSchedule"]["startSchedule"] = iso(0)
        assert await session.send_charging_profile(0, cap) == "Accepted"
    finally:
        await stop_service(service, task)

    service, task = await start_service(settings)
    try:
        session = await csms.wait_for_charge_point(timeout=5)
        await session.wait_for("BootNotification")
        snapshot = service.charger.snapshot()
        assert sorted(p["id"] for p in snapshot["smart_charging"]["profiles"]) == [1, 2]
        assert [c["limit_W"] for c in snapshot["connectors"]] == [3000, 3000]
        reply = await session.get_composite_schedule(1, 60)
        assert reply["chargingSchedule"]["chargingSchedulePeriod"] == [
            {"startPeriod": 0, "limit": 3000}
        ]
    finally:
        await stop_service(service, task)
