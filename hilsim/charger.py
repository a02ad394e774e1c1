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
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hilsim.authorization import Authorizer
from hilsim.charging_limits import ChargingLimits
from hilsim.clock import Clock, utc_iso
from hilsim.config import ConnectorSettings
from hilsim.connectors import ConnectorRuntime
from hilsim.errors import HilsimError
from hilsim.evse import (
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
from hilsim.keys import Change, ChangeStatus, ConfigurationKeys, KeySpec
from hilsim.local_list import LocalAuthList
from hilsim.meter import (
    MeterHealth,
    MeterReading,
    MeterSource,
    MeterState,
    SyntheticMeter,
    register_Wh,
)
from hilsim.metering import Metering
from hilsim.ocpp.ports import ConfigurationEntry, Release, nothing
from hilsim.ocpp.session import CsmsLink, LinkState
from hilsim.operations import Operations
from hilsim.outbox import STORE_RETRY_S, Outbox
from hilsim.smart_charging import ProfileRejected
from hilsim.store import Store, save_key
from hilsim.tasks import TaskSet

if TYPE_CHECKING:
    from hilsim.firmware import Firmware

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
    ) -> None:
        """`meters`: connector id -> its meter source; the others get the synthetic counter."""
        self.keys = keys
        self.store = store
        self.clock = clock  # monotonic: the machines' deadlines
        self.wall = wall or Clock()  # what OCPP timestamps say
        self.link = link
        self.status_listeners: list[StatusListener] = []
        self.link_listeners: list[LinkListener] = []
        #: told of every event fed to a machine and its outcome (for logs, the web view, tests)
        self.event_listeners: list[EventListener] = []
        #: the last idTag decision (connector, id_tag, status, source, at): `hilsim ctl status`
        self.last_authorization: dict[str, Any] | None = None
        #: told of every idTag decision, after the machine took it: `hilsim ctl tag`'s answer
        self.authorization_listeners: list[Callable[[int, dict[str, Any]], None]] = []
        self._voltage_overridden = voltage_overridden
        self._tasks = TaskSet("charger")
        self._reported: tuple[list[Any], list[ConfigurationEntry]] = ([], [])  # get_configuration
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
        #: smart charging: the installed profiles and the limits they put on the connectors
        self.smart_charging = ChargingLimits(self)
        #: firmware version, UpdateFirmware and GetDiagnostics (the service attaches it)
        self.firmware: Firmware | None = None
        self.outbox = Outbox(self.store, link, self.keys, self._start_confirmed_late)
        local_list = LocalAuthList(self.store, self.keys)
        self.authorizer = Authorizer(self.store, self.keys, link, self.wall, local_list)
        authorizer = self.authorizer  # StopTransaction's IdTagInfo feeds the cache too
        self.outbox.id_tag_info_listeners.append(
            lambda id_tag, info: self._spawn(authorizer.remember(id_tag, info), "cache-id-tag")
        )
        self.metering = Metering(
            self.connectors, keys, link, self.outbox,
            clock=self.clock, wall=self.wall, dispatch=self.dispatch,
            transaction_id=self.transaction_id, tasks=self._tasks,
        )  # fmt: skip
        #: availability, reset, reservations, ...
        self.operations = Operations(self, link, self.authorizer, local_list, self.metering)

    def transaction_id(self, connector_id: int) -> int | None:
        """The CSMS's id of the connector's running transaction, once the CSMS gave one."""
        local = self.connectors[connector_id].machine.state.transaction_id
        if local is None or self.outbox is None:
            return None
        return self.outbox.transaction_id(local)

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
                        self._authorize(rt, effect.id_tag),
                        f"authorize-C{rt.id}",
                        lambda exc, rt=rt, tag=effect.id_tag: self._authorize_failed(rt, tag, exc),
                    )
                case effects.SendStartTransaction():
                    self._spawn(
                        self._start_transaction(rt, effect),
                        f"start-transaction-C{rt.id}",
                        lambda exc, rt=rt: self._start_failed(rt, exc),
                    )
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
        self.metering.connector_changed(rt)
        self.smart_charging.connector_changed(rt)
        self._report_status(rt, effect.status, effect.error_code)
        for listener in self.status_listeners:
            listener(rt.id, effect.status, effect.error_code)
        if effect.status != Status.FAULTED and rt.meter.health.state == MeterState.FAILED:
            # Another fault ended (or a person cleared this one) while the meter is still dead.
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

    async def _authorize(self, rt: ConnectorRuntime, id_tag: str) -> None:
        assert self.authorizer is not None
        decision = await self.authorizer.authorize(id_tag)
        log.info("C%d idTag %s: %s (%s)", rt.id, id_tag, decision.status, decision.source)
        self.last_authorization = {
            "connector": rt.id,
            "id_tag": id_tag,
            "status": decision.status,
            "source": decision.source,
            "at": self.wall.iso(),
        }
        self.dispatch(
            rt.id, events.AuthorizeResult(id_tag, decision.status, decision.parent_id_tag)
        )
        for listener in list(self.authorization_listeners):
            listener(rt.id, self.last_authorization)

    def _authorize_failed(self, rt: ConnectorRuntime, id_tag: str, exc: BaseException) -> None:
        """No decision came (the task failed): the tag is refused, the connector usable again."""
        log.error("C%d idTag %s: no authorization decision (%s); treated as Invalid",
                  rt.id, id_tag, exc)  # fmt: skip
        self.dispatch(rt.id, events.AuthorizeResult(id_tag, "Invalid"))

    def _start_failed(self, rt: ConnectorRuntime, exc: BaseException) -> None:
        """The start task failed: the start is abandoned (refused if it had gone further)."""
        self.dispatch(rt.id, events.StartFailed(f"{type(exc).__name__}: {exc}"))

    async def _start_transaction(
        self, rt: ConnectorRuntime, effect: effects.SendStartTransaction
    ) -> None:
        """Record the start first, then wait (briefly) for the CSMS's id and verdict.

        Offline, or with a CSMS that does not answer in time, the transaction goes on under its
        local id, as a real charger's would; the StartTransaction waits in the outbox.
        """
        assert self.outbox is not None and self.link is not None
        health = rt.meter.health
        if not health.ok and rt.meter.read(self.clock()).taken_at is None:
            # A meter that never answered has no register yet: meterStart would be made up, and
            # the transaction would bill the meter's whole count once it answers.
            log.warning("C%d cannot start: meter %s", rt.id, health.describe())
            self.dispatch(rt.id, events.StartFailed(f"meter {health.describe()}"))
            return
        meter_start = register_Wh(rt.meter.read(self.clock()).energy_Wh)
        stamp = self.wall.iso()
        try:
            reservation_id = effect.reservation_id
            if self.operations is not None:  # a start may use up a reservation
                reservation_id = self.operations.reservations.claim(
                    rt.id, effect.id_tag, reservation_id
                )
            local_id = await self.outbox.start(
                rt.id, effect.id_tag, meter_start, stamp, reservation_id
            )
        except HilsimError as exc:
            log.error("C%d cannot record the transaction start: %s", rt.id, exc)
            self.dispatch(rt.id, events.StartFailed(str(exc)))
            return
        self.metering.transaction_began(rt.id, local_id)  # for StopTxnSampledData
        answer = None
        if self.link.state == LinkState.CONNECTED:
            answer = await self.outbox.wait_confirmed(local_id, self.link.response_timeout)
        if answer is None:
            log.warning("C%d transaction started offline (local id %d)", rt.id, local_id)
            status = "Accepted"
        else:
            transaction_id, info = answer
            status = str(info.get("status", "Invalid"))
            log.info(
                "C%d transaction %d started for %s (%s)",
                rt.id,
                transaction_id,
                effect.id_tag,
                status,
            )
            if self.authorizer is not None:
                await self.authorizer.remember(effect.id_tag, info)
        self.dispatch(rt.id, events.TransactionStarted(local_id, status))

    def _start_confirmed_late(
        self, local_id: int, transaction_id: int, info: dict[str, Any]
    ) -> None:
        """A StartTransaction sent from the outbox after an offline start was confirmed."""
        status = str(info.get("status", "Invalid"))
        log.info("transaction %d (local %d) confirmed: %s", transaction_id, local_id, status)
        if status == "Accepted":
            return
        for rt in self.connectors.values():
            if rt.machine.state.transaction_id == local_id:
                log.warning("C%d idTag refused after an offline start; stopping", rt.id)
                self.dispatch(rt.id, events.EndTransaction(StopReason.DE_AUTHORIZED))

    def _stop_transaction(self, rt: ConnectorRuntime, effect: effects.SendStopTransaction) -> None:
        reading = rt.meter.read(self.clock())
        meter_stop = register_Wh(reading.energy_Wh)
        stamp = self.wall.iso()
        local_id = effect.transaction_id
        log.info(
            "C%d transaction %s stopping (%s) at %d Wh",
            rt.id,
            self._describe(local_id),
            effect.reason,
            meter_stop,
        )
        assert self.outbox is not None
        end = self.metering.transaction_end(rt.id)
        outbox = self.outbox

        def record() -> Awaitable[None]:
            return outbox.stop(
                local_id,
                rt.id,
                meter_stop,
                reading.energy_Wh,
                stamp,
                effect.reason,
                effect.id_tag,
                end,
            )

        self._spawn(self._record_stop(rt, local_id, record), f"stop-transaction-C{rt.id}")

    async def _record_stop(
        self, rt: ConnectorRuntime, local_id: int, record: Callable[[], Awaitable[None]]
    ) -> None:
        """Write the stop (and queue its StopTransaction) until the database takes it.

        Meanwhile the connector is Faulted (InternalError): a charge point that cannot record
        a stop must not start the next transaction. Each try is one commit, all or nothing.
        """
        pause = STORE_RETRY_S[0]
        while True:
            try:
                await record()
                break
            except HilsimError as exc:
                log.error(
                    "C%d transaction %s: its stop is not recorded (%s); Faulted (InternalError) "
                    "until it is, next try in %g s",
                    rt.id, self._describe(local_id), exc, pause,
                )  # fmt: skip
                if not rt.store_fault and rt.machine.state.error_code is None:
                    event = events.Fault(ErrorCode.INTERNAL_ERROR, StopReason.OTHER)
                    rt.store_fault = not self.dispatch(rt.id, event).refused
                await asyncio.sleep(pause)
                pause = min(pause * 2, STORE_RETRY_S[1])
        if rt.store_fault:
            rt.store_fault = False
            log.info("C%d transaction %s: stop recorded at last", rt.id, self._describe(local_id))
            if rt.machine.state.error_code == ErrorCode.INTERNAL_ERROR:
                self.dispatch(rt.id, events.ClearFault())

    def _describe(self, local_id: int) -> str:
        csms = self.outbox.transaction_id(local_id) if self.outbox else None
        return str(csms) if csms is not None else f"(local {local_id})"

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
        whole = self.operations.charge_point_status() if self.operations else Status.AVAILABLE
        self._send_status(0, whole, ErrorCode.NO_ERROR)
        for rt in self.connectors.values():
            self._send_status(rt.id, *rt.ocpp_status)

    def learn_time(self, current_time: str) -> None:
        self.wall.learn(current_time)
        # The wall clock may have moved: the next schedule boundary is timed again from it.
        self.smart_charging.recompute()

    def adopt_heartbeat_interval(self, seconds: int) -> None:
        if seconds != self.keys.get("HeartbeatInterval"):
            status, spec, value = self.keys.change("HeartbeatInterval", str(seconds))
            if status == ChangeStatus.accepted and spec is not None:
                self._spawn(self.store.save_key(spec.name, spec.format(value)), "save-key")

    # -- the ChargerPort: what the OCPP handlers ask -------------------------------------------

    def get_configuration(
        self, keys: Sequence[str] | None
    ) -> tuple[list[ConfigurationEntry], list[str]]:
        known, unknown = self.keys.report(keys)
        # A CSMS polls every key over and over: while the values read the same, so do the entries
        # (and the OCPP client reuses its answer for the same entries).
        if known != self._reported[0]:
            entries = [ConfigurationEntry(s.name, s.readonly, text) for s, text in known]
            self._reported = (known, entries)
        return self._reported[1], unknown

    async def change_configuration(self, key: str, value: str) -> str:
        return str((await self.configure(key, value)).status)

    async def configure(self, key: str, value: str) -> Change:
        """ChangeConfiguration and `hilsim config set`: validated, persisted (committed before
        the answer, so Accepted survives a power cut), then applied (`ConfigurationKeys.set`)."""
        change = await self.keys.set(key, value, save_key(self.store))
        spec = change.spec
        if change.status == ChangeStatus.accepted and spec is not None:
            assert change.value is not None
            log.info("configuration %s = %s", spec.name, spec.shown(change.value))
        else:
            shown = "(not shown)" if spec is not None and spec.writeonly else repr(value)
            log.info("configuration %s = %s refused: %s (%s)", key, shown, change.status,
                     change.why)  # fmt: skip
        return change

    async def set_charging_profile(self, connector_id: int, profile: dict[str, Any]) -> str:
        """Install a profile; the composite of all of them is applied (hilsim.charging_limits)."""
        return await self.smart_charging.set(connector_id, profile)

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
        local_id = self.outbox.local_id(transaction_id) if self.outbox else None
        for rt in self.connectors.values():
            if local_id is not None and rt.machine.state.transaction_id == local_id:
                outcome = self.dispatch(rt.id, events.RemoteStop(local_id), hold=True)
                if outcome.accepted:
                    return "Accepted", self.held(rt.id, outcome)
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
        if self.outbox is not None and link is not None and link.state == LinkState.CONNECTED:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.outbox.drained(), timeout)

    async def start(self) -> None:
        """Start each connector's meter (a polled one tries its first poll); watch its health.

        What the CSMS set before the last stop (availability, local list, reservations) is put
        back first.
        """
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
        state = rt.machine.state
        if health.state == MeterState.FAILED:
            if state.error_code is not None:
                return  # already Faulted; re-checked when that fault ends
            log.error("C%d meter failed (%s): PowerMeterFailure", rt.id, health.problem)
            event = events.Fault(ErrorCode.POWER_METER_FAILURE, StopReason.OTHER)
            rt.meter_fault = not self.dispatch(rt.id, event).refused
        elif health.ok and rt.meter_fault:
            rt.meter_fault = False
            if state.error_code == ErrorCode.POWER_METER_FAILURE:
                log.info("C%d meter answers again: PowerMeterFailure cleared", rt.id)
                self.dispatch(rt.id, events.ClearFault())

    async def close(self) -> None:
        self.smart_charging.close()
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
                    "error_code": str(rt.ocpp_status[1]),
                    "plugged": state.plugged,
                    "transaction_id": self.transaction_id(rt.id),
                    "local_transaction_id": state.transaction_id,
                    "id_tag": tx.id_tag if tx else None,
                    "energy_Wh": round(reading.energy_Wh, 1),
                    "power_W": _round(reading.power_W, 1),
                    "current_A": _round(reading.current_A, 2),
                    "voltage_V": _round(reading.voltage_V, 1),
                    "soc": round(rt.vehicle.soc(reading.energy_Wh), 1) if tx else None,
                    "limit_W": rt.limit_W,
                    "max_power_W": rt.settings.max_power_W,
                    "phases": rt.phases,
                    "meter": _meter_status(rt.meter, reading, now),
                }
            )
        return {
            "charge_point": link.charge_point_id if link else None,
            "csms": {
                "url": link.endpoint if link else None,
                "state": str(link.state) if link else "disconnected",
                "connected_since": _iso_or_none(link.connected_since if link else None),
                "last_message_at": _iso_or_none(link.last_message_at if link else None),
                "security": link.security.snapshot() if link and link.security else None,
            },
            "clock": self.wall.source,
            "last_authorization": self.last_authorization,
            "outbox": {
                "delivered": self.outbox.delivered if self.outbox else 0,
                "dropped": self.outbox.dropped if self.outbox else 0,
                "set_aside": self.outbox.set_aside if self.outbox else 0,  # outbox_dead rows
            },
            "connectors": connectors,
            "smart_charging": self.smart_charging.snapshot(),
            "firmware": self.firmware.snapshot() if self.firmware else None,
            **(self.operations.snapshot() if self.operations else {}),
        }


def _iso_or_none(wall: float | None) -> str | None:
    if wall is None:
        return None
    return utc_iso(datetime.fromtimestamp(wall, UTC))


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _meter_status(meter: MeterSource, reading: MeterReading, now: float) -> dict[str, Any]:
    """The meter part of `ctl status`: where it is, whether it answers, and per-phase values."""
    health = meter.health
    return {
        "source": meter.description,
        "health": str(health.state),
        "problem": str(health.problem) if health.problem else None,
        "detail": health.detail or None,
        "for_s": round(now - health.since, 1) if health.problem else None,
        "reading_age_s": None if reading.taken_at is None else round(now - reading.taken_at, 1),
        "frequency_Hz": _round(reading.frequency_Hz, 2),
        "phases": [
            {
                "phase": p.phase,
                "energy_Wh": _round(p.energy_Wh, 1),
                "power_W": _round(p.power_W, 1),
                "current_A": _round(p.current_A, 2),
                "voltage_V": _round(p.voltage_V, 1),
            }
            for p in reading.phases
        ],
    }
