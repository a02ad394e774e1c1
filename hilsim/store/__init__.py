"""Persistent state in SQLite, via aiosqlite so disk writes never stall the OCPP event loop.

One module per table group, all on one connection behind one writer lock (hilsim.store.database):

- database: the file (its lock, permissions, private modes, a corrupt file moved aside), the
  connection, the writer lock and `Database.transaction`;
- migrations: the schema, as ordered scripts;
- keys: configuration keys; transactions: transactions, samples, transaction data, the outbox
  and what was set aside from it; authorization: the authorization cache and the local list;
  charge_point: availability, reservations, charging profiles and firmware; variables: the
  OCPP 2.0.1 device-model values that are no 1.6 configuration key.

`Store` is what the services hold: it opens the database and answers for every table group by
handing each call to that group's repository (also reachable as `store.keys`,
`store.transaction_log`, `store.authorizations`, `store.charge_point`, `store.variables`).
Storage depends on nothing but hilsim.errors: turning stored text into configuration keys is
hilsim.stored_keys'.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from hilsim.store.authorization import AuthorizationRepository, CachedIdTag, ListedIdTag
from hilsim.store.charge_point import ChargePointRepository, ReservationRow
from hilsim.store.database import PRIVATE_MODE, Database, DatabaseLock, lock_path_of
from hilsim.store.keys import KeyRepository
from hilsim.store.migrations import MIGRATIONS
from hilsim.store.transactions import (
    OutboxEntry,
    SetAsideEntry,
    TransactionRepository,
    TransactionRow,
)
from hilsim.store.variables import VariableAddress, VariableRepository

__all__ = [
    "MIGRATIONS",
    "PRIVATE_MODE",
    "AuthorizationRepository",
    "CachedIdTag",
    "ChargePointRepository",
    "Database",
    "DatabaseLock",
    "KeyRepository",
    "ListedIdTag",
    "OutboxEntry",
    "ReservationRow",
    "SetAsideEntry",
    "Store",
    "TransactionRepository",
    "TransactionRow",
    "VariableAddress",
    "VariableRepository",
    "lock_path_of",
]

logger = logging.getLogger(__name__)


class Store:
    """SQLite on the SD card: every table group's repository over one `Database`."""

    def __init__(self, database: Database) -> None:
        """Use `Store.open`; this only composes the repositories over an open database."""
        self.database = database
        self.path = database.path
        self.keys = KeyRepository(database)
        self.transaction_log = TransactionRepository(database)
        self.authorizations = AuthorizationRepository(database)
        self.charge_point = ChargePointRepository(database)
        self.variables = VariableRepository(database)

    @classmethod
    async def open(cls, path: str | Path, *, holder: str = "") -> Store:
        """Lock, open (creating if needed) and migrate the database at `path` (`Database.open`)."""
        return cls(await Database.open(path, holder=holder))

    async def close(self) -> None:
        """Close the connection, then let go of the lock (WAL is checkpointed by SQLite)."""
        await self.database.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def backup_to(self, target: Path) -> None:
        """A consistent copy of the whole database in ``target`` (SQLite's online backup)."""
        await self.database.backup_to(target)

    # -- KeyRepository (hilsim.store.keys) ---------------------------------------------------------

    async def load_keys(self) -> dict[str, str]:
        return await self.keys.load_keys()

    async def seed_keys(self, defaults: Mapping[str, str]) -> None:
        await self.keys.seed_keys(defaults)

    async def save_key(self, name: str, text: str) -> None:
        await self.keys.save_key(name, text)

    async def changed_keys(self) -> set[str]:
        return await self.keys.changed_keys()

    # -- TransactionRepository (hilsim.store.transactions) -----------------------------------------

    async def begin_transaction(
        self, connector_id: int, id_tag: str, meter_start: int, started_at: str, payload: str
    ) -> int:
        return await self.transaction_log.begin_transaction(
            connector_id, id_tag, meter_start, started_at, payload
        )

    async def record_sample(
        self,
        connector_id: int,
        energy_Wh: float,
        at: str,
        local_id: int | None = None,
        payload: str | None = None,
        kept: str | None = None,
    ) -> None:
        await self.transaction_log.record_sample(
            connector_id, energy_Wh, at, local_id, payload, kept
        )

    async def keep_transaction_data(self, local_id: int, meter_value: str) -> None:
        await self.transaction_log.keep_transaction_data(local_id, meter_value)

    async def transaction_data(self, local_id: int) -> list[str]:
        return await self.transaction_log.transaction_data(local_id)

    async def end_transaction(
        self, local_id: int, connector_id: int, energy_Wh: float, at: str, payload: str
    ) -> None:
        await self.transaction_log.end_transaction(local_id, connector_id, energy_Wh, at, payload)

    async def outbox_head(self) -> OutboxEntry | None:
        return await self.transaction_log.outbox_head()

    async def outbox_size(self) -> int:
        return await self.transaction_log.outbox_size()

    async def outbox_attempted(self, seq: int) -> int:
        return await self.transaction_log.outbox_attempted(seq)

    async def outbox_done(self, seq: int, transaction_id: int | None = None) -> None:
        await self.transaction_log.outbox_done(seq, transaction_id)

    async def outbox_set_aside(self, seq: int, reason: str) -> None:
        await self.transaction_log.outbox_set_aside(seq, reason)

    async def outbox_dead(self) -> list[SetAsideEntry]:
        return await self.transaction_log.outbox_dead()

    async def transactions(self) -> list[TransactionRow]:
        return await self.transaction_log.transactions()

    async def meter_registers(self) -> dict[int, float]:
        return await self.transaction_log.meter_registers()

    # -- AuthorizationRepository (hilsim.store.authorization) --------------------------------------

    async def cache_id_tag(
        self, id_tag: str, status: str, expiry_date: str | None, parent_id_tag: str | None
    ) -> None:
        await self.authorizations.cache_id_tag(id_tag, status, expiry_date, parent_id_tag)

    async def cached_id_tag(self, id_tag: str) -> CachedIdTag | None:
        return await self.authorizations.cached_id_tag(id_tag)

    async def clear_authorization_cache(self) -> None:
        await self.authorizations.clear_authorization_cache()

    async def local_list(self) -> tuple[int, list[ListedIdTag]]:
        return await self.authorizations.local_list()

    async def update_local_list(
        self,
        version: int,
        upserts: Sequence[ListedIdTag],
        removals: Sequence[str] = (),
        *,
        full: bool = False,
    ) -> None:
        await self.authorizations.update_local_list(version, upserts, removals, full=full)

    # -- ChargePointRepository (hilsim.store.charge_point) -----------------------------------------

    async def availability(self) -> dict[int, bool]:
        return await self.charge_point.availability()

    async def save_availability(self, connector_id: int, operative: bool) -> None:
        await self.charge_point.save_availability(connector_id, operative)

    async def reservations(self) -> list[ReservationRow]:
        return await self.charge_point.reservations()

    async def save_reservation(self, row: ReservationRow) -> None:
        await self.charge_point.save_reservation(row)

    async def delete_reservation(self, reservation_id: int) -> None:
        await self.charge_point.delete_reservation(reservation_id)

    async def charging_profiles(self) -> list[tuple[int, str]]:
        return await self.charge_point.charging_profiles()

    async def replace_charging_profiles(
        self,
        removed: Sequence[int],
        added: tuple[int, int, str, int, str] | None = None,
    ) -> None:
        await self.charge_point.replace_charging_profiles(removed, added)

    async def firmware(self) -> tuple[str, str | None, int | None] | None:
        return await self.charge_point.firmware()

    async def save_firmware(
        self, version: str, pending_status: str | None, request_id: int | None = None
    ) -> None:
        await self.charge_point.save_firmware(version, pending_status, request_id)
