"""The charger: connectors, their machines, meters and metering loops, wired to the CSMS link.

This is the adapter around the pure state machines. It feeds them events (from buttons, `ctl`,
the CSMS) together with the time, and carries out the effects they return: OCPP calls through the
link, power offered to the meter, listeners (LEDs, logs) told of status changes. Nothing here
decides a transition; the machines do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hilsim.clock import utc_iso
from hilsim.config import ConnectorSettings
from hilsim.errors import CsmsError
from hilsim.evse import (
    TRANSACTION_STATUSES,
    Connector,
    ErrorCode,
    Outcome,
    Policy,
    Status,
    StopReason,
    effects,
    events,
    transition,
)
from hilsim.keys import ChangeStatus, ConfigurationKeys, KeySpec
from hilsim.meter import MeterSource, SyntheticMeter
from hilsim.ocpp.client import ChargePointClient, ConfigurationEntry, Release
from hilsim.ocpp.session import CsmsLink, LinkState
from hilsim.store import Store
from hilsim.vehicle import SimulatedVehicle

log = logging.getLogger(__name__)

StatusListener = Callable[[int, Status, ErrorCode], None]
LinkListener = Callable[[LinkState], None]

#: Keys whose change the machines' Policy depends on.
_POLICY_KEYS = {"OCPPAuthorizationEnabled", "AuthorizeRemoteTxRequests", "ConnectionTimeOut"}


@dataclass(slots=True)
class ConnectorRuntime:
    """One connector's machine and the things around it that do IO."""

    settings: ConnectorSettings
    machine: Connector
    meter: MeterSource
    vehicle: SimulatedVehicle = field(default_factory=SimulatedVehicle)
    voltage_V: float = 230.0
    limit_W: float | None = None  # from SetChargingProfile; None = only max_power_W applies
    metering: asyncio.Task[None] | None = None
    deadline: asyncio.TimerHandle | None = None
    last_sample: dict[str, float] = field(default_factory=dict)

    @property
    def id(self) -> int:
        return self.settings.id

    def offered_power_W(self) -> float:
        """What flows while Charging: the smaller of the hardware's maximum and the CSMS limit."""
        if self.machine.status != Status.CHARGING:
            return 0.0
        cap = float(self.settings.max_power_W)
        return cap if self.limit_W is None else max(0.0, min(cap, self.limit_W))


class Charger:
    """The charge point as a whole: the `ChargerPort` the OCPP handlers talk to."""

    def __init__(
        self,
        connectors: Sequence[ConnectorSettings],
        keys: ConfigurationKeys,
        store: Store,
        *,
        voltage_overridden: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keys = keys
        self.store = store
        self.clock = clock
        self.link: CsmsLink | None = None
        self.status_listeners: list[StatusListener] = []
        self.link_listeners: list[LinkListener] = []
        self._voltage_overridden = voltage_overridden
        self._metering_wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        policy = self._policy()
        self.connectors: dict[int, ConnectorRuntime] = {}
        for cs in connectors:
            voltage = float(keys.get("voltage_V")) if voltage_overridden else float(cs.voltage_V)
            self.connectors[cs.id] = ConnectorRuntime(
                settings=cs,
                machine=Connector(cs.id, policy),
                meter=SyntheticMeter(voltage),
                voltage_V=voltage,
            )
        keys.subscribe(self._key_changed)

    # -- events in -----------------------------------------------------------------------------

    def dispatch(self, connector_id: int, event: events.Event, *, hold: bool = False) -> Outcome:
        """Feed one event to a connector's machine and carry out its effects.

        With ``hold`` the effects are kept back; the caller releases them (see `_held`). Raises
        KeyError for an unknown connector so callers can say which id was wrong.
        """
        rt = self.connectors[connector_id]
        outcome = rt.machine.handle(event, self.clock())
        if outcome.refused:
            log.info("C%d refused %s: %s", connector_id, type(event).__name__, outcome.refused)
        elif not hold:
            self._carry_out(rt, outcome.effects)
        return outcome

    def _held(self, connector_id: int, outcome: Outcome) -> Release:
        rt = self.connectors[connector_id]
        return lambda: self._carry_out(rt, outcome.effects)

    # -- effects out ---------------------------------------------------------------------------

    def _carry_out(self, rt: ConnectorRuntime, fx: Iterable[effects.Effect]) -> None:
        for effect in fx:
            match effect:
                case effects.StatusChanged():
                    self._status_changed(rt, effect)
                case effects.SendAuthorize():
                    self._spawn(self._authorize(rt, effect.id_tag))
                case effects.SendStartTransaction():
                    self._spawn(self._start_transaction(rt, effect))
                case effects.SendStopTransaction():
                    self._stop_transaction(rt, effect)
                case effects.AuthorizationEnded():
                    log.info("C%d idTag %s: %s", rt.id, effect.id_tag, effect.why)
                case effects.ReservationEnded():
                    log.info("C%d reservation %d %s", rt.id, effect.reservation_id, effect.why)
        self._reschedule_deadline(rt)

    def _status_changed(self, rt: ConnectorRuntime, effect: effects.StatusChanged) -> None:
        log.info("C%d is %s (%s)", rt.id, effect.status, effect.error_code)
        rt.meter.offer(rt.offered_power_W(), self.clock())
        if effect.status == Status.PREPARING and rt.machine.state.plugged:
            reading = rt.meter.read(self.clock())
            if rt.machine.state.transaction is None:
                rt.vehicle.plugged_in(reading.energy_Wh)
        self._ensure_metering(rt)
        self._send_status(rt.id, effect.status, effect.error_code)
        for listener in self.status_listeners:
            listener(rt.id, effect.status, effect.error_code)

    def _send_status(self, connector_id: int, status: Status, error_code: ErrorCode) -> None:
        link = self.link
        if link is None or link.state != LinkState.CONNECTED:
            return  # the current status is sent again once the link is back
        stamp = utc_iso()
        link.submit(
            lambda c: c.status_notification(connector_id, status, error_code, stamp),
            f"StatusNotification C{connector_id}",
            quiet=True,
        )

    async def _authorize(self, rt: ConnectorRuntime, id_tag: str) -> None:
        try:
            info = await self._call(lambda c: c.authorize(id_tag), "Authorize")
            status = str(info.get("status", "Invalid"))
            parent = info.get("parent_id_tag")
        except CsmsError as exc:
            log.warning("C%d Authorize %s failed: %s", rt.id, id_tag, exc)
            status, parent = "Unreachable", None
        self.dispatch(rt.id, events.AuthorizeResult(id_tag, status, parent))

    async def _start_transaction(
        self, rt: ConnectorRuntime, effect: effects.SendStartTransaction
    ) -> None:
        meter_start = round(rt.meter.read(self.clock()).energy_Wh)
        stamp = utc_iso()
        try:
            tx_id, info = await self._call(
                lambda c: c.start_transaction(
                    rt.id, effect.id_tag, meter_start, stamp, effect.reservation_id
                ),
                "StartTransaction",
            )
        except CsmsError as exc:
            log.warning("C%d StartTransaction failed: %s", rt.id, exc)
            self.dispatch(rt.id, events.StartFailed(str(exc)))
            return
        status = str(info.get("status", "Invalid"))
        log.info("C%d transaction %d started for %s (%s)", rt.id, tx_id, effect.id_tag, status)
        self.dispatch(rt.id, events.TransactionStarted(int(tx_id), status))

    def _stop_transaction(self, rt: ConnectorRuntime, effect: effects.SendStopTransaction) -> None:
        reading = rt.meter.read(self.clock())
        meter_stop = round(reading.energy_Wh)
        stamp = utc_iso()
        log.info(
            "C%d transaction %d stopping (%s) at %d Wh",
            rt.id,
            effect.transaction_id,
            effect.reason,
            meter_stop,
        )
        link = self.link
        if link is None:
            log.error("C%d StopTransaction %d lost: no link", rt.id, effect.transaction_id)
            return
        link.submit(
            lambda c: c.stop_transaction(
                effect.transaction_id, meter_stop, stamp, effect.reason, effect.id_tag
            ),
            f"StopTransaction {effect.transaction_id}",
            quiet=True,
        )

    async def _call(self, job: Callable[[ChargePointClient], Any], name: str) -> Any:
        if self.link is None:
            raise CsmsError(f"{name}: no CSMS link")
        return await self.link.submit(job, name)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _reschedule_deadline(self, rt: ConnectorRuntime) -> None:
        """Sleep exactly until the machine's next deadline, then feed it a Tick."""
        if rt.deadline is not None:
            rt.deadline.cancel()
            rt.deadline = None
        due = rt.machine.next_deadline()
        if due is not None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, due - self.clock())
            rt.deadline = loop.call_later(delay, self.dispatch, rt.id, events.Tick())

    # -- metering ------------------------------------------------------------------------------

    def _ensure_metering(self, rt: ConnectorRuntime) -> None:
        """One metering task per connector while it has a confirmed transaction."""
        wanted = rt.machine.status in TRANSACTION_STATUSES
        running = rt.metering is not None and not rt.metering.done()
        if wanted and not running:
            rt.metering = asyncio.get_running_loop().create_task(
                self._metering_loop(rt), name=f"metering-C{rt.id}"
            )
        elif not wanted and running:
            assert rt.metering is not None
            rt.metering.cancel()
            rt.metering = None

    async def _metering_loop(self, rt: ConnectorRuntime) -> None:
        """Sample every MeterValueSampleInterval; a changed interval applies from the next wait."""
        last = self.clock()
        while True:
            interval = float(self.keys.get("MeterValueSampleInterval"))
            remaining = last + interval - self.clock() if interval > 0 else None
            if remaining is None or remaining > 0:
                self._metering_wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._metering_wake.wait(), remaining)
                continue
            last = self.clock()
            self._sample(rt)

    def _sample(self, rt: ConnectorRuntime) -> None:
        tx_id = rt.machine.state.transaction_id
        if tx_id is None or self.link is None:
            return
        reading = rt.meter.read(self.clock())
        soc = rt.vehicle.soc(reading.energy_Wh)
        rt.last_sample = {"energy_Wh": reading.energy_Wh, "power_W": reading.power_W, "soc": soc}
        meter_value = [
            {
                "timestamp": utc_iso(),
                "sampledValue": [
                    _sampled(reading.energy_Wh, "Energy.Active.Import.Register", "Wh", "Outlet"),
                    _sampled(reading.power_W, "Power.Active.Import", "W", "Outlet"),
                    _sampled(reading.current_A, "Current.Import", "A", "Outlet"),
                    _sampled(soc, "SoC", "Percent", "EV", digits=2),
                ],
            }
        ]
        if self.link.state == LinkState.CONNECTED:
            self.link.submit(
                lambda c: c.meter_values(rt.id, tx_id, meter_value),
                f"MeterValues C{rt.id}",
                quiet=True,
            )
        if soc >= 100.0 and rt.machine.status == Status.CHARGING:
            log.info("C%d EV battery full", rt.id)
            self.dispatch(rt.id, events.EvSuspend())

    # -- what the link tells us ----------------------------------------------------------------

    def link_changed(self, state: LinkState) -> None:
        log.info("CSMS link %s", state)
        for listener in self.link_listeners:
            listener(state)

    def booted(self) -> None:
        """After (re)boot the CSMS knows nothing current: send every connector's status."""
        self._send_status(0, Status.AVAILABLE, ErrorCode.NO_ERROR)
        for rt in self.connectors.values():
            state = rt.machine.state
            self._send_status(rt.id, state.status, state.error_code or ErrorCode.NO_ERROR)

    def adopt_heartbeat_interval(self, seconds: int) -> None:
        if seconds != self.keys.get("HeartbeatInterval"):
            status, spec, value = self.keys.change("HeartbeatInterval", str(seconds))
            if status == ChangeStatus.accepted and spec is not None:
                self._spawn(self.store.save_key(spec.name, spec.format(value)))

    # -- the ChargerPort: what the OCPP handlers ask -------------------------------------------

    def get_configuration(
        self, keys: Sequence[str] | None
    ) -> tuple[list[ConfigurationEntry], list[str]]:
        known, unknown = self.keys.report(keys)
        return [ConfigurationEntry(s.name, s.readonly, text) for s, text in known], unknown

    async def change_configuration(self, key: str, value: str) -> str:
        status, spec, parsed = self.keys.change(key, value)
        if status == ChangeStatus.accepted and spec is not None:
            # Persist before answering: Accepted must survive a power cut right after it.
            await self.store.save_key(spec.name, spec.format(parsed))
            log.info("configuration %s = %s", spec.name, spec.format(parsed))
        else:
            log.info("configuration %s = %r refused: %s", key, value, status)
        return str(status)

    def set_charging_profile(self, connector_id: int, profile: dict[str, Any]) -> str:
        """Apply the first period's limit (W, or A times the connector's voltage)."""
        if connector_id != 0 and connector_id not in self.connectors:
            return "Rejected"
        targets = list(self.connectors.values()) if connector_id == 0 else [
            self.connectors[connector_id]
        ]
        if profile.get("charging_profile_purpose") == "TxProfile":
            tx_id = profile.get("transaction_id")
            running = [rt for rt in targets if rt.machine.state.transaction_id is not None]
            if connector_id == 0 or not running:
                return "Rejected"  # a TxProfile needs a running transaction on that connector
            if tx_id is not None and running[0].machine.state.transaction_id != tx_id:
                return "Rejected"
        limits = {rt.id: _limit_W(profile, rt.voltage_V) for rt in targets}
        if any(limit is None for limit in limits.values()):
            return "Rejected"
        for rt in targets:
            self.apply_limit(rt.id, limits[rt.id])
        return "Accepted"

    def apply_limit(self, connector_id: int, limit_W: float | None) -> None:
        rt = self.connectors[connector_id]
        rt.limit_W = limit_W
        shown = "none" if limit_W is None else f"{limit_W:g} W"
        log.info("C%d power limit %s", connector_id, shown)
        self.dispatch(connector_id, events.SetPowerLimit(limit_W))
        rt.meter.offer(rt.offered_power_W(), self.clock())

    def remote_start(
        self, id_tag: str, connector_id: int | None, profile: dict[str, Any] | None
    ) -> tuple[str, Release]:
        if connector_id is not None and connector_id not in self.connectors:
            return "Rejected", _nothing
        if profile is not None and profile.get("charging_profile_purpose") != "TxProfile":
            return "Rejected", _nothing
        if connector_id is not None:
            candidates = [connector_id]
        else:
            # A driver who plugged in and then starts from an app means the plugged connector.
            candidates = sorted(self.connectors, key=lambda c: not self._waiting_for_tag(c))
        event = events.RemoteStart(id_tag)
        now = self.clock()
        for cid in candidates:
            rt = self.connectors[cid]
            if transition(rt.machine.state, event, rt.machine.policy, now).accepted:
                limit = _limit_W(profile, rt.voltage_V) if profile else None
                if profile is not None and limit is None:
                    return "Rejected", _nothing
                outcome = self.dispatch(cid, event, hold=True)
                if profile is not None:
                    rt.limit_W = limit
                    self.dispatch(cid, events.SetPowerLimit(limit))
                return "Accepted", self._held(cid, outcome)
        return "Rejected", _nothing

    def _waiting_for_tag(self, connector_id: int) -> bool:
        state = self.connectors[connector_id].machine.state
        return state.plugged and state.transaction is None and state.authorization is None

    def remote_stop(self, transaction_id: int) -> tuple[str, Release]:
        for rt in self.connectors.values():
            if rt.machine.state.transaction_id == transaction_id:
                outcome = self.dispatch(rt.id, events.RemoteStop(transaction_id), hold=True)
                if outcome.accepted:
                    return "Accepted", self._held(rt.id, outcome)
        return "Rejected", _nothing

    # -- keys ----------------------------------------------------------------------------------

    def _policy(self) -> Policy:
        return Policy(
            authorize_local=bool(self.keys.get("OCPPAuthorizationEnabled")),
            authorize_remote=bool(self.keys.get("AuthorizeRemoteTxRequests")),
            connection_timeout_s=float(self.keys.get("ConnectionTimeOut")),
        )

    def _key_changed(self, spec: KeySpec, value: Any) -> None:
        if spec.name in _POLICY_KEYS:
            policy = self._policy()
            for rt in self.connectors.values():
                rt.machine.policy = policy
        elif spec.name == "voltage_V":
            self._voltage_overridden = True
            for rt in self.connectors.values():
                rt.voltage_V = float(value)
                if isinstance(rt.meter, SyntheticMeter):
                    rt.meter.voltage_V = float(value)
        elif spec.name == "MeterValueSampleInterval":
            self._metering_wake.set()

    # -- lifecycle -----------------------------------------------------------------------------

    async def end_all_transactions(self, reason: StopReason) -> None:
        """Stop every running transaction and wait (briefly) for the StopTransactions to leave."""
        pending: list[asyncio.Future[Any]] = []
        for rt in self.connectors.values():
            if rt.machine.state.transaction_id is not None:
                self.dispatch(rt.id, events.EndTransaction(reason))
        if self.link is not None:
            pending = [self.link.submit(_barrier, "flush")]
        if pending:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*pending), 5.0)

    async def close(self) -> None:
        for rt in self.connectors.values():
            if rt.deadline is not None:
                rt.deadline.cancel()
            if rt.metering is not None:
                rt.metering.cancel()
        tasks = [t for t in (rt.metering for rt in self.connectors.values()) if t] + list(
            self._tasks
        )
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def snapshot(self) -> dict[str, Any]:
        """What `hilsim ctl status` prints."""
        link = self.link
        now = self.clock()
        connectors = []
        for rt in self.connectors.values():
            state = rt.machine.state
            reading = rt.meter.read(now)
            tx = state.transaction
            connectors.append(
                {
                    "id": rt.id,
                    "status": str(state.status),
                    "error_code": str(state.error_code or ErrorCode.NO_ERROR),
                    "plugged": state.plugged,
                    "transaction_id": state.transaction_id,
                    "id_tag": tx.id_tag if tx else None,
                    "energy_Wh": round(reading.energy_Wh, 1),
                    "power_W": round(reading.power_W, 1),
                    "current_A": round(reading.current_A, 2),
                    "voltage_V": reading.voltage_V,
                    "soc": round(rt.vehicle.soc(reading.energy_Wh), 1) if tx else None,
                    "limit_W": rt.limit_W,
                    "max_power_W": rt.settings.max_power_W,
                }
            )
        return {
            "charge_point": link.charge_point_id if link else None,
            "csms": {
                "url": link.endpoint if link else None,
                "state": str(link.state) if link else "disconnected",
                "connected_since": _iso_or_none(link.connected_since if link else None),
                "last_message_at": _iso_or_none(link.last_message_at if link else None),
            },
            "connectors": connectors,
        }


def _nothing() -> None:
    return None


async def _barrier(client: ChargePointClient) -> None:
    """A no-op job: when it runs, every job queued before it has been sent and answered."""


def _iso_or_none(wall: float | None) -> str | None:
    if wall is None:
        return None
    return utc_iso(datetime.fromtimestamp(wall, UTC))


def _sampled(
    value: float, measurand: str, unit: str, location: str, digits: int = 1
) -> dict[str, str]:
    return {
        "value": f"{value:.{digits}f}",
        "context": "Sample.Periodic",
        "measurand": measurand,
        "location": location,
        "unit": unit,
    }


def _limit_W(profile: dict[str, Any] | None, voltage_V: float) -> float | None:
    """The power limit of a profile's first schedule period, or None when it has none."""
    if not profile:
        return None
    schedule = profile.get("charging_schedule") or {}
    periods = schedule.get("charging_schedule_period") or []
    if not periods:
        return None
    first = min(periods, key=lambda p: p.get("start_period", 0))
    limit = float(first.get("limit", -1))
    if limit < 0:
        return None
    unit = schedule.get("charging_rate_unit")
    if unit == "W":
        return limit
    if unit == "A":
        phases = int(first.get("number_phases") or 1)
        return limit * voltage_V * phases
    return None
