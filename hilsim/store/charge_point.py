"""What the CSMS set on the charge point and a real charger keeps across a reboot.

Each connector's availability (ChangeAvailability), reservations (ReserveNow), the charging
profiles installed (SetChargingProfile) and the firmware record an UpdateFirmware leaves.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from hilsim.store.database import Database, now

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReservationRow:
    """A reservation as stored, so that it outlives a restart."""

    reservation_id: int
    connector_id: int  # 0: the charge point as a whole
    id_tag: str
    parent_id_tag: str | None
    expiry_date: str  # as the CSMS sent it


class ChargePointRepository:
    """Availability, reservations, charging profiles and firmware, through the writer lock."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._db = database.connection

    async def availability(self) -> dict[int, bool]:
        """Connector id (0: the whole charge point) -> operative, for those ever changed."""
        rows = await self._database.guard(
            "read connector availability",
            lambda: self._db.execute_fetchall(
                "SELECT connector_id, operative FROM connector_availability"
            ),
        )
        return {int(cid): bool(operative) for cid, operative in rows}

    async def save_availability(self, connector_id: int, operative: bool) -> None:
        async def run() -> None:
            async with self._database.transaction(durable=True):
                await self._db.execute(
                    """
                    INSERT INTO connector_availability (connector_id, operative, updated_at)
                    VALUES (?, ?, ?)
                    ON CONFLICT (connector_id) DO UPDATE
                        SET operative = excluded.operative, updated_at = excluded.updated_at
                    """,
                    (connector_id, int(operative), now()),
                )

        await self._database.guard("save connector availability", run)

    async def reservations(self) -> list[ReservationRow]:
        rows = await self._database.guard(
            "read reservations",
            lambda: self._db.execute_fetchall(
                """
                SELECT reservation_id, connector_id, id_tag, parent_id_tag, expiry_date
                FROM reservation ORDER BY reservation_id
                """
            ),
        )
        return [ReservationRow(row[0], row[1], row[2], row[3], row[4]) for row in rows]

    async def save_reservation(self, row: ReservationRow) -> None:
        """Record a reservation, replacing one with the same id (OCPP 1.6 5.13)."""

        async def run() -> None:
            async with self._database.transaction():
                await self._db.execute(
                    """
                    INSERT INTO reservation (reservation_id, connector_id, id_tag, parent_id_tag,
                        expiry_date, created_at)
                    VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT (reservation_id) DO UPDATE
                        SET connector_id = excluded.connector_id, id_tag = excluded.id_tag,
                            parent_id_tag = excluded.parent_id_tag,
                            expiry_date = excluded.expiry_date
                    """,
                    (
                        row.reservation_id,
                        row.connector_id,
                        row.id_tag,
                        row.parent_id_tag,
                        row.expiry_date,
                        now(),
                    ),
                )

        await self._database.guard("save a reservation", run)

    async def delete_reservation(self, reservation_id: int) -> None:
        async def run() -> None:
            async with self._database.transaction():
                await self._db.execute(
                    "DELETE FROM reservation WHERE reservation_id = ?", (reservation_id,)
                )

        await self._database.guard("delete a reservation", run)

    async def charging_profiles(self) -> list[tuple[int, str]]:
        """Every stored charging profile: (connector id, its JSON), oldest first."""
        rows = await self._database.guard(
            "read charging profiles",
            lambda: self._db.execute_fetchall(
                "SELECT connector_id, payload FROM charging_profile ORDER BY installed_at, rowid"
            ),
        )
        return [(int(connector_id), str(payload)) for connector_id, payload in rows]

    async def replace_charging_profiles(
        self,
        removed: Sequence[int],
        added: tuple[int, int, str, int, str] | None = None,
    ) -> None:
        """Delete profiles by id and add one (id, connector, purpose, stack level, JSON) at once.

        Committed durably before the CSMS hears Accepted: a profile must survive a power cut.
        """

        async def run() -> None:
            async with self._database.transaction(durable=True):
                await self._db.executemany(
                    "DELETE FROM charging_profile WHERE profile_id = ?", [(i,) for i in removed]
                )
                if added is not None:
                    await self._db.execute(
                        """
                        INSERT OR REPLACE INTO charging_profile
                            (profile_id, connector_id, purpose, stack_level, payload, installed_at)
                        VALUES (?, ?, ?, ?, ?, ?)
                        """,
                        (*added, now()),
                    )

        await self._database.guard("save charging profiles", run)

    async def firmware(self) -> tuple[str, str | None, int | None] | None:
        """The installed firmware version, the status to report after its reboot and the 2.0.1
        requestId that status belongs to, if any."""
        rows = await self._database.guard(
            "read the firmware record",
            lambda: self._db.execute_fetchall(
                "SELECT version, pending_status, request_id FROM firmware WHERE id = 1"
            ),
        )
        for version, pending, request_id in rows:
            return str(version), pending, None if request_id is None else int(request_id)
        return None

    async def save_firmware(
        self, version: str, pending_status: str | None, request_id: int | None = None
    ) -> None:
        async def run() -> None:
            async with self._database.transaction(durable=True):
                await self._db.execute(
                    """
                    INSERT INTO firmware (id, version, pending_status, request_id, updated_at)
                    VALUES (1, ?, ?, ?, ?)
                    ON CONFLICT (id) DO UPDATE
                        SET version = excluded.version, pending_status = excluded.pending_status,
                            request_id = excluded.request_id, updated_at = excluded.updated_at
                    """,
                    (version, pending_status, request_id, now()),
                )

        await self._database.guard("save the firmware record", run)
