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
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from hilsim.clock import Clock
from hilsim.config import ConnectorSettings
from hilsim.connectors import ConnectorRuntime
from hilsim.evse import (
    Connector,
    ErrorCode,
    FaultSource,
    Outcome,
    Policy,
    Status,
    StopReason,
    effects,
    events,
    transition,
)
from hilsim.keys import ConfigurationKeys, KeySpec
from hilsim.meter import (
    MeterHealth,
    MeterSource,
    MeterState,
    SyntheticMeter,
)
from hilsim.ocpp.ports import Release, nothing
from hilsim.ocpp.session import CsmsLink, LinkState
from hilsim.store import Store
from hilsim.tasks import TaskSet

if TYPE_CHECKING:
    from hilsim.authorization import Authorizer, Decision
    from hilsim.availability import Availability
    from hilsim.charging_limits import ChargingLimits
    from hilsim.configuration import Configuration
    from hilsim.device_model import DeviceModel
    from hilsim.firmware import Firmware
    from hilsim.metering import Metering
    from hilsim.operations import Operations
    from hilsim.outbox import Outbox
    from hilsim.transactions import Transactions

log = logging.getLogger(__name__)

StatusListener = Callable[[int, Status, ErrorCode], None]
LinkListener = Callable[[LinkState], None]
EventListener = Callable[[int, events.Event, Outcome], None]

#: Keys whose change the machines' Policy depends on.
_POLICY_KEYS = {
    "OCPPAuthorizationEnabled",
    "AuthorizeRemoteTxRequests",
    "ConnectionTimeOut",
    "StopTransactionOnEVSideDisconnect",
    "StopTransactionOnInvalidId",
}


@dataclass(frozen=True, slots=True)
class ChargerServices:
    """What the charger delegates to, each the one owner of its part (built in `hilsim.wiring`)."""

    configuration: Configuration
    smart_charging: ChargingLimits
    outbox: Outbox
    authorizer: Authorizer
    metering: Metering
    availability: Availability
    operations: Operations
    transactions: Transactions
    firmware: Firmware | None
    #: OCPP 2.0.1's components and variables (None in 1.6 mode)
    device_model: DeviceModel | None = None


class Charger:
    """The charge point as a whole: the `ChargerPort` the OCPP handlers talk to."""

    def __init__(
        self,
        connectors: Sequence[ConnectorSettings],
        keys: ConfigurationKeys,
        store: Store,
        link: CsmsLink,
        *,
        voltage_overridden: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wall: Clock | None = None,
        registers: Mapping[int, float] | None = None,
        meters: Mapping[int, MeterSource] | None = None,
        services: Callable[[Charger], ChargerServices],
        tasks: TaskSet,
    ) -> None:
        """`meters`: connector id -> its meter source; the others get the synthetic counter.
        `services` builds the charger's services once its connectors exist (see
        `hilsim.wiring`); `tasks`: the background tasks it shares with them."""
        self.keys = keys
        self.store = store
        self.clock = clock  # monotonic: the machines' deadlines
        self.wall = wall or Clock()  # what OCPP timestamps say
        self.link = link
        self.status_listeners: list[StatusListener] = []
        self.link_listeners: list[LinkListener] = []
        #: told of every event fed to a machine and its outcome (for logs, the web view, tests)
        self.event_listeners: list[EventListener] = []
        self._voltage_overridden = voltage_overridden
        self._tasks = tasks
        policy = self._policy()
        self.connectors: dict[int, ConnectorRuntime] = {}
        for cs in connectors:
            voltage = float(keys.get("voltage_V")) if voltage_overridden else float(cs.voltage_V)
            self.connectors[cs.id] = ConnectorRuntime(
                settings=cs,
                machine=Connector(cs.id, policy),
                # The register starts where it stopped: energy never goes backwards.
                meter=(meters or {}).get(cs.id)
                or SyntheticMeter(voltage, (registers or {}).get(cs.id, 0.0), cs.phases),
                voltage_V=voltage,
            )
        keys.subscribe(self._key_changed)
        # The services, built by `hilsim.wiring` on the charger's connectors and dispatch.
        built = services(self)
        #: ChangeConfiguration, GetConfiguration and `hilsim config set`
        self.configuration = built.configuration
        #: smart charging: the installed profiles and the limits they put on the connectors
        self.smart_charging = built.smart_charging
        self.outbox = built.outbox
        self.authorizer = built.authorizer
        self.metering = built.metering
        self.availability = built.availability  # ChangeAvailability, Reset, connector 0
        #: unlock, local list, reservations, triggers, ...
        self.operations = built.operations
        self.transactions = built.transactions
        #: firmware version, UpdateFirmware and GetDiagnostics (None: no such profile)
        self.firmware = built.firmware
        self.device_model = built.device_model  # GetVariables, SetVariables (2.0.1 only)

    def transaction_id(self, connector_id: int) -> int | None:
        """The CSMS's id of the connector's running transaction, once the CSMS gave one."""
        return self.transactions.transaction_id(connector_id)

    # -- events in -----------------------------------------------------------------------------

    def dispatch(self, connector_id: int, event: events.Event, *, hold: bool = False) -> Outcome:
        """Feed one event to a connector's machine and carry out its effects.

        With ``hold`` the effects are kept back; the caller releases them (see `held`). Raises
        KeyError for an unknown connector so callers can say which id was wrong.
        """
        rt = self.connectors[connector_id]
        outcome = rt.machine.handle(event, self.clock())
        for listener in self.event_listeners:
            listener(connector_id, event, outcome)
        if outcome.refused:
            log.info("C%d refused %s: %s", connector_id, type(event).__name__, outcome.refused)
        elif not hold:
            self._carry_out(rt, outcome.effects)
        return outcome

    def held(self, connector_id: int, outcome: Outcome) -> Release:
        """The effects a ``hold=True`` dispatch kept back, to carry out once they may happen."""
        rt = self.connectors[connector_id]
        return lambda: self._carry_out(rt, outcome.effects)

    # -- effects out ---------------------------------------------------------------------------

    def _carry_out(self, rt: ConnectorRuntime, fx: Iterable[effects.Effect]) -> None:
        for effect in fx:
            match effect:
                case effects.StatusChanged():
                    self._status_changed(rt, effect)
                case effects.SendAuthorize():
                    self._spawn(
                        self.authorizer.decide(
                            rt.id, effect.id_tag, partial(self._authorized, rt, effect.id_tag)
                        ),
                        f"authorize-C{rt.id}",
                        lambda exc, rt=rt, tag=effect.id_tag: self._authorize_failed(rt, tag, exc),
                    )
                case effects.SendStartTransaction():
                    self._spawn(
                        self.transactions.start(rt, effect),
                        f"start-transaction-C{rt.id}",
                        lambda exc, rt=rt: self.transactions.start_failed(rt, exc),
                    )
                case effects.SendStopTransaction():
                    self.transactions.stop(rt, effect)
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
        self.metering.connector_changed(rt)
        self.smart_charging.connector_changed(rt)
        self._report_status(rt, effect.status, effect.error_code)
        for listener in self.status_listeners:
            listener(rt.id, effect.status, effect.error_code)
        if effect.status != Status.FAULTED and rt.meter.health.state == MeterState.FAILED:
            # A person cleared every fault while the meter is still dead: it raises its again.
            asyncio.get_running_loop().call_soon(self._meter_health_changed, rt, rt.meter.health)

    def _report_status(self, rt: ConnectorRuntime, status: Status, error_code: ErrorCode) -> None:
        """StatusNotification at once, or once the status has held for MinimumStatusDuration.

        A status that flips and flips back within that time is never reported: the CSMS still
        has the right one. The panel's lights and `ctl status` follow every change at once.
        """
        if rt.status_report is not None:
            rt.status_report.cancel()
            rt.status_report = None
        hold = int(self.keys.get("MinimumStatusDuration"))
        if hold <= 0:
            self._send_status(rt.id, status, error_code)
            return
        rt.status_report = asyncio.get_running_loop().call_later(
            hold, self._status_held, rt, self.wall.iso()
        )

    def _status_held(self, rt: ConnectorRuntime, since: str) -> None:
        rt.status_report = None
        current = rt.ocpp_status
        if current != rt.reported:
            self._send_status(rt.id, *current, stamp=since)  # the time it began

    def _send_status(
        self, connector_id: int, status: Status, error_code: ErrorCode, stamp: str | None = None
    ) -> None:
        link = self.link
        if link is None or link.state != LinkState.CONNECTED:
            return  # the current status is sent again once the link is back
        if connector_id in self.connectors:
            self.connectors[connector_id].reported = (status, error_code)
        stamp = stamp or self.wall.iso()
        link.submit(
            lambda c: c.status_notification(connector_id, status, error_code, stamp),
            f"StatusNotification C{connector_id}",
            quiet=True,
        )

    def _authorized(self, rt: ConnectorRuntime, id_tag: str, decision: Decision) -> None:
        self.dispatch(
            rt.id, events.AuthorizeResult(id_tag, decision.status, decision.parent_id_tag)
        )

    def _authorize_failed(self, rt: ConnectorRuntime, id_tag: str, exc: BaseException) -> None:
        """No decision came (the task failed): the tag is refused, the connector usable again."""
        log.error("C%d idTag %s: no authorization decision (%s); treated as Invalid",
                  rt.id, id_tag, exc)  # fmt: skip
        self.dispatch(rt.id, events.AuthorizeResult(id_tag, "Invalid"))

    def _spawn(
        self,
        work: Awaitable[Any],
        name: str,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._tasks.spawn(work, name, on_failure)

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

    # -- what the link tells us ----------------------------------------------------------------

    def link_changed(self, state: LinkState) -> None:
        log.info("CSMS link %s", state)
        for listener in self.link_listeners:
            listener(state)

    def booted(self) -> None:
        """After (re)boot the CSMS knows nothing current: send every connector's status."""
        self._send_status(0, self.availability.charge_point_status(), ErrorCode.NO_ERROR)
        for rt in self.connectors.values():
            self._send_status(rt.id, *rt.ocpp_status)

    def learn_time(self, current_time: str) -> None:
        self.wall.learn(current_time)
        # The wall clock may have moved: the next schedule boundary is timed again from it.
        self.smart_charging.recompute()

    def adopt_heartbeat_interval(self, seconds: int) -> None:
        self.configuration.adopt_heartbeat_interval(seconds)

    # -- the ChargerPort: what the OCPP handlers ask -------------------------------------------

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
            return "Rejected", nothing
        if not id_tag.strip():  # valid to the schema, but no driver has an empty tag
            log.warning("RemoteStartTransaction with an empty idTag: Rejected")
            return "Rejected", nothing
        if self.link is not None and self.link.state != LinkState.CONNECTED:
            # OCPP 1.6 4.2.1: until BootNotification is Accepted no transaction may start.
            log.warning(
                "RemoteStartTransaction before the CSMS accepted the boot (link %s): Rejected",
                self.link.state,
            )
            return "Rejected", nothing
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
                tx_profile = None
                if profile is not None:
                    from hilsim.smart_charging import ProfileRejected  # loaded on first use

                    try:
                        tx_profile = self.smart_charging.remote_start_profile(cid, profile)
                    except ProfileRejected as exc:
                        log.warning("C%d RemoteStartTransaction rejected: %s", cid, exc)
                        return "Rejected", nothing
                outcome = self.dispatch(cid, event, hold=True)
                if tx_profile is not None:
                    self.smart_charging.install_for_remote_start(tx_profile)
                return "Accepted", self.held(cid, outcome)
        return "Rejected", nothing

    def _waiting_for_tag(self, connector_id: int) -> bool:
        state = self.connectors[connector_id].machine.state
        return state.plugged and state.transaction is None and state.authorization is None

    def remote_stop(self, transaction_id: int) -> tuple[str, Release]:
        connector_id = self.transactions.connector_of(transaction_id)
        if connector_id is not None:
            local_id = self.connectors[connector_id].machine.state.local_id
            assert local_id is not None
            outcome = self.dispatch(connector_id, events.RemoteStop(local_id), hold=True)
            if outcome.accepted:
                return "Accepted", self.held(connector_id, outcome)
        return "Rejected", nothing

    # -- keys ----------------------------------------------------------------------------------

    def _policy(self) -> Policy:
        return Policy(
            authorize_local=bool(self.keys.get("OCPPAuthorizationEnabled")),
            authorize_remote=bool(self.keys.get("AuthorizeRemoteTxRequests")),
            connection_timeout_s=float(self.keys.get("ConnectionTimeOut")),
            stop_on_ev_disconnect=bool(self.keys.get("StopTransactionOnEVSideDisconnect")),
            stop_on_invalid_id=bool(self.keys.get("StopTransactionOnInvalidId")),
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
            self.smart_charging.recompute()  # a limit in A is worth other watts now

    # -- lifecycle -----------------------------------------------------------------------------

    async def end_all_transactions(self, reason: StopReason, timeout: float = 5.0) -> None:
        """Stop every running transaction and give the outbox a moment to deliver the stops.

        Whatever is not delivered in time stays in the outbox for the next start.
        """
        for rt in self.connectors.values():
            if rt.machine.state.transaction is not None:
                self.dispatch(rt.id, events.EndTransaction(reason))
        # The stops are recorded by spawned tasks; a start confirmed meanwhile spawns its stop
        # only then, so wait until no task is left, not just for those running now.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while pending := self._tasks.pending():
                    await asyncio.gather(*pending, return_exceptions=True)
        link = self.link
        if link.state == LinkState.CONNECTED:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.outbox.drained(), timeout)

    async def start(self) -> None:
        """Start each connector's meter (a polled one tries its first poll); watch its health.

        What the CSMS set before the last stop (availability, local list, reservations) is put
        back first.
        """
        await self.availability.restore()
        await self.operations.restore()
        self.metering.start()
        await self.smart_charging.load()
        for rt in self.connectors.values():
            rt.meter.health_listeners.append(
                lambda health, rt=rt: self._meter_health_changed(rt, health)
            )
        await asyncio.gather(*(rt.meter.start() for rt in self.connectors.values()))

    def _meter_health_changed(self, rt: ConnectorRuntime, health: MeterHealth) -> None:
        """A meter failing for fault_after_s faults its connector; its recovery clears that fault.

        The machine ends a running transaction on the fault; meterStop is then the meter's last
        good register, so the energy up to the failure is billed and nothing is counted twice.
        """
        raised = rt.machine.state.faulted_by(FaultSource.METER)
        if health.state == MeterState.FAILED and not raised:
            log.error("C%d meter failed (%s): PowerMeterFailure", rt.id, health.problem)
            fault = events.Fault(ErrorCode.POWER_METER_FAILURE, StopReason.OTHER, FaultSource.METER)
            self.dispatch(rt.id, fault)
        elif health.ok and raised:
            log.info("C%d meter answers again: PowerMeterFailure cleared", rt.id)
            self.dispatch(rt.id, events.ClearFault(FaultSource.METER))

    async def close(self) -> None:
        self.smart_charging.close()
        await self.availability.close()
        await self.operations.close()
        await self.metering.close()
        for rt in self.connectors.values():
            if rt.deadline is not None:
                rt.deadline.cancel()
            if rt.status_report is not None:
                rt.status_report.cancel()
        await self._tasks.cancel_all()
        await asyncio.gather(
            *(rt.meter.close() for rt in self.connectors.values()), return_exceptions=True
        )

    def snapshot(self) -> dict[str, Any]:
        """What `hilsim ctl status` prints."""
        from hilsim.status import connector_snapshot, link_snapshot  # not needed to start

        link = self.link
        now = self.clock()
        connectors = [
            connector_snapshot(rt, now, self.outbox.known_as(rt.id, rt.machine.state.local_id))
            for rt in self.connectors.values()
        ]
        return {
            "charge_point": link.charge_point_id,
            "csms": link_snapshot(link),
            "clock": self.wall.source,
            "last_authorization": self.authorizer.last_decision,
            "outbox": {
                "delivered": self.outbox.delivered,
                "dropped": self.outbox.dropped,
                "set_aside": self.outbox.set_aside,  # outbox_dead rows
            },
            "connectors": connectors,
            "smart_charging": self.smart_charging.snapshot(),
            "firmware": self.firmware.snapshot() if self.firmware else None,
            **self.availability.snapshot(),
            **(self.operations.snapshot() if self.operations else {}),
        }
