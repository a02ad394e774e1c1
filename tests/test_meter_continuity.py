"""The reported energy register never goes backwards, whatever the meter's own counter does."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hilsim.meter.continuity import MonotonicRegister


def test_the_meters_register_is_reported_as_it_is() -> None:
    reg = MonotonicRegister("C1")
    assert [reg.update(v, t) for t, v in enumerate([1000.0, 1003.0, 1006.0])] == [
        1000.0,
        1003.0,
        1006.0,
    ]
    assert reg.offset_Wh == 0.0 and reg.discontinuities == 0


def test_a_counter_reset_continues_from_the_last_reported(caplog: pytest.LogCaptureFixture) -> None:
    reg = MonotonicRegister("C1 meter energy_Wh")
    reg.update(5000.0, 0.0)
    with caplog.at_level(logging.WARNING, "hilsim.meter.continuity"):
        assert reg.update(0.0, 1.0) == 5000.0
    assert "went back from 5000.0 to 0.0 Wh" in caplog.text
    assert reg.update(2.5, 2.0) == 5002.5  # and counts on from there
    assert reg.discontinuities == 1


def test_a_swap_to_a_meter_with_a_higher_count_is_not_consumption() -> None:
    reg = MonotonicRegister("C1")
    reg.update(5000.0, 0.0)
    assert reg.update(900_000.0, 1.0) == 5000.0  # 895 kWh in one second: no load does that
    assert reg.update(900_003.0, 2.0) == 5003.0


def test_a_long_gap_makes_a_big_step_plausible() -> None:
    reg = MonotonicRegister("C1")
    reg.update(5000.0, 0.0)
    # Ten minutes without a reading at 11 kW: 1833 Wh is real energy and must be billed.
    assert reg.update(6833.0, 600.0) == 6833.0


def test_float_wobble_is_not_a_reset() -> None:
    reg = MonotonicRegister("C1")
    reg.update(5000.0, 0.0)
    assert reg.update(4999.9, 1.0) == 5000.0
    assert reg.discontinuities == 0 and reg.offset_Wh == 0.0


def test_a_reset_while_stopped_continues_from_the_stored_register() -> None:
    reg = MonotonicRegister("C1", floor_Wh=7000.0)
    assert reg.update(10.0, 0.0) == 7000.0
    assert reg.update(12.0, 1.0) == 7002.0
    fresh = MonotonicRegister("C1", floor_Wh=7000.0)
    assert fresh.update(7100.0, 0.0) == 7100.0  # above the floor: the real register
    assert fresh.offset_Wh == 0.0


@given(
    st.lists(st.tuples(st.floats(0.0, 1e9, allow_nan=False), st.floats(0.0, 3600.0)), max_size=40)
)
def test_never_decreasing_whatever_the_meter_sends(steps: list[tuple[float, float]]) -> None:
    reg = MonotonicRegister("C1")
    now, last = 0.0, -1.0
    for raw, dt in steps:
        now += dt
        reported = reg.update(raw, now)
        assert reported >= last
        last = reported
