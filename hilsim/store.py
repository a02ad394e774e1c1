"""Persistent state in SQLite, via aiosqlite so disk writes never stall the OCPP event loop.

The Pi's SD card can lose power at any moment; WAL with synchronous=NORMAL keeps the database
consistent across that while avoiding an fsync per write, which SD cards are slow at and wear from.
Every sqlite3/OS failure leaves this module as a StoreError naming the file, so the CLI prints
one line instead of a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

import aiosqlite

from hilsim.errors import StoreError
from hilsim.keys import SPECS, ConfigurationKeys, Value, lookup

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Schema migrations, applied in order; PRAGMA user_version records how many have run. Append new
# scripts at the end and never edit a released one, because databases in the field already ran it.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE configuration_key (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        origin TEXT NOT NULL CHECK (origin IN ('default', 'changed')),
        updated_at TEXT NOT NULL
    );
    """,
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Store:
    """SQLite on the SD card.

    Configuration keys now; later issues add an outbox and transaction state, as new MIGRATIONS.
    """

    def __init__(self, path: Path, connection: aiosqlite.Connection) -> None:
        """Use `Store.open`; this only wires an already-migrated connection."""
        self.path = path
        self._db = connection
        # aiosqlite runs calls one at a time but does not stop two coroutines from interleaving
        # the statements of their transactions; this does.
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | Path) -> Store:
        """Open (creating if needed) and migrate the database at `path`."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{path}: cannot create directory {path.parent}: {exc}") from exc
        try:
            # Autocommit mode: transactions are explicit (BEGIN ... COMMIT), so each write is
            # committed when the method returns rather than whenever sqlite3 decides.
            connection = await aiosqlite.connect(path, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"{path}: cannot open database: {exc}") from exc
        store = cls(path, connection)
        try:
            await store._configure()
        except BaseException:
            await store._close_quietly()
            raise
        logger.debug("opened %s", path)
        return store

    async def close(self) -> None:
        """Close the connection; WAL contents are checkpointed into the main file by SQLite."""
        try:
            await self._db.close()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"{self.path}: cannot close database: {exc}") from exc

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- configuration keys --------------------------------------------------------------------

    async def load_keys(self) -> dict[str, str]:
        """Canonical name -> stored text; parsing is left to KeySpec so it happens in one place."""
        rows = await self._guard(
            "read configuration keys",
            lambda: self._db.execute_fetchall(
                "SELECT name, value FROM configuration_key ORDER BY name"
            ),
        )
        return {name: value for name, value in rows}

    async def seed_keys(self, defaults: Mapping[str, str]) -> None:
        """Record default values without touching keys the CSMS changed.

        Missing keys are inserted with origin 'default'. Rows that are still 'default' are
        refreshed too, so a new release's default or an edited TOML seed (e.g. voltage_V) takes
        effect on restart instead of the first start's value sticking forever.
        """
        now = _now()
        rows = [(name, text, now) for name, text in defaults.items()]

        async def run() -> None:
            async with self._transaction():
                await self._db.executemany(
                    """
                    INSERT INTO configuration_key (name, value, origin, updated_at)
                    VALUES (?, ?, 'default', ?)
                    ON CONFLICT (name) DO UPDATE
                        SET value = excluded.value, updated_at = excluded.updated_at
                        WHERE origin = 'default' AND value <> excluded.value
                    """,
                    rows,
                )

        await self._guard("seed configuration keys", run)

    async def save_key(self, name: str, text: str) -> None:
        """Persist a key the CSMS changed, so it survives a reboot; committed before returning."""

        async def run() -> None:
            async with self._transaction():
                await self._db.execute(
                    """
                    INSERT INTO configuration_key (name, value, origin, updated_at)
                    VALUES (?, ?, 'changed', ?)
                    ON CONFLICT (name) DO UPDATE
                        SET value = excluded.value, origin = 'changed',
                            updated_at = excluded.updated_at
                    """,
                    (name, text, _now()),
                )

        await self._guard(f"save configuration key {name}", run)

    async def changed_keys(self) -> set[str]:
        """Names the CSMS has changed, i.e. those that no longer follow the defaults."""
        rows = await self._guard(
            "read configuration keys",
            lambda: self._db.execute_fetchall(
                "SELECT name FROM configuration_key WHERE origin = 'changed'"
            ),
        )
        return {name for (name,) in rows}

    # -- internals -----------------------------------------------------------------------------

    async def _configure(self) -> None:
        async def run() -> None:
            rows = list(await self._db.execute_fetchall("PRAGMA journal_mode=WAL"))
            mode = rows[0][0] if rows else None
            if mode != "wal":
                # Still usable, just less robust on power loss; e.g. some network filesystems.
                logger.warning("%s: journal_mode is %s, not wal", self.path, mode)
            await self._db.execute("PRAGMA synchronous=NORMAL")
            await self._migrate()

        await self._guard("open database", run)

    async def _migrate(self) -> None:
        rows = list(await self._db.execute_fetchall("PRAGMA user_version"))
        version = int(rows[0][0])
        if version > len(MIGRATIONS):
            raise StoreError(
                f"{self.path}: database schema version {version} is newer than this hilsim "
                f"supports ({len(MIGRATIONS)}); was it written by a newer release?"
            )
        for number, script in enumerate(MIGRATIONS[version:], version + 1):
            logger.info("%s: migrating schema to version %d", self.path, number)
            # The script and the version bump commit together, so a power cut mid-migration
            # leaves the previous version intact and the migration simply runs again.
            try:
                await self._db.executescript(
                    f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;"
                )
            except BaseException:
                if self._db.in_transaction:
                    await self._db.rollback()
                raise

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        async with self._write_lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                await self._db.rollback()
                raise
            await self._db.commit()

    async def _guard(self, action: str, operation: Callable[[], Awaitable[T]]) -> T:
        try:
            return await operation()
        except (sqlite3.Error, OSError, ValueError) as exc:
            if isinstance(exc, StoreError):
                raise
            # ValueError is what aiosqlite raises for a closed connection.
            raise StoreError(f"{self.path}: cannot {action}: {exc}") from exc

    async def _close_quietly(self) -> None:
        try:
            await self._db.close()
        except (sqlite3.Error, OSError, ValueError):
            logger.debug("%s: error while closing after a failed open", self.path, exc_info=True)


async def load_configuration(
    store: Store, seed: Mapping[str, Value] | None = None
) -> ConfigurationKeys:
    """Build the live configuration keys from the database, seeding defaults on first start.

    `seed` overrides spec defaults (e.g. voltage_V from the TOML's first connector). A stored value
    that no longer parses (hand edits, an older release with a wider range) is logged and replaced
    by the default: a bad row must never keep the charge point from booting.
    """
    defaults: dict[str, Value] = {spec.name: spec.default for spec in SPECS}
    for name, value in (seed or {}).items():
        spec = lookup(name)
        if spec is None:
            raise KeyError(f"seed names unknown configuration key {name!r}")
        try:
            defaults[spec.name] = spec.check(value)
        except ValueError as exc:
            logger.warning("ignoring seed (%s); using default %s", exc, spec.format(spec.default))
    await store.seed_keys({spec.name: spec.format(defaults[spec.name]) for spec in SPECS})

    values = dict(defaults)
    for name, text in (await store.load_keys()).items():
        spec = lookup(name)
        if spec is None:
            logger.debug("%s: ignoring stored key %s unknown to this release", store.path, name)
            continue
        try:
            values[spec.name] = spec.parse(text)
        except ValueError as exc:
            logger.warning(
                "%s: stored value is invalid (%s); using default %s",
                store.path,
                exc,
                spec.format(defaults[spec.name]),
            )
    return ConfigurationKeys(values)
