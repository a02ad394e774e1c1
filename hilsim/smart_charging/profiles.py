"""Charging profiles as data: the wire form checked and normalised, and where a profile's
schedule stands at any instant (its validity, its period, its next change).

Part of :mod:`hilsim.smart_charging`, pure like the rest of it; the rules are in its docstring.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from hilsim.clock import parse_iso, utc_iso

DAY_S = 86_400
WEEK_S = 7 * DAY_S


class Purpose(StrEnum):
    CHARGE_POINT_MAX = "ChargePointMaxProfile"
    TX_DEFAULT = "TxDefaultProfile"
    TX = "TxProfile"


class Kind(StrEnum):
    ABSOLUTE = "Absolute"
    RECURRING = "Recurring"
    RELATIVE = "Relative"


class Recurrency(StrEnum):
    DAILY = "Daily"
    WEEKLY = "Weekly"


class RateUnit(StrEnum):
    AMPERE = "A"
    WATT = "W"


class ProfileRejected(ValueError):
    """A SetChargingProfile the charge point answers with Rejected; the message says why."""


@dataclass(frozen=True, slots=True)
class Period:
    start_s: int
    limit: float
    number_phases: int | None = None


@dataclass(frozen=True, slots=True)
class Schedule:
    rate_unit: RateUnit
    periods: tuple[Period, ...]
    duration_s: int | None = None
    start: float | None = None  # epoch seconds (UTC)
    min_rate: float | None = None  # in rate_unit


@dataclass(frozen=True, slots=True)
class Profile:
    """One installed charging profile, normalised (absolute start filled in, times as epochs)."""

    id: int
    connector_id: int
    stack_level: int
    purpose: Purpose
    kind: Kind
    schedule: Schedule
    recurrency: Recurrency | None = None
    valid_from: float | None = None
    valid_to: float | None = None
    transaction_id: int | None = None  # the CSMS's id, as the profile named it (TxProfile)

    # -- wire form ---------------------------------------------------------------------------

    @classmethod
    def from_wire(cls, connector_id: int, data: Mapping[str, Any], received_at: float) -> Profile:
        """Parse a csChargingProfiles object (snake_case keys, as the OCPP handlers see it).

        Raises ProfileRejected for what the schema lets through but OCPP forbids.
        """
        try:
            sched = data["charging_schedule"]
            periods = tuple(
                Period(
                    int(p["start_period"]),
                    float(p["limit"]),
                    None if p.get("number_phases") is None else int(p["number_phases"]),
                )
                for p in sched["charging_schedule_period"]
            )
            schedule = Schedule(
                rate_unit=RateUnit(sched["charging_rate_unit"]),
                periods=periods,
                duration_s=_opt_int(sched.get("duration")),
                start=_opt_time(sched.get("start_schedule")),
                min_rate=_opt_float(sched.get("min_charging_rate")),
            )
            kind = Kind(data["charging_profile_kind"])
            recurrency = data.get("recurrency_kind")
            profile = cls(
                id=int(data["charging_profile_id"]),
                connector_id=int(connector_id),
                stack_level=int(data["stack_level"]),
                purpose=Purpose(data["charging_profile_purpose"]),
                kind=kind,
                schedule=schedule,
                recurrency=None if recurrency is None else Recurrency(recurrency),
                valid_from=_opt_time(data.get("valid_from")),
                valid_to=_opt_time(data.get("valid_to")),
                transaction_id=_opt_int(data.get("transaction_id")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileRejected(f"malformed charging profile: {exc}") from None
        return profile._normalised(received_at)

    def _normalised(self, received_at: float) -> Profile:
        s = self.schedule
        if not s.periods:
            raise ProfileRejected("a charging schedule needs at least one period")
        if s.periods[0].start_s != 0:
            raise ProfileRejected("the first schedule period must have startPeriod 0")
        starts = [p.start_s for p in s.periods]
        if any(b <= a for a, b in itertools.pairwise(starts)):
            raise ProfileRejected("startPeriod values must increase strictly")
        for p in s.periods:
            if p.limit < 0 or not math.isfinite(p.limit):
                raise ProfileRejected(f"limit {p.limit:g} is not a non-negative number")
            if p.number_phases is not None and not 1 <= p.number_phases <= 3:
                raise ProfileRejected(f"numberPhases {p.number_phases} is not 1, 2 or 3")
        if s.duration_s is not None and s.duration_s < 0:
            raise ProfileRejected("duration must not be negative")
        if s.min_rate is not None and s.min_rate < 0:
            raise ProfileRejected("minChargingRate must not be negative")
        if self.stack_level < 0:
            raise ProfileRejected("stackLevel must not be negative")
        if (
            self.valid_from is not None
            and self.valid_to is not None
            and self.valid_to <= self.valid_from
        ):
            raise ProfileRejected("validTo must be after validFrom")
        if self.purpose == Purpose.CHARGE_POINT_MAX:
            if self.connector_id != 0:
                raise ProfileRejected("a ChargePointMaxProfile belongs on connector 0")
            if self.transaction_id is not None:
                raise ProfileRejected("a ChargePointMaxProfile names no transaction")
        if self.purpose == Purpose.TX and self.connector_id == 0:
            raise ProfileRejected("a TxProfile needs a connector, not 0")
        if self.purpose != Purpose.TX and self.transaction_id is not None:
            raise ProfileRejected("only a TxProfile may name a transactionId")
        if self.kind == Kind.RECURRING:
            if self.recurrency is None:
                raise ProfileRejected("a Recurring profile needs recurrencyKind")
            if s.start is None:
                raise ProfileRejected("a Recurring profile needs startSchedule")
        if self.kind == Kind.ABSOLUTE and s.start is None:
            # OCPP leaves it open; the moment it arrived is what every charger we know uses.
            return replace(self, schedule=replace(s, start=received_at))
        if self.kind == Kind.RELATIVE and s.start is not None:
            return replace(self, schedule=replace(s, start=None))  # meaningless there: ignored
        return self

    def to_wire(self) -> dict[str, Any]:
        """The snake_case form `from_wire` reads back (how the store keeps it)."""
        s = self.schedule
        schedule: dict[str, Any] = {
            "charging_rate_unit": str(s.rate_unit),
            "charging_schedule_period": [
                {"start_period": p.start_s, "limit": p.limit}
                | ({} if p.number_phases is None else {"number_phases": p.number_phases})
                for p in s.periods
            ],
        }
        if s.duration_s is not None:
            schedule["duration"] = s.duration_s
        if s.start is not None:
            schedule["start_schedule"] = iso(s.start)
        if s.min_rate is not None:
            schedule["min_charging_rate"] = s.min_rate
        data: dict[str, Any] = {
            "charging_profile_id": self.id,
            "stack_level": self.stack_level,
            "charging_profile_purpose": str(self.purpose),
            "charging_profile_kind": str(self.kind),
            "charging_schedule": schedule,
        }
        for key, value in (
            ("recurrency_kind", self.recurrency and str(self.recurrency)),
            ("valid_from", self.valid_from is not None and iso(self.valid_from)),
            ("valid_to", self.valid_to is not None and iso(self.valid_to)),
            ("transaction_id", self.transaction_id),
        ):
            if value is not None and value is not False:
                data[key] = value
        return data

    # -- time ----------------------------------------------------------------------------------

    def valid_at(self, t: float) -> bool:
        return (self.valid_from is None or self.valid_from <= t) and (
            self.valid_to is None or t < self.valid_to
        )

    def anchor(self, t: float, relative_start: float | None) -> float | None:
        """When the schedule run that covers t started; None when it has no start (yet)."""
        s = self.schedule
        if self.kind == Kind.RELATIVE:
            return relative_start
        assert s.start is not None  # normalised
        if self.kind == Kind.ABSOLUTE:
            return s.start
        cycle = DAY_S if self.recurrency == Recurrency.DAILY else WEEK_S
        return s.start + math.floor((t - s.start) / cycle) * cycle

    def period_at(self, t: float, relative_start: float | None) -> Period | None:
        """The schedule period in force at t, or None when the profile does not apply then."""
        if not self.valid_at(t):
            return None
        anchor = self.anchor(t, relative_start)
        if anchor is None:
            return None
        offset = t - anchor
        duration = self.schedule.duration_s
        if offset < 0 or (duration is not None and offset >= duration):
            return None
        current = None
        for period in self.schedule.periods:
            if period.start_s > offset:
                break
            current = period
        return current

    def boundaries(self, t: float, relative_start: float | None) -> list[float]:
        """Instants after t at which what this profile says may change."""
        found = [b for b in (self.valid_from, self.valid_to) if b is not None and b > t]
        anchor = self.anchor(t, relative_start)
        if anchor is None:
            return found
        anchors = [anchor]
        if self.kind == Kind.RECURRING:
            anchors.append(anchor + (DAY_S if self.recurrency == Recurrency.DAILY else WEEK_S))
        for a in anchors:
            found += [a + p.start_s for p in self.schedule.periods if a + p.start_s > t]
            if self.schedule.duration_s is not None and a + self.schedule.duration_s > t:
                found.append(a + self.schedule.duration_s)
        return found


# -- time helpers ------------------------------------------------------------------------------


def parse_time(text: str) -> float:
    """An OCPP dateTime to epoch seconds (the engine computes in seconds); naive is UTC."""
    return parse_iso(text).timestamp()


def iso(epoch: float) -> str:
    return utc_iso(datetime.fromtimestamp(epoch, UTC))


def _opt_time(value: Any) -> float | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected a dateTime string, got {value!r}")
    return parse_time(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
