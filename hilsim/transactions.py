"""Transactions: recording a start and a stop, the local id <-> CSMS id, the outbox's delivery.

A transaction is known by its local id (the database's, given before the CSMS answers, so a
charger offline still charges and bills) and, once the CSMS confirmed StartTransaction, by the
CSMS's transactionId too. The outbox (`hilsim.outbox`) keeps the map and delivers the messages in
order; this service decides what a start or stop means for the connector's machine: a start
recorded is TransactionStarted, one refused later (an offline start the CSMS did not accept) is
DeAuthorized, and a stop the database does not take faults the connector until it does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from hilsim.clock import Clock
from hilsim.connectors import ConnectorRuntime, Dispatch
from hilsim.errors import HilsimError
from hilsim.evse import ErrorCode, FaultSource, StopReason, effects, events
from hilsim.meter import register_Wh
from hilsim.metering import Metering
from hilsim.ocpp.session import CsmsLink, LinkState
from hilsim.outbox import STORE_RETRY_S, Outbox
from hilsim.tasks import TaskSet

log = logging.getLogger(__name__)

#: Uses up the reservation a start may claim: (connector, idTag, reservationId) -> the id used.
ClaimReservation = Callable[[int, str, int | None], int | None]


class Transactions:
    """Carries out SendStartTransaction and SendStopTransaction, and owns nothing else."""

    def __init__(
        self,
        connectors: Mapping[int, ConnectorRuntime],
        link: CsmsLink,
        outbox: Outbox,
        metering: Metering,
        *,
        clock: Callable[[], float],
        wall: Clock,
        dispatch: Dispatch,
        claim_reservation: ClaimReservation,
        remember: Callable[[str, dict[str, Any]], Awaitable[None]],
        tasks: TaskSet,
    ) -> None:
        """``remember``: the authorization cache takes in the IdTagInfo of a start;
        ``tasks``: where the stops are recorded (what a shutdown waits for)."""
        self.connectors = connectors
        self.link = link
        self.outbox = outbox
        self.metering = metering
        self.clock = clock
        self.wall = wall
        self.dispatch = dispatch
        self.claim_reservation = claim_reservation
        self.remember = remember
        self._tasks = tasks
        outbox.start_confirmed_listeners.append(self._start_confirmed_late)

    def transaction_id(self, connector_id: int) -> int | None:
        """The CSMS's id of the connector's running transaction, once the CSMS gave one."""
        local_id = self.connectors[connector_id].machine.state.local_id
        return None if local_id is None else self.outbox.transaction_id(local_id)

    def connector_of(self, transaction_id: int) -> int | None:
        """The connector whose running transaction has the CSMS's id ``transaction_id``."""
        local_id = self.outbox.local_id(transaction_id)
        for rt in self.connectors.values():
            if local_id is not None and rt.machine.state.local_id == local_id:
                return rt.id
        return None

    def start_failed(self, rt: ConnectorRuntime, exc: BaseException) -> None:
        """The start task failed: the start is abandoned (refused if it had gone further)."""
        self.dispatch(rt.id, events.StartFailed(f"{type(exc).__name__}: {exc}"))

    async def start(self, rt: ConnectorRuntime, effect: effects.SendStartTransaction) -> None:
        """Record the start first, then wait (briefly) for the CSMS's id and verdict.

        Offline, or with a CSMS that does not answer in time, the transaction goes on under its
        local id, as a real charger's would; the StartTransaction waits in the outbox.
        """
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
            # a start may use up a reservation
            reservation_id = self.claim_reservation(rt.id, effect.id_tag, reservation_id)
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
            await self.remember(effect.id_tag, info)
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
            if rt.machine.state.local_id == local_id:
                log.warning("C%d idTag refused after an offline start; stopping", rt.id)
                self.dispatch(rt.id, events.EndTransaction(StopReason.DE_AUTHORIZED))

    def stop(self, rt: ConnectorRuntime, effect: effects.SendStopTransaction) -> None:
        reading = rt.meter.read(self.clock())
        meter_stop = register_Wh(reading.energy_Wh)
        stamp = self.wall.iso()
        local_id = effect.local_id
        log.info(
            "C%d transaction %s stopping (%s) at %d Wh",
            rt.id,
            self._describe(local_id),
            effect.reason,
            meter_stop,
        )
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

        self._tasks.spawn(self._record_stop(rt, local_id, record), f"stop-transaction-C{rt.id}")

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
                if not rt.machine.state.faulted_by(FaultSource.STORE):
                    fault = events.Fault(
                        ErrorCode.INTERNAL_ERROR, StopReason.OTHER, FaultSource.STORE
                    )
                    self.dispatch(rt.id, fault)
                await asyncio.sleep(pause)
                pause = min(pause * 2, STORE_RETRY_S[1])
        if rt.machine.state.faulted_by(FaultSource.STORE):
            log.info("C%d transaction %s: stop recorded at last", rt.id, self._describe(local_id))
            self.dispatch(rt.id, events.ClearFault(FaultSource.STORE))

    def _describe(self, local_id: int) -> str:
        csms = self.outbox.transaction_id(local_id)
        return str(csms) if csms is not None else f"(local {local_id})"
