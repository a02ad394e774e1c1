"""OCPP 1.6 smart charging as data: charging profiles, and the limit they impose at any instant.

Pure on purpose (stdlib only, no IO, no clock of its own): the charger asks "what is the limit at
time t, and when does it next change?", and this module answers from the installed profiles, so
every rule below is tested at chosen instants against values worked out by hand.

The rules, from OCPP 1.6 edition 2 (sections 3.13 and 5.16/7.7-7.10) with its errata; where the
specification leaves a choice, the choice a real charger makes is said here:

* Within one purpose the active profile with the highest ``stackLevel`` wins. A profile is active
  at t when t is inside its validity period (``validFrom`` <= t < ``validTo``) *and* its schedule
  has a period at t (started, not past ``duration``). A higher stack level whose schedule ended
  therefore hands over to the next one down, as OCPP 2.0.1 later wrote down.
* For a connector, a TxProfile overrides the TxDefaultProfile, and a TxDefaultProfile installed
  on the connector overrides one installed on connector 0. A TxProfile lives only as long as its
  transaction: the charger installs it for a running transaction (or the one a RemoteStart is
  about to start) and drops it when that ends.
* The ChargePointMaxProfile caps the whole charge point. It is shared among the connectors that
  are in a transaction by water-filling: none gets more than it can use (its own limit), the
  rest is split evenly. A connector whose share falls below its schedule's ``minChargingRate``
  gets 0 instead (charging below the rate the EV can use is pointless) and its share goes to
  the others.
* The connector's own ``max_power_W`` always caps the result.
* Limits in A are per phase: W = A x voltage x phases, where phases is the smaller of the
  period's ``numberPhases`` (3 when absent, as the specification says) and the phases the
  connector has.
* Absolute schedules start at ``startSchedule`` (the moment the profile arrived when absent).
  Recurring ones repeat every day or week counted from ``startSchedule``, also backwards, so a
  daily profile whose ``startSchedule`` is tomorrow already applies today. Relative ones start
  with the connector's transaction; without a transaction they are evaluated as if it started
  now (so their first period shows, and GetCompositeSchedule answers what a transaction starting
  at the request would get).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

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


@dataclass(frozen=True, slots=True)
class ConnectorContext:
    """What the engine needs to know about one connector at the moment it is asked."""

    connector_id: int
    max_power_W: float
    voltage_V: float
    phases: int = 1
    #: wall-clock start of its running transaction; None without one
    transaction_started: float | None = None
    #: in a transaction, so it takes a share of the ChargePointMaxProfile
    drawing: bool = False

    @property
    def in_transaction(self) -> bool:
        return self.transaction_started is not None


@dataclass(frozen=True, slots=True)
class Limit:
    """The limit in force on one connector: None where no profile applies (max_power_W only)."""

    limit_W: float | None
    min_W: float | None = None
    sources: tuple[int, ...] = ()  # ids of the profiles that set it, for logs and `ctl status`


def to_watts(value: float, unit: RateUnit, voltage_V: float, phases: int) -> float:
    return value if unit == RateUnit.WATT else value * voltage_V * phases


def effective_phases(period: Period, connector_phases: int) -> int:
    """numberPhases defaults to 3 (OCPP 1.6); a connector cannot use more phases than it has."""
    return max(1, min(period.number_phases or 3, connector_phases))


@dataclass(slots=True)
class ProfileSet:
    """The installed profiles and the rules that combine them. Mutable; no IO."""

    profiles: list[Profile] = field(default_factory=list)

    # -- installing and clearing --------------------------------------------------------------

    def install(self, profile: Profile, *, max_installed: int | None = None) -> list[Profile]:
        """Add a profile; returns those it replaced.

        OCPP 1.6: a profile replaces the one with the same id, and the one with the same
        stackLevel and purpose on the same connector. ProfileRejected when more than
        ``max_installed`` would remain.
        """
        replaced = [
            p
            for p in self.profiles
            if p.id == profile.id
            or (
                p.connector_id == profile.connector_id
                and p.purpose == profile.purpose
                and p.stack_level == profile.stack_level
            )
        ]
        kept = [p for p in self.profiles if p not in replaced]
        if max_installed is not None and len(kept) + 1 > max_installed:
            raise ProfileRejected(
                f"{len(kept)} profiles are installed already (MaxChargingProfilesInstalled "
                f"{max_installed})"
            )
        self.profiles = [*kept, profile]
        return replaced

    def clear(
        self,
        profile_id: int | None = None,
        connector_id: int | None = None,
        purpose: Purpose | str | None = None,
        stack_level: int | None = None,
    ) -> list[Profile]:
        """ClearChargingProfile: the id alone decides when given, else every given criterion.

        Connector 0 as a criterion means the profiles installed on connector 0 (as OCPP says of
        ChargePointMaxProfile and connector-0 TxDefaultProfiles), not every connector.
        """
        if profile_id is not None:
            doomed = [p for p in self.profiles if p.id == profile_id]
        else:
            doomed = [
                p
                for p in self.profiles
                if (connector_id is None or p.connector_id == connector_id)
                and (purpose is None or p.purpose == purpose)
                and (stack_level is None or p.stack_level == stack_level)
            ]
        self.profiles = [p for p in self.profiles if p not in doomed]
        return doomed

    def drop_transaction_profiles(self, connector_id: int) -> list[Profile]:
        """A transaction ended: its TxProfiles go with it."""
        return self.clear(connector_id=connector_id, purpose=Purpose.TX)

    # -- what applies --------------------------------------------------------------------------

    def _winner(
        self, candidates: Iterable[Profile], t: float, relative_start: float | None
    ) -> tuple[Profile, Period] | None:
        best: tuple[Profile, Period] | None = None
        for profile in candidates:
            period = profile.period_at(t, relative_start)
            if period is not None and (best is None or profile.stack_level > best[0].stack_level):
                best = (profile, period)
        return best

    def _tx_level(
        self, ctx: ConnectorContext, t: float, anchor_now: float
    ) -> tuple[Profile, Period] | None:
        """The TxProfile or TxDefaultProfile in force on one connector (before any cap)."""
        relative = ctx.transaction_started if ctx.in_transaction else anchor_now
        # TxProfiles exist only while their transaction runs (or, from a RemoteStart, is about to
        # start): the charger drops them when it ends, so any installed one applies.
        tx = [
            p
            for p in self.profiles
            if p.purpose == Purpose.TX and p.connector_id == ctx.connector_id
        ]
        if (won := self._winner(tx, t, relative)) is not None:
            return won
        for connector in (ctx.connector_id, 0):
            defaults = [
                p
                for p in self.profiles
                if p.purpose == Purpose.TX_DEFAULT and p.connector_id == connector
            ]
            if (won := self._winner(defaults, t, relative)) is not None:
                return won
        return None

    def _charge_point_max(self, t: float, anchor_now: float) -> tuple[Profile, Period] | None:
        caps = [p for p in self.profiles if p.purpose == Purpose.CHARGE_POINT_MAX]
        return self._winner(caps, t, anchor_now)

    def _charge_point_max_W(
        self, t: float, anchor_now: float, grid_voltage_V: float, grid_phases: int
    ) -> tuple[Profile, float] | None:
        """The ChargePointMaxProfile in force and its limit in W (an A limit is on the supply)."""
        cap = self._charge_point_max(t, anchor_now)
        if cap is None:
            return None
        profile, period = cap
        phases = effective_phases(period, grid_phases)
        return profile, to_watts(period.limit, profile.schedule.rate_unit, grid_voltage_V, phases)

    def limits(
        self,
        t: float,
        connectors: Sequence[ConnectorContext],
        *,
        grid_voltage_V: float,
        grid_phases: int = 1,
        anchor_now: float | None = None,
    ) -> dict[int, Limit]:
        """The composite limit of every connector at t.

        ``anchor_now`` is where Relative schedules start for connectors without a transaction
        (default: t itself, i.e. their first period).
        """
        anchor = t if anchor_now is None else anchor_now
        own: dict[int, Limit] = {}
        for ctx in connectors:
            won = self._tx_level(ctx, t, anchor)
            if won is None:
                own[ctx.connector_id] = Limit(None)
                continue
            profile, period = won
            phases = effective_phases(period, ctx.phases)
            unit = profile.schedule.rate_unit
            watts = to_watts(period.limit, unit, ctx.voltage_V, phases)
            minimum = profile.schedule.min_rate
            min_w = None if minimum is None else to_watts(minimum, unit, ctx.voltage_V, phases)
            own[ctx.connector_id] = Limit(min(watts, ctx.max_power_W), min_w, (profile.id,))
        cap = self._charge_point_max_W(t, anchor, grid_voltage_V, grid_phases)
        if cap is None:
            return {cid: _respect_minimum(limit) for cid, limit in own.items()}
        cap_profile, cap_W = cap
        by_id = {ctx.connector_id: ctx for ctx in connectors}

        def demand(cid: int) -> float:
            limit = own[cid].limit_W
            return by_id[cid].max_power_W if limit is None else limit

        drawing = [ctx.connector_id for ctx in connectors if ctx.drawing]
        shares = _water_fill(cap_W, {cid: demand(cid) for cid in drawing}, own)
        result: dict[int, Limit] = {}
        for ctx in connectors:
            cid = ctx.connector_id
            sources = (*own[cid].sources, cap_profile.id)
            if cid in shares:
                result[cid] = Limit(shares[cid], own[cid].min_W, sources)
            else:
                alone = min(demand(cid), cap_W)
                result[cid] = _respect_minimum(Limit(alone, own[cid].min_W, sources))
        return result

    def next_boundary(self, t: float, connectors: Sequence[ConnectorContext]) -> float | None:
        """The first instant after t at which some connector's limit may change; None: never.

        Relative schedules count only for connectors in a transaction: without one they are
        pinned to "now" and never move on by themselves.
        """
        found: list[float] = []
        for profile in self.profiles:
            if profile.kind != Kind.RELATIVE:
                found += profile.boundaries(t, None)
                continue
            for ctx in connectors:
                applies = profile.purpose == Purpose.CHARGE_POINT_MAX or profile.connector_id in (
                    0,
                    ctx.connector_id,
                )
                if applies and ctx.transaction_started is not None:
                    found += profile.boundaries(t, ctx.transaction_started)
        return min(found, default=None)

    # -- GetCompositeSchedule ------------------------------------------------------------------

    def composite_schedule(
        self,
        connector_id: int,
        start: float,
        duration_s: int,
        connectors: Sequence[ConnectorContext],
        *,
        unit: RateUnit = RateUnit.WATT,
        grid_voltage_V: float,
        grid_phases: int = 1,
    ) -> dict[str, Any]:
        """The chargingSchedule of a GetCompositeSchedule.conf (camelCase, as on the wire).

        For a connector: its composite limit over [start, start + duration), the hardware
        maximum where no profile applies. For connector 0: what the whole charge point may draw
        from the grid, i.e. the sum over the connectors, capped by the ChargePointMaxProfile.
        """
        end = start + duration_s
        periods: list[dict[str, Any]] = []
        t = start
        while t < end:
            at = self.limits(
                t, connectors, grid_voltage_V=grid_voltage_V, grid_phases=grid_phases,
                anchor_now=start,
            )  # fmt: skip
            watts = self._reported_W(
                connector_id, t, at, connectors, start, grid_voltage_V, grid_phases
            )
            if unit == RateUnit.AMPERE:
                if connector_id == 0:
                    voltage, phases = grid_voltage_V, grid_phases
                else:
                    ctx = next(c for c in connectors if c.connector_id == connector_id)
                    voltage, phases = ctx.voltage_V, ctx.phases
                value = watts / (voltage * phases)
            else:
                value = watts
            value = math.floor(value * 10 + 1e-6) / 10  # schema: multiple of 0.1, never above
            if not periods or periods[-1]["limit"] != value:
                periods.append({"startPeriod": round(t - start), "limit": value})
            following = self._next_for_schedule(t, connectors, start)
            if following is None:
                break
            t = following
        return {
            "duration": duration_s,
            "startSchedule": iso(start),
            "chargingRateUnit": str(unit),
            "chargingSchedulePeriod": periods,
        }

    def _reported_W(
        self,
        connector_id: int,
        t: float,
        at: Mapping[int, Limit],
        connectors: Sequence[ConnectorContext],
        start: float,
        grid_voltage_V: float,
        grid_phases: int,
    ) -> float:
        by_id = {c.connector_id: c for c in connectors}

        def alone(cid: int) -> float:
            limit = at[cid].limit_W
            return by_id[cid].max_power_W if limit is None else limit

        if connector_id != 0:
            return alone(connector_id)
        total = sum(alone(cid) for cid in by_id)
        cap = self._charge_point_max_W(t, start, grid_voltage_V, grid_phases)
        return total if cap is None else min(total, cap[1])

    def _next_for_schedule(
        self, t: float, connectors: Sequence[ConnectorContext], start: float
    ) -> float | None:
        """Like next_boundary, but Relative schedules without a transaction start at ``start``."""
        found: list[float] = []
        for profile in self.profiles:
            if profile.kind != Kind.RELATIVE:
                found += profile.boundaries(t, None)
                continue
            for ctx in connectors:
                anchor = ctx.transaction_started if ctx.in_transaction else start
                found += profile.boundaries(t, anchor)
        return min(found, default=None)


def _respect_minimum(limit: Limit) -> Limit:
    """Below the EV's minChargingRate nothing useful flows: offer 0 instead."""
    if limit.limit_W is not None and limit.min_W is not None and limit.limit_W < limit.min_W:
        return Limit(0.0, limit.min_W, limit.sources)
    return limit


def _water_fill(
    cap_W: float, demands: Mapping[int, float], own: Mapping[int, Limit]
) -> dict[int, float]:
    """Split cap_W among connectors: nobody above its demand, the rest shared evenly.

    A connector whose share is below its minimum rate is given 0 and left out of the split.
    """
    active = dict(demands)
    zeroed: dict[int, float] = {}
    while True:
        shares: dict[int, float] = {}
        remaining = max(0.0, cap_W)
        ordered = sorted(active, key=lambda cid: (active[cid], cid))
        for index, cid in enumerate(ordered):
            share = remaining / (len(ordered) - index)
            shares[cid] = min(active[cid], share)
            remaining -= shares[cid]
        starved = [
            cid
            for cid, share in shares.items()
            if (minimum := own[cid].min_W) is not None and share < minimum
        ]
        if not starved:
            return {**shares, **zeroed}
        # The one with the highest minimum gives way first: that frees the most for the rest.
        victim = max(starved, key=lambda cid: (own[cid].min_W or 0.0, cid))
        zeroed[victim] = 0.0
        del active[victim]


# -- time helpers ------------------------------------------------------------------------------


def parse_time(text: str) -> float:
    """An OCPP dateTime to epoch seconds; a naive one is taken as UTC."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def iso(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


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
