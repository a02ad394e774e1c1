"""The composite limit at chosen instants, against values worked out by hand (pure engine)."""

from __future__ import annotations

from typing import Any

import pytest

from hilsim.smart_charging import (
    ConnectorContext,
    Profile,
    ProfileRejected,
    ProfileSet,
    RateUnit,
    iso,
    parse_time,
)
from hilsim.smart_charging.engine import MAX_COMPOSITE_STEPS

# Monday 5 January 2026, 00:00 UTC: every instant below is counted from here.
T = parse_time("2026-01-05T00:00:00Z")
H = 3600


def wire(
    profile_id: int,
    periods: list[tuple[int, float] | tuple[int, float, int]],
    *,
    unit: str = "W",
    purpose: str = "TxDefaultProfile",
    kind: str = "Absolute",
    stack: int = 0,
    start: float | None = None,
    duration: int | None = None,
    recurrency: str | None = None,
    valid_from: float | None = None,
    valid_to: float | None = None,
    min_rate: float | None = None,
    transaction_id: int | None = None,
) -> dict[str, Any]:
    """A csChargingProfiles object, snake_case as the OCPP handler receives it."""
    schedule: dict[str, Any] = {
        "charging_rate_unit": unit,
        "charging_schedule_period": [
            {"start_period": p[0], "limit": p[1]} | ({"number_phases": p[2]} if len(p) > 2 else {})
            for p in periods
        ],
    }
    if start is not None:
        schedule["start_schedule"] = iso(start)
    if duration is not None:
        schedule["duration"] = duration
    if min_rate is not None:
        schedule["min_charging_rate"] = min_rate
    data: dict[str, Any] = {
        "charging_profile_id": profile_id,
        "stack_level": stack,
        "charging_profile_purpose": purpose,
        "charging_profile_kind": kind,
        "charging_schedule": schedule,
    }
    for key, value in (
        ("recurrency_kind", recurrency),
        ("valid_from", None if valid_from is None else iso(valid_from)),
        ("valid_to", None if valid_to is None else iso(valid_to)),
        ("transaction_id", transaction_id),
    ):
        if value is not None:
            data[key] = value
    return data


def profiles(*items: tuple[int, dict[str, Any]], received_at: float = T) -> ProfileSet:
    found = ProfileSet()
    for connector, data in items:
        found.install(Profile.from_wire(connector, data, received_at))
    return found


C1 = ConnectorContext(1, max_power_W=11000, voltage_V=230)
C2 = ConnectorContext(2, max_power_W=7400, voltage_V=230)


def limit_at(found: ProfileSet, t: float, *connectors: ConnectorContext, which: int = 1) -> Any:
    result = found.limits(t, connectors or (C1,), grid_voltage_V=230)
    return result[which].limit_W


# -- stacking and durations ---------------------------------------------------------------------


def test_a_higher_stack_level_wins_while_its_schedule_runs_then_hands_back() -> None:
    found = profiles(
        (0, wire(1, [(0, 10000), (H, 5000)], start=T)),
        (0, wire(2, [(0, 2000)], stack=1, start=T + H / 2, duration=H // 2)),
    )
    assert limit_at(found, T) == 10000  # stack 1 has not started yet
    assert limit_at(found, T + 1799) == 10000
    assert limit_at(found, T + 1800) == 2000
    assert limit_at(found, T + 3599) == 2000
    assert limit_at(found, T + 3600) == 5000  # stack 1 ended: stack 0's second period
    assert found.next_boundary(T, [C1]) == T + 1800
    assert found.next_boundary(T + 1800, [C1]) == T + 3600
    assert found.next_boundary(T + 3600, [C1]) is None


def test_the_connector_maximum_caps_every_profile() -> None:
    found = profiles((0, wire(1, [(0, 20000)], start=T)))
    assert limit_at(found, T) == 11000
    assert limit_at(found, T, C2, which=2) == 7400


def test_no_profile_means_no_limit_beyond_the_hardware() -> None:
    assert limit_at(ProfileSet(), T) is None


def test_an_absolute_schedule_before_its_start_does_not_apply() -> None:
    found = profiles((1, wire(1, [(0, 3000)], start=T + 60)))
    assert limit_at(found, T + 59) is None
    assert limit_at(found, T + 60) == 3000
    assert found.next_boundary(T, [C1]) == T + 60


def test_an_absolute_schedule_without_start_starts_when_it_arrived() -> None:
    found = profiles((1, wire(1, [(0, 3000), (600, 1500)])), received_at=T + 10)
    assert limit_at(found, T + 10) == 3000
    assert limit_at(found, T + 610) == 1500


# -- purposes --------------------------------------------------------------------------------


def test_tx_profile_overrides_tx_default() -> None:
    found = profiles((0, wire(1, [(0, 6000)], start=T)))
    charging = ConnectorContext(1, 11000, 230, transaction_started=T, drawing=True)
    assert limit_at(found, T + 5, charging) == 6000
    found.install(Profile.from_wire(1, wire(2, [(0, 2000)], purpose="TxProfile", start=T), T))
    assert limit_at(found, T + 5, charging) == 2000
    found.drop_transaction_profiles(1)
    assert limit_at(found, T + 5, charging) == 6000


def test_a_connector_default_overrides_the_charge_point_wide_default() -> None:
    found = profiles(
        (0, wire(1, [(0, 6000)], stack=5, start=T)),
        (2, wire(2, [(0, 3000)], stack=0, start=T)),
    )
    result = found.limits(T, [C1, C2], grid_voltage_V=230)
    assert result[1].limit_W == 6000
    assert result[2].limit_W == 3000


def test_charge_point_max_is_shared_among_drawing_connectors() -> None:
    found = profiles((0, wire(1, [(0, 10000)], purpose="ChargePointMaxProfile", start=T)))
    c1 = ConnectorContext(1, 11000, 230, transaction_started=T, drawing=True)
    c2 = ConnectorContext(2, 7400, 230, transaction_started=T, drawing=True)
    result = found.limits(T, [c1, c2], grid_voltage_V=230)
    assert (result[1].limit_W, result[2].limit_W) == (5000, 5000)
    # Alone, a connector may take all of it (up to its own maximum).
    result = found.limits(T, [c1, ConnectorContext(2, 7400, 230)], grid_voltage_V=230)
    assert (result[1].limit_W, result[2].limit_W) == (10000, 7400)


def test_what_one_connector_cannot_use_of_the_maximum_goes_to_the_other() -> None:
    found = profiles(
        (0, wire(1, [(0, 10000)], purpose="ChargePointMaxProfile", start=T)),
        (2, wire(2, [(0, 2000)], purpose="TxProfile", start=T)),
    )
    c1 = ConnectorContext(1, 11000, 230, transaction_started=T, drawing=True)
    c2 = ConnectorContext(2, 7400, 230, transaction_started=T, drawing=True)
    result = found.limits(T, [c1, c2], grid_voltage_V=230)
    assert (result[1].limit_W, result[2].limit_W) == (8000, 2000)


def test_charge_point_max_in_amperes_uses_the_grid_voltage() -> None:
    found = profiles(
        (0, wire(1, [(0, 20)], unit="A", purpose="ChargePointMaxProfile", start=T)),
    )
    c1 = ConnectorContext(1, 11000, 230, transaction_started=T, drawing=True)
    assert found.limits(T, [c1], grid_voltage_V=230)[1].limit_W == 4600


# -- recurring and relative --------------------------------------------------------------------


def daily_night_cap() -> ProfileSet:
    """7 kW all day, but 4 kW from 22:00 to 06:00 every night (from 1 January)."""
    return profiles(
        (0, wire(1, [(0, 7000)], start=T)),
        (
            0,
            wire(
                2,
                [(0, 4000)],
                kind="Recurring",
                recurrency="Daily",
                stack=1,
                start=parse_time("2026-01-01T22:00:00Z"),
                duration=8 * H,
            ),
        ),
    )


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2026-01-05T00:00:00Z", 4000),  # inside the night that began on the 4th at 22:00
        ("2026-01-05T05:59:59Z", 4000),
        ("2026-01-05T06:00:00Z", 7000),  # the night's 8 hours are over
        ("2026-01-05T21:59:59Z", 7000),
        ("2026-01-05T22:00:00Z", 4000),
        ("2026-01-06T03:00:00Z", 4000),
    ],
)
def test_daily_recurring_profile(moment: str, expected: float) -> None:
    assert limit_at(daily_night_cap(), parse_time(moment)) == expected


def test_daily_recurring_boundaries() -> None:
    found = daily_night_cap()
    assert found.next_boundary(parse_time("2026-01-05T01:00:00Z"), [C1]) == parse_time(
        "2026-01-05T06:00:00Z"
    )
    assert found.next_boundary(parse_time("2026-01-05T06:00:00Z"), [C1]) == parse_time(
        "2026-01-05T22:00:00Z"
    )


def test_a_recurring_profile_repeats_backwards_from_a_future_start() -> None:
    found = profiles(
        (
            1,
            wire(
                1,
                [(0, 4000)],
                kind="Recurring",
                recurrency="Daily",
                start=parse_time("2026-01-10T22:00:00Z"),
                duration=8 * H,
            ),
        )
    )
    assert limit_at(found, parse_time("2026-01-05T23:00:00Z")) == 4000


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2026-01-05T08:00:00Z", 1000),  # Monday, 08:00 to 18:00
        ("2026-01-05T17:59:59Z", 1000),
        ("2026-01-05T18:00:00Z", None),
        ("2026-01-06T12:00:00Z", None),  # Tuesday: not this week's window
        ("2026-01-12T12:00:00Z", 1000),  # next Monday
        ("2026-01-04T12:00:00Z", None),  # the Sunday before
    ],
)
def test_weekly_recurring_profile(moment: str, expected: float | None) -> None:
    found = profiles(
        (
            1,
            wire(
                1,
                [(0, 1000)],
                kind="Recurring",
                recurrency="Weekly",
                start=parse_time("2026-01-05T08:00:00Z"),
                duration=10 * H,
            ),
        )
    )
    assert limit_at(found, parse_time(moment)) == expected


def relative_tx_profile() -> ProfileSet:
    """16 A, then 8 A after 10 minutes, then nothing after 20 minutes of the transaction."""
    return profiles(
        (1, wire(1, [(0, 16), (600, 8), (1200, 0)], unit="A", kind="Relative", purpose="TxProfile"))
    )


@pytest.mark.parametrize(
    ("offset", "expected"),
    [(0, 3680), (599, 3680), (600, 1840), (1199, 1840), (1200, 0), (99999, 0)],
)
def test_relative_schedule_counts_from_the_transaction_start(offset: int, expected: float) -> None:
    started = T + 100
    ctx = ConnectorContext(1, 11000, 230, transaction_started=started, drawing=True)
    assert limit_at(relative_tx_profile(), started + offset, ctx) == expected


def test_relative_schedule_boundaries_follow_the_transaction() -> None:
    started = T + 100
    ctx = ConnectorContext(1, 11000, 230, transaction_started=started, drawing=True)
    found = relative_tx_profile()
    assert found.next_boundary(started, [ctx]) == started + 600
    assert found.next_boundary(started + 600, [ctx]) == started + 1200
    assert found.next_boundary(started + 1200, [ctx]) is None


def test_relative_default_without_a_transaction_shows_its_first_period_and_never_moves() -> None:
    found = profiles((1, wire(1, [(0, 5000), (60, 1000)], kind="Relative")))
    assert limit_at(found, T + 500) == 5000
    assert found.next_boundary(T, [C1]) is None


# -- validity, minimum rate, phases --------------------------------------------------------------


@pytest.mark.parametrize(("offset", "expected"), [(59, 7000), (60, 2000), (119, 2000), (120, 7000)])
def test_validity_period(offset: int, expected: float) -> None:
    found = profiles(
        (0, wire(1, [(0, 7000)], start=T)),
        (0, wire(2, [(0, 2000)], stack=1, start=T, valid_from=T + 60, valid_to=T + 120)),
    )
    assert limit_at(found, T + offset) == expected
    assert found.next_boundary(T, [C1]) == T + 60
    assert found.next_boundary(T + 60, [C1]) == T + 120


@pytest.mark.parametrize(
    ("limit", "expected"), [(1000, 0), (1399.9, 0), (1400, 1400), (2000, 2000)]
)
def test_a_limit_below_the_minimum_charging_rate_is_zero(limit: float, expected: float) -> None:
    found = profiles((1, wire(1, [(0, limit)], start=T, min_rate=1400)))
    assert limit_at(found, T) == expected


def test_minimum_rate_in_amperes() -> None:
    found = profiles((1, wire(1, [(0, 5)], unit="A", start=T, min_rate=6)))
    assert limit_at(found, T) == 0  # 5 A < 6 A
    found = profiles((1, wire(1, [(0, 6)], unit="A", start=T, min_rate=6)))
    assert limit_at(found, T) == 1380


def test_a_share_below_the_minimum_rate_goes_to_the_other_connector() -> None:
    found = profiles(
        (0, wire(1, [(0, 9000)], purpose="ChargePointMaxProfile", start=T)),
        (1, wire(2, [(0, 11000)], purpose="TxProfile", start=T, min_rate=6000)),
        (2, wire(3, [(0, 7400)], purpose="TxProfile", start=T, min_rate=1400)),
    )
    c1 = ConnectorContext(1, 11000, 230, transaction_started=T, drawing=True)
    c2 = ConnectorContext(2, 7400, 230, transaction_started=T, drawing=True)
    result = found.limits(T, [c1, c2], grid_voltage_V=230)
    # An even split (4500 each) starves connector 1 (minimum 6000): it pauses, 2 gets 7400.
    assert (result[1].limit_W, result[2].limit_W) == (0, 7400)


@pytest.mark.parametrize(
    ("connector_phases", "number_phases", "expected"),
    [
        (1, None, 3680),  # a single-phase connector uses one phase whatever the profile says
        (1, 3, 3680),
        (3, None, 11000),  # 3 x 16 A x 230 V = 11040 W, capped by the connector's 11000 W
        (3, 1, 3680),
        (3, 2, 7360),
    ],
)
def test_amperes_to_watts_with_phases(
    connector_phases: int, number_phases: int | None, expected: float
) -> None:
    period = (0, 16) if number_phases is None else (0, 16, number_phases)
    found = profiles((1, wire(1, [period], unit="A", start=T)))
    ctx = ConnectorContext(1, 11000, 230, phases=connector_phases)
    assert limit_at(found, T, ctx) == expected


# -- installing, replacing, clearing -----------------------------------------------------------


def test_same_id_or_same_stack_and_purpose_on_a_connector_replaces() -> None:
    found = profiles((1, wire(1, [(0, 1000)], stack=0)), (1, wire(2, [(0, 2000)], stack=1)))
    replaced = found.install(Profile.from_wire(1, wire(1, [(0, 3000)], stack=3), T))
    assert [p.id for p in replaced] == [1]
    replaced = found.install(Profile.from_wire(1, wire(9, [(0, 4000)], stack=1), T))
    assert [p.id for p in replaced] == [2]
    # Same stack level and purpose on another connector: both stay.
    assert found.install(Profile.from_wire(2, wire(10, [(0, 4000)], stack=1), T)) == []
    assert sorted(p.id for p in found.profiles) == [1, 9, 10]


def test_the_installed_maximum_is_enforced() -> None:
    found = profiles((1, wire(1, [(0, 1000)])))
    with pytest.raises(ProfileRejected, match="MaxChargingProfilesInstalled"):
        found.install(Profile.from_wire(1, wire(2, [(0, 1000)], stack=1), T), max_installed=1)
    # Replacing does not count as one more.
    found.install(Profile.from_wire(1, wire(1, [(0, 500)]), T), max_installed=1)


@pytest.mark.parametrize(
    ("criteria", "left"),
    [
        ({"profile_id": 2}, [1, 3, 4]),
        ({"profile_id": 2, "connector_id": 0}, [1, 3, 4]),  # the id alone decides
        ({"connector_id": 1}, [1, 4]),
        ({"connector_id": 0}, [2, 3]),
        ({"purpose": "TxDefaultProfile"}, [1]),
        ({"stack_level": 1}, [1, 2, 4]),
        ({"connector_id": 1, "purpose": "TxDefaultProfile", "stack_level": 2}, [1, 3, 4]),
        ({}, []),
    ],
)
def test_clear_by_criteria(criteria: dict[str, Any], left: list[int]) -> None:
    found = profiles(
        (0, wire(1, [(0, 9000)], purpose="ChargePointMaxProfile")),
        (1, wire(2, [(0, 1000)], stack=2)),
        (1, wire(3, [(0, 1000)], stack=1)),
        (0, wire(4, [(0, 1000)], stack=0)),
    )
    found.clear(**criteria)
    assert sorted(p.id for p in found.profiles) == left


@pytest.mark.parametrize(
    ("connector", "data", "why"),
    [
        (1, wire(1, [(0, 1)], purpose="ChargePointMaxProfile"), "connector 0"),
        (0, wire(1, [(0, 1)], purpose="TxProfile"), "not 0"),
        (1, wire(1, [(0, 1)], kind="Recurring", start=T), "recurrencyKind"),
        (1, wire(1, [(0, 1)], kind="Recurring", recurrency="Daily"), "startSchedule"),
        (1, wire(1, [(10, 1)]), "startPeriod 0"),
        (1, wire(1, [(0, 1), (60, 2), (60, 3)]), "increase"),
        (1, wire(1, [(0, -1)]), "non-negative"),
        (1, wire(1, [(0, 1)], valid_from=T + 10, valid_to=T), "validTo"),
        (1, wire(1, [(0, 1)], transaction_id=5), "only a TxProfile"),
    ],
)
def test_invalid_profiles_are_rejected(connector: int, data: dict[str, Any], why: str) -> None:
    with pytest.raises(ProfileRejected, match=why):
        Profile.from_wire(connector, data, T)


def test_wire_form_round_trips() -> None:
    data = wire(
        7,
        [(0, 16, 3), (600, 8)],
        unit="A",
        kind="Recurring",
        recurrency="Weekly",
        start=T,
        duration=3600,
        valid_from=T - 10,
        valid_to=T + 10 * H,
        min_rate=6,
        stack=4,
    )
    profile = Profile.from_wire(2, data, T)
    assert Profile.from_wire(2, profile.to_wire(), T + 999) == profile


# -- GetCompositeSchedule ------------------------------------------------------------------------


def test_composite_schedule_in_watts_and_amperes() -> None:
    found = profiles(
        (0, wire(1, [(0, 9200), (H, 4600)], start=T)),
        (0, wire(2, [(0, 2300)], stack=1, start=T + H / 2, duration=H // 2)),
    )
    schedule = found.composite_schedule(1, T, 2 * H, [C1], grid_voltage_V=230)
    assert schedule["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 9200.0},
        {"startPeriod": 1800, "limit": 2300.0},
        {"startPeriod": 3600, "limit": 4600.0},
    ]
    assert schedule["chargingRateUnit"] == "W"
    assert schedule["duration"] == 7200
    assert schedule["startSchedule"] == "2026-01-05T00:00:00.000Z"
    amps = found.composite_schedule(1, T, 2 * H, [C1], unit=RateUnit.AMPERE, grid_voltage_V=230)
    assert [p["limit"] for p in amps["chargingSchedulePeriod"]] == [40.0, 10.0, 20.0]


def test_composite_schedule_stops_at_its_duration_and_shows_the_hardware_limit() -> None:
    found = profiles((1, wire(1, [(0, 3000)], start=T + 600, duration=600)))
    schedule = found.composite_schedule(1, T, 900, [C1], grid_voltage_V=230)
    assert schedule["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 11000.0},
        {"startPeriod": 600, "limit": 3000.0},
    ]


def test_composite_schedule_for_connector_zero_is_the_grid_total() -> None:
    found = profiles(
        (0, wire(1, [(0, 15000), (H, 5000)], purpose="ChargePointMaxProfile", start=T)),
    )
    schedule = found.composite_schedule(0, T, 2 * H, [C1, C2], grid_voltage_V=230)
    # 11000 + 7400 = 18400 W of hardware, capped at 15000 W, then 5000 W.
    assert [p["limit"] for p in schedule["chargingSchedulePeriod"]] == [15000.0, 5000.0]


def test_composite_schedule_of_a_relative_default_starts_at_the_request() -> None:
    found = profiles((1, wire(1, [(0, 5000), (60, 1000)], kind="Relative")))
    schedule = found.composite_schedule(1, T + 30, 120, [C1], grid_voltage_V=230)
    assert schedule["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 5000.0},
        {"startPeriod": 60, "limit": 1000.0},
    ]


def test_a_composite_schedule_of_any_length_stays_bounded_and_says_how_far_it_reaches() -> None:
    """68 years of a night cap would be 50,000 periods: a frame the CSMS closes the connection
    over. It stops at the engine's bound, its duration where the next period would start."""
    found = daily_night_cap()
    schedule = found.composite_schedule(1, T, 2**31 - 1, [C1], grid_voltage_V=230)
    periods = schedule["chargingSchedulePeriod"]
    assert len(periods) == MAX_COMPOSITE_STEPS  # each boundary changes the limit here
    assert periods[0] == {"startPeriod": 0, "limit": 4000.0}  # inside the night at T
    last = periods[-1]["startPeriod"]
    following = found.next_boundary(T + last, [C1])
    assert following is not None and schedule["duration"] == following - T
    assert schedule["duration"] < 2**31 - 1
    # What it covers is exactly what a request of that duration gets.
    again = found.composite_schedule(1, T, schedule["duration"], [C1], grid_voltage_V=230)
    assert again == schedule
