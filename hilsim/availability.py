"""Availability and Reset: the one owner of whether the charge point and its connectors may be
used, and of a reset in progress (OCPP 1.6 5.2 ChangeAvailability, 5.14 Reset).

The availability the CSMS sets is persisted before it is answered, put back before the charge
point connects again, and applied by the connectors' machines (which schedule a change asked for
during a transaction); this module keeps what the CSMS set, per connector and for connector 0,
and reports connector 0's status.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from hilsim.connectors import ConnectorDispatcher
from hilsim.errors import StoreError
from hilsim.evse import ErrorCode, Status, StopReason, events
from hilsim.ocpp.ports import Release, nothing
from hilsim.ocpp.session import CsmsLink, LinkState
from hilsim.tasks import TaskSet

if TYPE_CHECKING:
    from hilsim.store import Store

log = logging.getLogger(__name__)


class AvailabilityStatus(StrEnum):
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    SCHEDULED = "Scheduled"


class ResetType(StrEnum):
    HARD = "Hard"
    SOFT = "Soft"


class AvailabilityHost(ConnectorDispatcher, Protocol):
    """What availability and reset need of the charger beyond its connectors."""

    @property
    def store(self) -> Store: ...
    @property
    def status_listeners(self) -> list[Callable[[int, Status, ErrorCode], None]]: ...
    async def end_all_transactions(self, reason: StopReason, timeout: float = 5.0) -> None: ...


class Availability:
    """ChangeAvailability and Reset: the `AvailabilityPort` the OCPP handlers talk to."""

    def __init__(
        self,
        charger: AvailabilityHost,
        link: CsmsLink,
        *,
        hard_reset: Callable[[], None] | None = None,
    ) -> None:
        """``hard_reset``: ends the service and starts the program afresh; without it a Hard
        reset cannot be carried out and is Rejected."""
        self.charger = charger
        self.link = link
        #: connector id (0: the charge point as a whole) -> operative, as the CSMS last set it
        self.availability: dict[int, bool] = {}
        self.hard_reset = hard_reset
        #: The reset in progress ("Soft" or "Hard"), if any; a second one is Rejected meanwhile.
        self.resetting: ResetType | None = None
        #: awaited before the reset starts (set by `reset_when_idle`)
        self._before_reset: Callable[[], Awaitable[None]] | None = None
        self._tasks = TaskSet("availability")

    async def restore(self) -> None:
        """Put back what the CSMS set before the last stop, before the charge point connects."""
        self.availability = await self.charger.store.availability()
        for connector_id in self.charger.connectors:
            if not self.operative(connector_id):
                log.info("C%d is Inoperative, as the CSMS left it", connector_id)
                self.charger.dispatch(connector_id, events.ChangeAvailability(False))

    async def close(self) -> None:
        await self._tasks.cancel_all()

    # -- ChangeAvailability --------------------------------------------------------------------

    def operative(self, connector_id: int) -> bool:
        """Whether a connector may be used: it and the charge point as a whole are Operative."""
        return self.availability.get(0, True) and self.availability.get(connector_id, True)

    def charge_point_status(self) -> Status:
        """The status of connector 0, the charge point as a whole."""
        return Status.AVAILABLE if self.availability.get(0, True) else Status.UNAVAILABLE

    async def change_availability(
        self, connector_id: int, operative: bool
    ) -> tuple[AvailabilityStatus, Release]:
        """Persisted before the answer: a charger made Inoperative stays so after a reboot.

        Scheduled when a transaction runs on a connector that is to become Inoperative; its
        machine applies the change when the transaction ends.
        """
        wanted = "Operative" if operative else "Inoperative"
        if connector_id != 0 and connector_id not in self.charger.connectors:
            why = "no such connector"
            log.info("ChangeAvailability C%d %s: Rejected (%s)", connector_id, wanted, why)
            return AvailabilityStatus.REJECTED, nothing
        try:
            await self.charger.store.save_availability(connector_id, operative)
        except StoreError as exc:
            log.error("ChangeAvailability C%d %s: Rejected (%s)", connector_id, wanted, exc)
            return AvailabilityStatus.REJECTED, nothing
        was = self.charge_point_status()
        self.availability[connector_id] = operative
        targets = list(self.charger.connectors) if connector_id == 0 else [connector_id]
        releases: list[Release] = []
        scheduled = False
        for cid in targets:
            effective = self.operative(cid)
            state = self.charger.connectors[cid].machine.state
            if state.operative == effective and state.scheduled_operative is None:
                continue
            outcome = self.charger.dispatch(cid, events.ChangeAvailability(effective), hold=True)
            if outcome.accepted:
                releases.append(self.charger.held(cid, outcome))
                scheduled = scheduled or outcome.state.scheduled_operative is not None
        if self.charge_point_status() != was:
            releases.append(self.send_charge_point_status)
        status = AvailabilityStatus.SCHEDULED if scheduled else AvailabilityStatus.ACCEPTED
        where = "the charge point" if connector_id == 0 else f"C{connector_id}"
        log.info("ChangeAvailability %s %s: %s", where, wanted, status)
        return status, _all(releases)

    def send_charge_point_status(self, error_code: ErrorCode = ErrorCode.NO_ERROR) -> None:
        """StatusNotification for connector 0, if connected (else sent after the next boot)."""
        if self.link.state != LinkState.CONNECTED:
            return  # sent with the others after the next BootNotification
        status, stamp = self.charge_point_status(), self.charger.wall.iso()
        self.link.submit(
            lambda c: c.status_notification(0, status, error_code, stamp),
            "StatusNotification C0",
            quiet=True,
        )

    # -- Reset ---------------------------------------------------------------------------------

    def reset(self, reset_type: str) -> tuple[str, Release]:
        """Soft: stop transactions (SoftReset) and connect again. Hard: stop them (HardReset),
        end the service cleanly and start the program afresh (see `hilsim.restart`).
        """
        kind = ResetType(reset_type)
        if self.resetting is not None:
            log.info("Reset %s: Rejected (a %s reset is in progress)", kind, self.resetting)
            return "Rejected", nothing
        if kind == ResetType.HARD and self.hard_reset is None:
            log.info("Reset Hard: Rejected (no service to restart)")
            return "Rejected", nothing
        self.resetting = kind
        log.warning("Reset %s requested by the CSMS", kind)
        return "Accepted", lambda: self._spawn(self._reset(kind), f"reset-{kind}")

    def reset_when_idle(
        self, reset_type: str, before: Callable[[], Awaitable[None]] | None = None
    ) -> tuple[str, Release]:
        """Reset once no transaction runs (OCPP 2.0.1 Reset OnIdle): as `reset` at once when
        none does; otherwise "Scheduled", and the reset starts when the last transaction has
        ended (the connectors' status changes say when). Rejected like `reset`.
        ``before``: awaited first, whenever the reset starts (the 2.0.1 layer's ResetOrReboot).
        """
        kind = ResetType(reset_type)
        if self.resetting is None:
            self._before_reset = before
        if not self._transaction_running():
            return self.reset(kind)
        if self.resetting is not None:
            log.info("Reset %s: Rejected (a %s reset is in progress)", kind, self.resetting)
            return "Rejected", nothing
        if kind == ResetType.HARD and self.hard_reset is None:
            log.info("Reset Hard: Rejected (no service to restart)")
            return "Rejected", nothing
        self.resetting = kind
        log.warning("Reset %s requested by the CSMS, once no transaction runs", kind)
        return "Scheduled", lambda: self.charger.status_listeners.append(self._reset_if_idle)

    def _reset_if_idle(self, connector_id: int, status: Status, error_code: ErrorCode) -> None:
        # Told of every status change; the machine has taken the event in by now, but the
        # transaction's end is carried out by the same dispatch: look once it is done.
        asyncio.get_running_loop().call_soon(self._start_waiting_reset)

    def _start_waiting_reset(self) -> None:
        kind = self.resetting
        if kind is None or self._transaction_running():
            return
        if self._reset_if_idle in self.charger.status_listeners:
            self.charger.status_listeners.remove(self._reset_if_idle)
            log.warning("Reset %s: no transaction runs any more, resetting", kind)
            self._spawn(self._reset(kind), f"reset-{kind}")

    def _transaction_running(self) -> bool:
        return any(
            rt.machine.state.transaction is not None for rt in self.charger.connectors.values()
        )

    async def _reset(self, kind: ResetType) -> None:
        before, self._before_reset = self._before_reset, None
        if before is not None:
            try:
                await before()
            except Exception:
                log.exception("the step before Reset %s failed; resetting anyway", kind)
        if kind == ResetType.HARD:
            assert self.hard_reset is not None
            self.hard_reset()  # the service stops transactions with reason HardReset
            return
        try:
            await self.charger.end_all_transactions(StopReason.SOFT_RESET)
            log.warning("Reset Soft: connecting to the CSMS again")
            await self.link.reconnect()
        finally:
            self.resetting = None

    def _spawn(self, work: Awaitable[Any], name: str) -> None:
        self._tasks.spawn(work, name)

    # -- for `hilsim ctl status` -----------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        connectors = self.charger.connectors
        return {
            "charge_point_status": str(self.charge_point_status()),
            "availability": {
                str(cid): {
                    "set": "Operative" if self.availability.get(cid, True) else "Inoperative",
                    "scheduled": _scheduled(connectors[cid].machine.state.scheduled_operative)
                    if cid in connectors
                    else None,
                }
                for cid in [0, *connectors]
            },
            "reset": None if self.resetting is None else str(self.resetting),
        }


def _scheduled(value: bool | None) -> str | None:
    if value is None:
        return None
    return "Operative" if value else "Inoperative"


def _all(releases: list[Release]) -> Release:
    def release() -> None:
        for one in releases:
            one()

    return release
