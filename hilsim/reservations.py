"""Reservations (ReserveNow, CancelReservation): held by the connectors' machines and in SQLite.

A reservation for one connector is the machine's business: it shows Reserved, admits only the
reserving idTag or an idTag with the same parent, and expires on its own Tick. This module adds
what a machine cannot see:

* the answer to ReserveNow from the connector's state (Faulted, Unavailable, Occupied, Rejected);
* persistence, so a reservation survives a restart of the service until its expiryDate;
* reservations of the charge point as a whole (connector 0, OCPP 1.6 5.13): no connector is set
  aside while two or more are free, but the reservation is *placed* on the last free connector
  the moment only one is left, so that one stays for the reserving idTag. The reserving idTag may
  start on any connector while it is not placed; that start uses the reservation up.
* StartTransaction's reservationId for a start that used a reservation up.

Choices: a reservation whose expiryDate has already passed is Rejected; ReserveNow for an unknown
connector is Rejected; a connector already reserved under another reservationId, or with an EV
plugged in, an idTag waiting or a transaction running, is Occupied; ReserveNow with the id of an
existing reservation replaces it, on whichever connector it was (5.13).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from hilsim.clock import parse_iso, utc_iso
from hilsim.errors import StoreError
from hilsim.evse import Outcome, Status, effects, events, transition
from hilsim.store import ReservationRow, Store
from hilsim.tasks import TaskSet

if TYPE_CHECKING:
    from hilsim.connectors import ConnectorDispatcher

log = logging.getLogger(__name__)

Release = Callable[[], None]


class ReservationStatus(StrEnum):
    """ReserveNow.conf status, as on the wire."""

    ACCEPTED = "Accepted"
    FAULTED = "Faulted"
    OCCUPIED = "Occupied"
    REJECTED = "Rejected"
    UNAVAILABLE = "Unavailable"


class CancelStatus(StrEnum):
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"


def _nothing() -> None:
    return None


class Reservations:
    """Every reservation of the charge point, by reservationId."""

    def __init__(self, charger: ConnectorDispatcher, store: Store) -> None:
        self.charger = charger
        self.store = store
        self.rows: dict[int, ReservationRow] = {}
        #: reservations of connector 0, by id -> the connector they are placed on
        self.placed: dict[int, int] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._tasks = TaskSet("reservations")
        self._placing: asyncio.Handle | None = None
        charger.event_listeners.append(self._event_seen)
        charger.status_listeners.append(lambda *_: self._place_soon())

    # -- start-up ------------------------------------------------------------------------------

    async def restore(self) -> None:
        """Put the stored reservations back; the expired ones are forgotten."""
        for row in await self.store.reservations():
            expires_at = self._deadline(row.expiry_date)
            if expires_at is None:
                log.info("reservation %d expired while hilsim was down", row.reservation_id)
                await self.store.delete_reservation(row.reservation_id)
                continue
            if row.connector_id == 0:
                self._keep_virtual(row)
                continue
            event = self._reserve_event(row, expires_at)
            outcome = None
            if row.connector_id in self.charger.connectors:
                outcome = self.charger.dispatch(row.connector_id, event)
            if outcome is None or outcome.refused:
                why = outcome.refused if outcome else "no such connector"
                log.warning("reservation %d not restored: %s", row.reservation_id, why)
                await self.store.delete_reservation(row.reservation_id)
                continue
            self.rows[row.reservation_id] = row
            log.info("reservation %d restored on C%d", row.reservation_id, row.connector_id)
        self._place_soon()

    # -- ReserveNow ----------------------------------------------------------------------------

    async def reserve(
        self,
        connector_id: int,
        expiry_date: str,
        id_tag: str,
        reservation_id: int,
        parent_id_tag: str | None = None,
    ) -> tuple[ReservationStatus, Release]:
        row = ReservationRow(reservation_id, connector_id, id_tag, parent_id_tag, expiry_date)
        expires_at = self._deadline(expiry_date)
        if expires_at is None:
            why = "its expiryDate has passed or cannot be read"
            return self._refuse(row, ReservationStatus.REJECTED, why)
        if connector_id == 0:
            return await self._reserve_charge_point(row)
        rt = self.charger.connectors.get(connector_id)
        if rt is None:
            return self._refuse(row, ReservationStatus.REJECTED, "no such connector")
        state = rt.machine.state
        if state.error_code is not None:
            return self._refuse(row, ReservationStatus.FAULTED, f"C{connector_id} is faulted")
        if not state.operative:
            why = f"C{connector_id} is unavailable"
            return self._refuse(row, ReservationStatus.UNAVAILABLE, why)
        event = self._reserve_event(row, expires_at)
        # A reservation of the charge point placed here may become this connector's own.
        check = transition(state, event, rt.machine.policy, self.charger.clock())
        if check.refused:
            return self._refuse(row, ReservationStatus.OCCUPIED, check.refused)
        if not await self._save(row):
            return ReservationStatus.REJECTED, _nothing
        releases = self._unplace(reservation_id, keep_connector=connector_id)
        outcome = self.charger.dispatch(connector_id, event, hold=True)
        releases.append(self.charger.held(connector_id, outcome))
        self.rows[reservation_id] = row
        self._log_accepted(row)
        return ReservationStatus.ACCEPTED, _all(releases)

    async def _reserve_charge_point(
        self, row: ReservationRow
    ) -> tuple[ReservationStatus, Release]:
        if not self.charger.keys.get("ReserveConnectorZeroSupported"):
            return self._refuse(row, ReservationStatus.REJECTED, "ReserveConnectorZeroSupported")
        machines = [rt.machine for rt in self.charger.connectors.values()]
        free = [m for m in machines if m.status == Status.AVAILABLE]
        mine = self.placed.get(row.reservation_id)
        if not free and mine is None:
            if all(m.state.error_code is not None for m in machines):
                return self._refuse(row, ReservationStatus.FAULTED, "every connector is faulted")
            if all(m.state.error_code is not None or not m.state.operative for m in machines):
                why = "no connector is available"
                return self._refuse(row, ReservationStatus.UNAVAILABLE, why)
            return self._refuse(row, ReservationStatus.OCCUPIED, "no connector is free")
        if not await self._save(row):
            return ReservationStatus.REJECTED, _nothing
        releases = self._unplace(row.reservation_id)
        self._keep_virtual(row)
        self._log_accepted(row)
        return ReservationStatus.ACCEPTED, _all([*releases, self._place_soon])

    def _refuse(
        self, row: ReservationRow, status: ReservationStatus, why: str
    ) -> tuple[ReservationStatus, Release]:
        log.info(
            "ReserveNow %d on C%d for %s: %s (%s)",
            row.reservation_id,
            row.connector_id,
            row.id_tag,
            status,
            why,
        )
        return status, _nothing

    def _log_accepted(self, row: ReservationRow) -> None:
        parent = f" (parent {row.parent_id_tag})" if row.parent_id_tag else ""
        where = "the charge point" if row.connector_id == 0 else f"C{row.connector_id}"
        log.info(
            "reservation %d: %s reserved for %s%s until %s",
            row.reservation_id,
            where,
            row.id_tag,
            parent,
            row.expiry_date,
        )

    # -- CancelReservation ---------------------------------------------------------------------

    async def cancel(self, reservation_id: int) -> tuple[CancelStatus, Release]:
        row = self.rows.get(reservation_id)
        if row is None:
            log.info("CancelReservation %d: Rejected (no such reservation)", reservation_id)
            return CancelStatus.REJECTED, _nothing
        try:
            await self.store.delete_reservation(reservation_id)
        except StoreError as exc:
            log.error("CancelReservation %d: Rejected (%s)", reservation_id, exc)
            return CancelStatus.REJECTED, _nothing
        releases = self._unplace(reservation_id)
        self._forget(reservation_id, persist=False)
        log.info("reservation %d cancelled by the CSMS", reservation_id)
        return CancelStatus.ACCEPTED, _all(releases)

    # -- starts ----------------------------------------------------------------------------------

    def claim(self, connector_id: int, id_tag: str, reservation_id: int | None) -> int | None:
        """The reservationId a starting transaction uses up, if any (for StartTransaction).

        ``reservation_id`` is the one the connector's machine admitted the idTag to. A reservation
        of the charge point as a whole is used up by its idTag starting on any connector.
        """
        if reservation_id is not None:
            if reservation_id in self.rows:
                log.info("reservation %d used by %s on C%d", reservation_id, id_tag, connector_id)
                self._forget(reservation_id)
            return reservation_id
        for row in list(self.rows.values()):
            if row.connector_id != 0 or row.id_tag.casefold() != id_tag.casefold():
                continue
            releases = self._unplace(row.reservation_id)
            for release in releases:
                release()
            log.info("reservation %d used by %s on C%d", row.reservation_id, id_tag, connector_id)
            self._forget(row.reservation_id)
            return row.reservation_id
        return None

    # -- connector 0: placing on the last free connector ------------------------------------------

    def _keep_virtual(self, row: ReservationRow) -> None:
        self.rows[row.reservation_id] = row
        timer = self._timers.pop(row.reservation_id, None)
        if timer is not None:
            timer.cancel()
        expires_at = self._deadline(row.expiry_date)
        delay = 0.0 if expires_at is None else max(0.0, expires_at - self.charger.clock())
        loop = asyncio.get_running_loop()
        self._timers[row.reservation_id] = loop.call_later(
            delay, self._expire_virtual, row.reservation_id
        )

    def _expire_virtual(self, reservation_id: int) -> None:
        self._timers.pop(reservation_id, None)
        if reservation_id in self.placed:
            return  # the connector it is placed on expires it (same deadline) and says so
        if self.rows.get(reservation_id) is not None:
            log.info("reservation %d of the charge point expired", reservation_id)
            self._forget(reservation_id)

    def _place_soon(self) -> None:
        """Check placement once the current event is fully carried out (never re-entrantly)."""
        if self._placing is None:
            self._placing = asyncio.get_running_loop().call_soon(self._place)

    def _place(self) -> None:
        self._placing = None
        waiting = sorted(
            (
                row
                for row in self.rows.values()
                if row.connector_id == 0 and row.reservation_id not in self.placed
            ),
            key=_expiry_order,
        )
        for index, row in enumerate(waiting):
            connectors = self.charger.connectors.values()
            free = [rt for rt in connectors if rt.machine.status == Status.AVAILABLE]
            if not free or len(free) > len(waiting) - index:
                return
            expires_at = self._deadline(row.expiry_date)
            if expires_at is None:
                continue  # its timer forgets it
            rt = free[0]
            outcome = self.charger.dispatch(rt.id, self._reserve_event(row, expires_at))
            if outcome.accepted:
                self.placed[row.reservation_id] = rt.id
                log.info(
                    "reservation %d of the charge point placed on C%d, the last free connector",
                    row.reservation_id,
                    rt.id,
                )

    def _unplace(self, reservation_id: int, keep_connector: int | None = None) -> list[Release]:
        """Take a reservation off the connector it occupies now, before it is moved or ends."""
        releases: list[Release] = []
        timer = self._timers.pop(reservation_id, None)
        if timer is not None:
            timer.cancel()
        old = self.rows.get(reservation_id)
        where = self.placed.pop(reservation_id, None)
        if where is None and old is not None and old.connector_id != 0:
            where = old.connector_id
        if where is not None and where != keep_connector:
            outcome = self.charger.dispatch(
                where, events.CancelReservation(reservation_id), hold=True
            )
            if outcome.accepted:
                releases.append(self.charger.held(where, outcome))
        return releases

    # -- bookkeeping -----------------------------------------------------------------------------

    def _event_seen(self, connector_id: int, event: events.Event, outcome: Outcome) -> None:
        for effect in outcome.effects:
            if (
                isinstance(effect, effects.ReservationEnded)
                and effect.why == "expired"
                and effect.reservation_id in self.rows
            ):
                log.info("reservation %d expired on C%d", effect.reservation_id, connector_id)
                self._forget(effect.reservation_id)

    def _forget(self, reservation_id: int, *, persist: bool = True) -> None:
        self.rows.pop(reservation_id, None)
        self.placed.pop(reservation_id, None)
        timer = self._timers.pop(reservation_id, None)
        if timer is not None:
            timer.cancel()
        if persist:
            self._tasks.spawn(self._delete(reservation_id), f"delete-reservation-{reservation_id}")
        self._place_soon()

    async def _delete(self, reservation_id: int) -> None:
        try:
            await self.store.delete_reservation(reservation_id)
        except StoreError as exc:
            log.error("reservation %d: %s", reservation_id, exc)

    async def _save(self, row: ReservationRow) -> bool:
        try:
            await self.store.save_reservation(row)
        except StoreError as exc:
            log.error("ReserveNow %d: Rejected (%s)", row.reservation_id, exc)
            return False
        return True

    def _deadline(self, expiry_date: str) -> float | None:
        """The monotonic deadline of an expiryDate, or None when it has passed (or is garbage)."""
        try:
            expiry = parse_iso(expiry_date)
        except ValueError:
            return None
        remaining = (expiry - self.charger.wall.now()).total_seconds()
        if remaining <= 0:
            return None
        return self.charger.clock() + remaining

    @staticmethod
    def _reserve_event(row: ReservationRow, expires_at: float) -> events.Reserve:
        return events.Reserve(row.reservation_id, row.id_tag, expires_at, row.parent_id_tag)

    def snapshot(self) -> list[dict[str, Any]]:
        """For `hilsim ctl status`."""
        shown = []
        for row in sorted(self.rows.values(), key=lambda r: r.reservation_id):
            try:
                expiry = utc_iso(parse_iso(row.expiry_date))
            except (ValueError, OverflowError):  # OverflowError: beyond year 9999 in UTC, as
                expiry = row.expiry_date  # releases before the date range could store
            shown.append(
                {
                    "reservation_id": row.reservation_id,
                    "connector_id": row.connector_id,
                    "placed_on": self.placed.get(row.reservation_id, row.connector_id or None),
                    "id_tag": row.id_tag,
                    "parent_id_tag": row.parent_id_tag,
                    "expiry_date": expiry,
                }
            )
        return shown

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._placing is not None:
            self._placing.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _all(releases: list[Release]) -> Release:
    def release() -> None:
        for one in releases:
            one()

    return release


def _expiry_order(row: ReservationRow) -> tuple[int, float]:
    """Soonest expiry first, by the instant: the CSMS may write each date with its own UTC
    offset, so the text does not sort. One that cannot be read goes last (its timer ends it)."""
    try:
        return (0, parse_iso(row.expiry_date).timestamp())
    except ValueError:
        return (1, 0.0)
