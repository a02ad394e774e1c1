"""The composite schedule engine: the limit each connector gets at an instant, from the
installed profiles (stack levels, purposes, the ChargePointMaxProfile shared by water-filling),
and GetCompositeSchedule's answer.

Part of :mod:`hilsim.smart_charging`, pure like the rest of it; the rules are in its docstring.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hilsim.smart_charging.profiles import (
    Kind,
    Period,
    Profile,
    ProfileRejected,
    Purpose,
    RateUnit,
    iso,
)

#: The most boundaries a composite schedule walks, so the most periods it lists: about 40 kB
#: on the wire at most (the peers' default frame limit is 1 MiB) and some 50 ms of the event
#: loop on a PC; a daily profile with three changes a day still shows most of a year.
MAX_COMPOSITE_STEPS = 1024


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

        A CSMS may ask for any duration (2^31 s is 68 years: a daily profile's 74,000 periods,
        a 3 MB frame the peer closes the connection over, a second of the event loop). The
        schedule stops after `MAX_COMPOSITE_STEPS` boundaries instead, and its duration says how
        far it reaches (1.6 allows a shorter schedule than asked; 2.0.1 states it by duration).
        """
        end = start + duration_s
        periods: list[dict[str, Any]] = []
        t = start
        steps = 0
        while t < end:
            steps += 1
            if steps > MAX_COMPOSITE_STEPS:
                duration_s = round(t - start)
                break
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
