"""Smart charging on the charger: installed profiles in force, persisted, and followed in time.

The rules live in the pure `hilsim.smart_charging`; this adapter gives them the charger's
connectors, the wall clock and the store, and carries their answer out through
`Charger.apply_limit`, the one place a limit is applied. It never polls: after every change it
asks the engine when the limit can next change and sets one loop timer for that instant.

TxProfiles are bound to a transaction: one set by SetChargingProfile to the transaction running
on its connector, one that came with RemoteStartTransaction to the transaction that start
brings. Either is dropped when that transaction ends (or the remote start never becomes one).
They are kept in memory only, since no transaction outlives the process. ChargePointMaxProfiles
and TxDefaultProfiles are stored before the CSMS hears Accepted and reloaded at start.

A profile may come from a CSMS speaking another OCPP version than the engine's 1.6 form (OCPP
2.0.1): its translation carries the profile exactly as that CSMS sent it under the key
`AS_SENT`, which the engine ignores. It is kept beside the profile (and in the store's JSON), so
GetChargingProfiles can answer with what was sent, not with a translation of a translation.

The engine (`hilsim.smart_charging`, some 3 ms of dataclasses and enums) is imported on first
use: with a stored profile, a SetChargingProfile, a RemoteStart's profile or GetCompositeSchedule.
A charge point that never has a profile, the usual bench, never loads it; until then every
connector's limit is "none", which is what the engine would say of an empty set.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from hilsim.evse import Status

if TYPE_CHECKING:
    from hilsim.clock import Clock
    from hilsim.connectors import ConnectorRuntime
    from hilsim.keys import ConfigurationKeys
    from hilsim.smart_charging import ConnectorContext, Limit, Profile, ProfileSet, RateUnit
    from hilsim.store import Store

log = logging.getLogger(__name__)

#: The key under which a translated profile carries its original form (see the docstring).
AS_SENT = "as_sent"

#: ChargingScheduleAllowedChargingRateUnit members -> the unit (`RateUnit` value) they allow.
_UNITS = {"Current": "A", "Power": "W"}


class LimitedCharger(Protocol):
    """What smart charging needs of the charger: its connectors, to read and to limit."""

    @property
    def connectors(self) -> Mapping[int, ConnectorRuntime]: ...
    @property
    def keys(self) -> ConfigurationKeys: ...
    @property
    def store(self) -> Store: ...
    @property
    def wall(self) -> Clock: ...
    def clock(self) -> float: ...
    def apply_limit(self, connector_id: int, limit_W: float | None) -> None: ...
    def transaction_id(self, connector_id: int) -> int | None: ...


class ChargingLimits:
    """The installed profiles of one charge point and the limits they put on its connectors."""

    def __init__(self, charger: LimitedCharger) -> None:
        self.charger = charger
        #: the installed profiles; None until the engine is first needed (see the module doc)
        self._profiles: ProfileSet | None = None
        #: TxProfile id -> local id of the transaction it belongs to (None: a RemoteStart's,
        #: waiting for its transaction)
        self._bound: dict[int, int | None] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._due: float | None = None
        self._pending_recompute = False
        self._closed = False
        self.last: dict[int, Limit] = {}
        #: profile id -> (the profile, its original form), see `AS_SENT`
        self._as_sent: dict[int, tuple[Profile, dict[str, Any]]] = {}

    @property
    def profiles(self) -> ProfileSet:
        """The installed profiles; asking for them loads the engine."""
        if self._profiles is None:
            from hilsim.smart_charging import ProfileSet

            self._profiles = ProfileSet()
        return self._profiles

    def _installed(self) -> list[Profile]:
        """The installed profiles, without loading the engine for none."""
        return [] if self._profiles is None else self._profiles.profiles

    # -- lifecycle -----------------------------------------------------------------------------

    async def load(self) -> None:
        """Reload the stored profiles (those the store cannot parse are dropped and logged)."""
        stored = await self.charger.store.charging_profiles()
        if not stored and self._profiles is None:
            return  # nothing to follow: every limit stays none, and the engine unloaded
        from hilsim.smart_charging import Profile, ProfileRejected, Purpose

        received = self._now()
        dropped: list[int] = []
        for connector_id, payload in stored:
            try:
                data = json.loads(payload)
                profile = Profile.from_wire(connector_id, data, received)
            except (ValueError, ProfileRejected) as exc:
                log.warning("stored charging profile dropped: %s", exc)
                continue
            if profile.purpose == Purpose.TX or (
                profile.connector_id != 0 and profile.connector_id not in self.charger.connectors
            ):
                dropped.append(profile.id)
                continue
            self.profiles.install(profile)
            self._remember(profile, data)
        if dropped:
            await self.charger.store.replace_charging_profiles(dropped)
        if self.profiles.profiles:
            log.info(
                "charging profiles reloaded: %s",
                ", ".join(_describe(p) for p in self.profiles.profiles),
            )
        self.recompute()

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- SetChargingProfile, ClearChargingProfile, GetCompositeSchedule ------------------------

    async def set(self, connector_id: int, data: Mapping[str, Any]) -> str:
        """SetChargingProfile; returns Accepted or Rejected (the log says why)."""
        from hilsim.smart_charging import ProfileRejected, Purpose

        try:
            profile = self._check(connector_id, data)
            bound: int | None = None
            if profile.purpose == Purpose.TX:
                bound = self._transaction_for(profile)
            replaced = self.profiles.install(profile, max_installed=self._max_installed())
        except ProfileRejected as exc:
            log.warning("C%d SetChargingProfile rejected: %s", connector_id, exc)
            return "Rejected"
        for old in replaced:
            self._bound.pop(old.id, None)
        stored = [p.id for p in replaced]
        try:
            if profile.purpose == Purpose.TX:
                self._bound[profile.id] = bound
                if stored:
                    await self.charger.store.replace_charging_profiles(stored)
            else:
                await self.charger.store.replace_charging_profiles(
                    stored,
                    (
                        profile.id,
                        profile.connector_id,
                        str(profile.purpose),
                        profile.stack_level,
                        json.dumps(profile.to_wire() | self._original(profile)),
                    ),
                )
        except Exception:
            # Not stored, so not Accepted: take it back out, put back what it replaced.
            self.profiles.clear(profile_id=profile.id)
            self._bound.pop(profile.id, None)
            for old in replaced:
                self.profiles.install(old)
            raise
        log.info("C%d charging profile installed: %s", connector_id, _describe(profile))
        self.recompute()
        return "Accepted"

    def remote_start_profile(self, connector_id: int, data: Mapping[str, Any]) -> Profile:
        """Check the chargingProfile of a RemoteStartTransaction (ProfileRejected if bad)."""
        from hilsim.smart_charging import ProfileRejected, Purpose

        profile = self._check(connector_id, data)
        if profile.purpose != Purpose.TX:
            raise ProfileRejected("a RemoteStartTransaction's profile must be a TxProfile")
        if profile.transaction_id is not None:
            raise ProfileRejected("a RemoteStartTransaction's profile names no transactionId")
        return profile

    def install_for_remote_start(self, profile: Profile) -> None:
        """Install a checked RemoteStart TxProfile, to be bound to the transaction it starts."""
        for old in self.profiles.install(profile):
            self._bound.pop(old.id, None)
        self._bound[profile.id] = None
        log.info("C%d charging profile installed: %s", profile.connector_id, _describe(profile))
        self.recompute()

    async def clear(
        self,
        profile_id: int | None,
        connector_id: int | None,
        purpose: str | None,
        stack_level: int | None,
    ) -> str:
        """ClearChargingProfile: Accepted when something was cleared, else Unknown."""
        if self._profiles is None:
            return "Unknown"  # none was ever installed
        removed = self._profiles.clear(profile_id, connector_id, purpose, stack_level)
        if not removed:
            return "Unknown"
        for profile in removed:
            self._bound.pop(profile.id, None)
        await self.charger.store.replace_charging_profiles([p.id for p in removed])
        log.info("charging profiles cleared: %s", ", ".join(_describe(p) for p in removed))
        self.recompute()
        return "Accepted"

    def composite(self, connector_id: int, duration: int, unit: str | None) -> dict[str, Any]:
        """GetCompositeSchedule.conf."""
        from hilsim.smart_charging import RateUnit, iso

        if connector_id != 0 and connector_id not in self.charger.connectors:
            return {"status": "Rejected"}
        allowed = self._allowed_units()
        if not allowed:
            return {"status": "Rejected"}
        if unit:
            wanted = RateUnit(unit)
        else:
            wanted = RateUnit.WATT if RateUnit.WATT in allowed else allowed[0]
        if wanted not in allowed:
            log.info("GetCompositeSchedule in %s refused: not an allowed rate unit", unit)
            return {"status": "Rejected"}
        now = self._now()
        schedule = self.profiles.composite_schedule(
            connector_id,
            now,
            max(0, int(duration)),
            self._contexts(now),
            unit=wanted,
            grid_voltage_V=self._grid_voltage(),
            grid_phases=self._grid_phases(),
        )
        return {
            "status": "Accepted",
            "connectorId": connector_id,
            "scheduleStart": iso(now),
            "chargingSchedule": schedule,
        }

    # -- following the charger -----------------------------------------------------------------

    def connector_changed(self, rt: ConnectorRuntime) -> None:
        """A status changed: bind or drop TxProfiles, and recompute once the change settled."""
        if self._profiles is not None:
            self._follow_transaction(rt)
        if not self._pending_recompute:
            # Not now: a status change happens inside dispatch(), and recomputing may dispatch.
            self._pending_recompute = True
            asyncio.get_running_loop().call_soon(self._deferred_recompute)

    def _follow_transaction(self, rt: ConnectorRuntime) -> None:
        """Bind a RemoteStart's TxProfile to the transaction it began; drop those whose
        transaction ended (or never began)."""
        from hilsim.smart_charging import Purpose

        state = rt.machine.state
        local = state.local_id
        doomed: list[int] = []
        for profile in self.profiles.profiles:
            if profile.purpose != Purpose.TX or profile.connector_id != rt.id:
                continue
            bound = self._bound.get(profile.id)
            if bound is None and local is not None:
                self._bound[profile.id] = local  # the RemoteStart's transaction began
            elif bound is not None and bound != local:
                doomed.append(profile.id)  # its transaction ended
            elif bound is None and state.authorization is None:
                doomed.append(profile.id)  # the remote start came to nothing
        for profile_id in doomed:
            for profile in self.profiles.clear(profile_id=profile_id):
                log.info("C%d TxProfile %d dropped: its transaction ended", rt.id, profile.id)
            self._bound.pop(profile_id, None)

    def _deferred_recompute(self) -> None:
        self._pending_recompute = False
        self.recompute()

    def recompute(self, at: float | None = None) -> None:
        """Apply every connector's limit at ``at`` (now) and sleep until the next change."""
        if self._closed or self._profiles is None:
            return  # without the engine no profile was ever installed: no limit to apply
        now = self._now() if at is None else max(self._now(), at)
        contexts = self._contexts(now)
        limits = self.profiles.limits(
            now, contexts, grid_voltage_V=self._grid_voltage(), grid_phases=self._grid_phases()
        )
        self.last = limits
        for cid, limit in limits.items():
            rt = self.charger.connectors[cid]
            if rt.limit_W != limit.limit_W:
                self.charger.apply_limit(cid, limit.limit_W)
        self._schedule(self.profiles.next_boundary(now, contexts), now)

    def _schedule(self, due: float | None, now: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._due = due
        if due is None:
            return
        delay = max(0.0, due - now)
        self._timer = asyncio.get_running_loop().call_later(delay, self._boundary, due)

    def _boundary(self, due: float) -> None:
        from hilsim.smart_charging import iso

        self._timer = None
        log.debug("charging schedule boundary at %s", iso(due))
        self.recompute(at=due)

    # -- what the engine is told ---------------------------------------------------------------

    def _now(self) -> float:
        return self.charger.wall.now().timestamp()

    def _contexts(self, now: float) -> list[ConnectorContext]:
        from hilsim.smart_charging import ConnectorContext

        mono = self.charger.clock()
        contexts = []
        for rt in self.charger.connectors.values():
            tx = rt.machine.state.transaction
            started = None if tx is None else now - max(0.0, mono - tx.started_at)
            contexts.append(
                ConnectorContext(
                    rt.id,
                    float(rt.settings.max_power_W),
                    rt.voltage_V,
                    rt.phases,
                    transaction_started=started,
                    drawing=tx is not None and rt.machine.status != Status.SUSPENDED_EV,
                )
            )
        return contexts

    def _grid_voltage(self) -> float:
        return float(self.charger.keys.get("voltage_V"))

    def _grid_phases(self) -> int:
        """A ChargePointMaxProfile in A limits the supply, which has the most phases any
        connector is wired to."""
        return max((rt.phases for rt in self.charger.connectors.values()), default=1)

    def _key(self, name: str, default: Any) -> Any:
        try:
            return self.charger.keys.get(name)
        except KeyError:
            return default

    def _max_installed(self) -> int:
        return int(self._key("MaxChargingProfilesInstalled", 20))

    def _allowed_units(self) -> list[RateUnit]:
        from hilsim.smart_charging import RateUnit

        text = str(self._key("ChargingScheduleAllowedChargingRateUnit", "Current,Power"))
        return [RateUnit(_UNITS[m]) for m in text.split(",") if m in _UNITS]

    def _check(self, connector_id: int, data: Mapping[str, Any]) -> Profile:
        """Everything a SetChargingProfile must pass besides installing it."""
        from hilsim.smart_charging import Profile, ProfileRejected

        if connector_id != 0 and connector_id not in self.charger.connectors:
            raise ProfileRejected(f"no connector {connector_id}")
        profile = Profile.from_wire(connector_id, data, self._now())
        self._remember(profile, data)
        max_stack = int(self._key("ChargeProfileMaxStackLevel", 10))
        if profile.stack_level > max_stack:
            raise ProfileRejected(
                f"stackLevel {profile.stack_level} above ChargeProfileMaxStackLevel {max_stack}"
            )
        max_periods = int(self._key("ChargingScheduleMaxPeriods", 24))
        if len(profile.schedule.periods) > max_periods:
            raise ProfileRejected(
                f"{len(profile.schedule.periods)} periods, more than ChargingScheduleMaxPeriods "
                f"{max_periods}"
            )
        if profile.schedule.rate_unit not in self._allowed_units():
            raise ProfileRejected(
                f"rate unit {profile.schedule.rate_unit} not in "
                "ChargingScheduleAllowedChargingRateUnit"
            )
        return profile

    def _transaction_for(self, profile: Profile) -> int:
        """The local id of the transaction a SetChargingProfile TxProfile belongs to."""
        from hilsim.smart_charging import ProfileRejected

        rt = self.charger.connectors[profile.connector_id]
        local = rt.machine.state.local_id
        if local is None:
            raise ProfileRejected("a TxProfile needs a transaction running on its connector")
        wanted = profile.transaction_id
        if wanted is not None and self.charger.transaction_id(rt.id) != wanted:
            raise ProfileRejected(f"transaction {wanted} is not running on C{rt.id}")
        return local

    # -- profiles as their CSMS sent them (AS_SENT) ----------------------------------------------

    def as_sent(self, profile: Profile) -> dict[str, Any] | None:
        """The form the CSMS sent this installed profile in, when it came translated."""
        kept = self._as_sent.get(profile.id)
        return kept[1] if kept is not None and kept[0] == profile else None

    def _remember(self, profile: Profile, data: Mapping[str, Any]) -> None:
        """Keep a translated profile's original (a profile without one forgets its id's), and
        forget those of profiles no longer installed.

        Kept when checked, before it is installed: an entry whose profile never was installed
        (or was replaced) matches no installed profile, so `as_sent` never answers with it.
        """
        installed = {p.id for p in self._installed()}
        self._as_sent = {i: kept for i, kept in self._as_sent.items() if i in installed}
        original = data.get(AS_SENT)
        if isinstance(original, Mapping):
            self._as_sent[profile.id] = (profile, dict(original))
        else:
            self._as_sent.pop(profile.id, None)

    def _original(self, profile: Profile) -> dict[str, Any]:
        """What the store keeps beside the engine's form: the original, if there is one."""
        original = self.as_sent(profile)
        return {} if original is None else {AS_SENT: original}

    def snapshot(self) -> dict[str, Any]:
        """For `hilsim ctl status`: the installed profiles and when the limit next changes."""
        next_change = None
        if self._due is not None:  # a timer is set: the engine is loaded
            from hilsim.smart_charging import iso

            next_change = iso(self._due)
        return {
            "profiles": [
                {
                    "id": p.id,
                    "connector_id": p.connector_id,
                    "purpose": str(p.purpose),
                    "stack_level": p.stack_level,
                    "kind": str(p.kind),
                }
                for p in self._installed()
            ],
            "next_change": next_change,
        }


def _describe(profile: Profile) -> str:
    s = profile.schedule
    limits = "/".join(f"{p.limit:g}" for p in s.periods)
    return (
        f"#{profile.id} {profile.purpose} stack {profile.stack_level} on C{profile.connector_id} "
        f"({profile.kind}{' ' + str(profile.recurrency) if profile.recurrency else ''}, "
        f"{limits} {s.rate_unit})"
    )
