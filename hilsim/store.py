"""Persistent state in SQLite, via aiosqlite so disk writes never stall the OCPP event loop.

The Pi's SD card can lose power at any moment; WAL with synchronous=NORMAL keeps the database
consistent across that while avoiding an fsync per write, which SD cards are slow at and wear from.
Every sqlite3/OS failure leaves this module as a StoreError naming the file, so the CLI prints
one line instead of a traceback.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import pwd
import sqlite3
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

import aiosqlite

from hilsim.errors import DatabaseInUseError, StoreError, StoreSetupError
from hilsim.keys import SPECS, ConfigurationKeys, KeySpec, Saver, Value, lookup

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
    # 2: nothing lost. A transaction is recorded before StartTransaction is sent; transaction
    # messages wait in the outbox until the CSMS confirmed them; the energy register survives.
    """
    CREATE TABLE charging_transaction (
        local_id INTEGER PRIMARY KEY AUTOINCREMENT,
        connector_id INTEGER NOT NULL,
        id_tag TEXT NOT NULL,
        transaction_id INTEGER,
        meter_start_Wh INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        last_energy_Wh REAL NOT NULL,
        last_sample_at TEXT NOT NULL,
        stopped INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        action TEXT NOT NULL
            CHECK (action IN ('StartTransaction', 'MeterValues', 'StopTransaction')),
        local_id INTEGER NOT NULL REFERENCES charging_transaction (local_id),
        payload TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL
    );
    CREATE TABLE meter_register (
        connector_id INTEGER PRIMARY KEY,
        energy_Wh REAL NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE authorization_cache (
        id_tag TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        expiry_date TEXT,
        parent_id_tag TEXT,
        updated_at TEXT NOT NULL
    );
    """,
    # 3: what the CSMS sets and a real charger keeps across a reboot: the local authorization
    # list and its version (one row, id 1), each connector's availability (0 = the charge point
    # as a whole), and reservations (their expiry as the CSMS sent it).
    """
    CREATE TABLE local_auth_list (
        id_tag TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        expiry_date TEXT,
        parent_id_tag TEXT
    );
    CREATE TABLE local_auth_list_version (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE connector_availability (
        connector_id INTEGER PRIMARY KEY,
        operative INTEGER NOT NULL CHECK (operative IN (0, 1)),
        updated_at TEXT NOT NULL
    );
    CREATE TABLE reservation (
        reservation_id INTEGER PRIMARY KEY,
        connector_id INTEGER NOT NULL,
        id_tag TEXT NOT NULL,
        parent_id_tag TEXT,
        expiry_date TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    """,
    # 4: smart charging profiles the CSMS installed (their OCPP form as JSON), and the firmware
    # an UpdateFirmware installed, with the status still to be reported after its reboot.
    """
    CREATE TABLE charging_profile (
        profile_id INTEGER PRIMARY KEY,
        connector_id INTEGER NOT NULL,
        purpose TEXT NOT NULL,
        stack_level INTEGER NOT NULL,
        payload TEXT NOT NULL,
        installed_at TEXT NOT NULL
    );
    CREATE TABLE firmware (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version TEXT NOT NULL,
        pending_status TEXT,
        updated_at TEXT NOT NULL
    );
    """,
    # 5: StopTransaction's transactionData (StopTxnSampledData, StopTxnAlignedData), kept as it
    # is measured, so that a transaction a power cut ended still reports what it sampled.
    """
    CREATE TABLE transaction_data (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        local_id INTEGER NOT NULL REFERENCES charging_transaction (local_id),
        meter_value TEXT NOT NULL
    );
    CREATE INDEX transaction_data_of_transaction ON transaction_data (local_id, seq);
    """,
    # 6: the outbox holds what goes on the wire (the OCPP payload, camelCase, without the
    # transactionId learnt later) instead of the keyword arguments of a Python method, which an
    # upgrade that renames one could no longer call. Rows that cannot be converted, and rows
    # given up on later, are set aside in outbox_dead: kept for a person, never sent, never lost.
    """
    CREATE TABLE outbox_dead (
        seq INTEGER PRIMARY KEY,
        action TEXT NOT NULL,
        local_id INTEGER NOT NULL,
        transaction_id INTEGER,
        payload TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        set_aside_at TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    INSERT INTO outbox_dead (seq, action, local_id, transaction_id, payload, attempts,
        created_at, set_aside_at, reason)
    SELECT o.seq, o.action, o.local_id,
        (SELECT t.transaction_id FROM charging_transaction t WHERE t.local_id = o.local_id),
        o.payload, o.attempts, o.created_at, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'upgrade: its stored arguments do not make an OCPP payload'
    FROM outbox o
    WHERE NOT CASE WHEN json_valid(o.payload) AND json_type(o.payload) = 'object' THEN
        CASE o.action
        WHEN 'StartTransaction' THEN
            json_type(o.payload, '$.connector_id') = 'integer'
            AND json_type(o.payload, '$.id_tag') = 'text'
            AND json_type(o.payload, '$.meter_start') = 'integer'
            AND json_type(o.payload, '$.timestamp') = 'text'
            AND coalesce(json_type(o.payload, '$.reservation_id'), 'null')
                IN ('integer', 'null')
            AND NOT EXISTS (SELECT 1 FROM json_each(o.payload) WHERE key NOT IN
                ('connector_id', 'id_tag', 'meter_start', 'timestamp', 'reservation_id'))
        WHEN 'MeterValues' THEN
            json_type(o.payload, '$.connector_id') = 'integer'
            AND json_type(o.payload, '$.meter_value') = 'array'
            AND NOT EXISTS (SELECT 1 FROM json_each(o.payload) WHERE key NOT IN
                ('connector_id', 'meter_value'))
        WHEN 'StopTransaction' THEN
            json_type(o.payload, '$.meter_stop') = 'integer'
            AND json_type(o.payload, '$.timestamp') = 'text'
            AND json_type(o.payload, '$.reason') = 'text'
            AND coalesce(json_type(o.payload, '$.id_tag'), 'null') IN ('text', 'null')
            AND coalesce(json_type(o.payload, '$.transaction_data'), 'null')
                IN ('array', 'null')
            AND NOT EXISTS (SELECT 1 FROM json_each(o.payload) WHERE key NOT IN
                ('meter_stop', 'timestamp', 'reason', 'id_tag', 'transaction_data'))
        ELSE 0 END
    ELSE 0 END;
    DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox_dead);
    -- json_patch drops a member whose patch value is null: OCPP-J leaves absent fields out.
    UPDATE outbox SET payload = CASE action
        WHEN 'StartTransaction' THEN json_patch(
            json_object('connectorId', payload -> '$.connector_id',
                'idTag', payload -> '$.id_tag', 'meterStart', payload -> '$.meter_start',
                'timestamp', payload -> '$.timestamp'),
            json_object('reservationId', payload -> '$.reservation_id'))
        WHEN 'MeterValues' THEN json_object('connectorId', payload -> '$.connector_id',
            'meterValue', payload -> '$.meter_value')
        ELSE json_patch(
            json_object('meterStop', payload -> '$.meter_stop',
                'timestamp', payload -> '$.timestamp', 'reason', payload -> '$.reason'),
            json_object('idTag', payload -> '$.id_tag',
                'transactionData', payload -> '$.transaction_data'))
        END;
    """,
)


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    seq: int
    action: str
    local_id: int
    payload: str  # JSON: the OCPP payload (camelCase), without the transactionId
    attempts: int


@dataclass(frozen=True, slots=True)
class SetAsideEntry:
    """A transaction message given up on: kept in outbox_dead for a person, never sent."""

    seq: int
    action: str
    local_id: int
    transaction_id: int | None  # the CSMS's id, when it was known
    payload: str
    attempts: int
    set_aside_at: str
    reason: str


@dataclass(frozen=True, slots=True)
class TransactionRow:
    local_id: int
    connector_id: int
    id_tag: str
    transaction_id: int | None  # the CSMS's id, once StartTransaction was confirmed
    meter_start_Wh: int
    started_at: str
    last_energy_Wh: float
    last_sample_at: str
    stopped: bool


@dataclass(frozen=True, slots=True)
class CachedIdTag:
    id_tag: str
    status: str
    expiry_date: str | None
    parent_id_tag: str | None


#: An entry of the local authorization list: the same IdTagInfo, but set by SendLocalList.
ListedIdTag = CachedIdTag


@dataclass(frozen=True, slots=True)
class ReservationRow:
    reservation_id: int
    connector_id: int  # 0: the charge point as a whole
    id_tag: str
    parent_id_tag: str | None
    expiry_date: str  # as the CSMS sent it


#: Files the service creates next to the database are the service user's alone (no group or
#: world bits): they hold the AuthorizationKey's history, idTags and meter readings.
PRIVATE_MODE = 0o600

#: SQLite result codes that mean the file's contents are damaged; only these move it aside.
_CORRUPTION = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
#: Result codes that mean the operating system refused access: the operator must fix it.
_NO_ACCESS = frozenset(
    {sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH}
)


def lock_path_of(database: Path) -> Path:
    """`<database>.lock`: the file whose flock says which hilsim owns the database."""
    return database.with_name(database.name + ".lock")


class DatabaseLock:
    """An exclusive flock on `<database>.lock`, taken before the database is read or written.

    Two services on one database would each run power-loss recovery over the other's live
    transactions and send a StopTransaction for a car that is still charging. flock belongs to
    the open file: it goes away however the process ends (a crash, SIGKILL, the re-exec of a
    Reset Hard, which closes the O_CLOEXEC descriptor), so a stale lock cannot keep the charger
    down. The file holds the holder's pid and command for the message of the one refused; it is
    never deleted, because unlinking a lock file races with a process about to lock it.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, database: Path, holder: str = "") -> DatabaseLock:
        """Lock `database` or raise DatabaseInUseError naming who holds it (exit 2)."""
        path = lock_path_of(database)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_MODE)
        except PermissionError as exc:
            raise _denied(path if path.exists() else path.parent, exc) from exc
        except OSError as exc:
            raise StoreSetupError(
                f"{path}: cannot open the database's lock file: {exc.strerror or exc}"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            who = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "holder unknown"
            os.close(fd)
            if isinstance(exc, BlockingIOError):
                raise DatabaseInUseError(
                    f"{database}: another hilsim is already running on this database ({who}); "
                    "stop it first, or give each its own [storage] database"
                ) from None
            raise StoreSetupError(f"{path}: cannot lock: {exc.strerror or exc}") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}{', ' + holder if holder else ''}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # the flock goes with the last descriptor of the open file


def _user() -> str:
    uid = os.geteuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _denied(path: Path, exc: OSError | sqlite3.Error | None = None) -> StoreSetupError:
    """The one message for a file or directory the service's user may not use."""
    try:
        info = path.stat()
    except OSError:
        detail = ""
    else:
        try:
            owner = pwd.getpwuid(info.st_uid).pw_name
        except KeyError:
            owner = str(info.st_uid)
        detail = f" (owner {owner}, mode {stat.filemode(info.st_mode)})"
    why = f": {exc}" if exc is not None else ""
    return StoreSetupError(f"{path}: permission denied for user {_user()}{detail}{why}")


def _may(path: Path, mode: int) -> bool:
    """os.access for the effective user, the one SQLite's open() runs as."""
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


def _check_access(path: Path) -> None:
    """Refuse a database the service's user cannot read and write, before SQLite sees it.

    SQLite reports that as "unable to open" or "readonly database", which is neither corruption
    (the file must not be moved aside) nor anything a restart fixes.
    """
    if not _may(path.parent, os.W_OK | os.X_OK):  # the WAL and SHM files are made there
        raise _denied(path.parent)
    try:
        mode = path.stat().st_mode  # a symlink to the real file is fine
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise StoreSetupError(
            f"{path}: is not a regular file ({stat.filemode(mode)}); [storage] database must "
            "name an SQLite file (hilsim creates it if missing)"
        )
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if file.exists() and not _may(file, os.R_OK | os.W_OK):
            raise _denied(file)


def _create_private(path: Path) -> None:
    """Create a missing database file 0600, so SQLite's WAL and SHM files get that mode too.

    SQLite would create it 0644 less the umask, readable by every local user, and makes its
    companion files with the database's mode. A file that exists is left as it is.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_MODE)
    except FileExistsError:
        return
    except PermissionError as exc:
        raise _denied(path.parent, exc) from exc
    except OSError as exc:
        raise StoreSetupError(f"{path}: cannot create the database: {exc.strerror}") from exc
    os.close(fd)


def _error_code(exc: BaseException | None) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF  # extended codes carry the primary in the low byte


def _is_corruption(exc: BaseException | None) -> bool:
    """Damaged contents (what moving the file aside is for), not a refused or failing access."""
    if isinstance(exc, _QuickCheckFailed):
        return True
    return isinstance(exc, sqlite3.DatabaseError) and _error_code(exc) in _CORRUPTION


class _QuickCheckFailed(sqlite3.DatabaseError):
    """PRAGMA quick_check found damage in a file SQLite could otherwise open."""


def _move_aside(path: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    path.rename(aside)
    for suffix in ("-wal", "-shm"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            companion.rename(aside.with_name(aside.name + suffix))
    return aside


def _existing_ancestor(path: Path) -> Path:
    """The nearest directory above `path` that exists: the one a mkdir was refused in."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Store:
    """SQLite on the SD card.

    Configuration keys now; later issues add an outbox and transaction state, as new MIGRATIONS.
    """

    def __init__(
        self, path: Path, connection: aiosqlite.Connection, lock: DatabaseLock | None = None
    ) -> None:
        """Use `Store.open`; this only wires an already-migrated connection (and its lock)."""
        self.path = path
        self._db = connection
        self._lock = lock
        # aiosqlite runs calls one at a time but does not stop two coroutines from interleaving
        # the statements of their transactions; this does.
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | Path, *, holder: str = "") -> Store:
        """Lock, open (creating if needed) and migrate the database at `path`.

        The lock comes first: nothing is read, migrated or recovered while another hilsim owns
        the file. `holder` says who this is (e.g. the command and its config) to one refused.
        """
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except PermissionError as exc:
            raise _denied(_existing_ancestor(path.parent), exc) from exc
        except OSError as exc:
            raise StoreSetupError(f"{path}: cannot create directory {path.parent}: {exc}") from exc
        lock = DatabaseLock.acquire(path, holder)
        try:
            return await cls._open_locked(path, lock)
        except BaseException:
            lock.release()
            raise

    @classmethod
    async def _open_locked(
        cls, path: Path, lock: DatabaseLock, *, moved_aside: bool = False
    ) -> Store:
        _check_access(path)
        _create_private(path)
        try:
            # Autocommit mode: transactions are explicit (BEGIN ... COMMIT), so each write is
            # committed when the method returns rather than whenever sqlite3 decides.
            connection = await aiosqlite.connect(path, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            if _error_code(exc) in _NO_ACCESS or isinstance(exc, PermissionError):
                raise _denied(path, exc) from exc
            raise StoreError(f"{path}: cannot open database: {exc}") from exc
        store = cls(path, connection, lock)
        try:
            await store._configure()
        except StoreError as exc:
            await store._close_quietly()
            if _error_code(exc.__cause__) in _NO_ACCESS:
                raise _denied(path, exc.__cause__) from exc
            if not _is_corruption(exc.__cause__) or moved_aside:
                raise
            # A corrupt file (SD card, power cut mid-write) must not keep the charger down, but
            # it must not vanish silently either: keep it for inspection and say so loudly.
            aside = _move_aside(path)
            logger.error(
                "%s is corrupt (%s); moved it to %s and started a fresh database. "
                "Configuration keys are back to their defaults and queued transaction "
                "messages in the old file were NOT delivered.",
                path,
                exc.__cause__,
                aside,
            )
            return await cls._open_locked(path, lock, moved_aside=True)
        except BaseException:
            await store._close_quietly()
            raise
        logger.debug("opened %s", path)
        return store

    async def close(self) -> None:
        """Close the connection, then let go of the lock (WAL is checkpointed by SQLite)."""
        try:
            await self._db.close()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"{self.path}: cannot close database: {exc}") from exc
        finally:
            if self._lock is not None:
                self._lock.release()

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

    # -- transactions and the outbox ------------------------------------------------------------
    #
    # Start and stop are committed with synchronous=FULL: a transaction the CSMS may bill must
    # survive a power cut the instant after it was decided. Samples and the energy register use
    # the connection's NORMAL: at worst the samples of the last seconds before a power cut are
    # lost (a process crash loses nothing), and the SD card is spared an fsync per sample.

    async def begin_transaction(
        self, connector_id: int, id_tag: str, meter_start: int, started_at: str, payload: str
    ) -> int:
        """Record a new transaction and queue its StartTransaction; returns its local id."""

        async def run() -> int:
            async with self._transaction(durable=True):
                cursor = await self._db.execute(
                    """
                    INSERT INTO charging_transaction (connector_id, id_tag, meter_start_Wh,
                        started_at, last_energy_Wh, last_sample_at)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """,
                    (connector_id, id_tag, meter_start, started_at, meter_start, started_at),
                )
                local_id = int(cursor.lastrowid or 0)
                await self._enqueue("StartTransaction", local_id, payload)
                return local_id

        return await self._guard("record a transaction start", run)

    async def record_sample(
        self,
        connector_id: int,
        energy_Wh: float,
        at: str,
        local_id: int | None = None,
        payload: str | None = None,
        kept: str | None = None,
    ) -> None:
        """Persist the energy register (and queue a transaction's MeterValues) in one commit.

        ``kept``: a MeterValue (JSON) for the transaction's StopTransaction, in the same commit.
        """

        async def run() -> None:
            async with self._transaction():
                await self._db.execute(
                    """
                    INSERT INTO meter_register (connector_id, energy_Wh, updated_at)
                    VALUES (?, ?, ?)
                    ON CONFLICT (connector_id) DO UPDATE
                        SET energy_Wh = excluded.energy_Wh, updated_at = excluded.updated_at
                    """,
                    (connector_id, energy_Wh, at),
                )
                if local_id is not None:
                    await self._db.execute(
                        """
                        UPDATE charging_transaction SET last_energy_Wh = ?, last_sample_at = ?
                        WHERE local_id = ?
                        """,
                        (energy_Wh, at, local_id),
                    )
                    if payload is not None:
                        await self._enqueue("MeterValues", local_id, payload)
                    if kept is not None:
                        await self._keep(local_id, kept)

        await self._guard("record a meter sample", run)

    async def keep_transaction_data(self, local_id: int, meter_value: str) -> None:
        """Keep a MeterValue (JSON) for the StopTransaction of a transaction."""

        async def run() -> None:
            async with self._transaction():
                await self._keep(local_id, meter_value)

        await self._guard("keep transaction data", run)

    async def transaction_data(self, local_id: int) -> list[str]:
        """The MeterValues (JSON) kept for a transaction's StopTransaction, in the order kept."""
        rows = await self._guard(
            "read transaction data",
            lambda: self._db.execute_fetchall(
                "SELECT meter_value FROM transaction_data WHERE local_id = ? ORDER BY seq",
                (local_id,),
            ),
        )
        return [meter_value for (meter_value,) in rows]

    async def end_transaction(
        self, local_id: int, connector_id: int, energy_Wh: float, at: str, payload: str
    ) -> None:
        """Mark a transaction stopped and queue its StopTransaction."""

        async def run() -> None:
            async with self._transaction(durable=True):
                await self._db.execute(
                    """
                    UPDATE charging_transaction
                    SET stopped = 1, last_energy_Wh = ?, last_sample_at = ?
                    WHERE local_id = ?
                    """,
                    (energy_Wh, at, local_id),
                )
                await self._db.execute(
                    """
                    INSERT INTO meter_register (connector_id, energy_Wh, updated_at)
                    VALUES (?, ?, ?)
                    ON CONFLICT (connector_id) DO UPDATE
                        SET energy_Wh = max(meter_register.energy_Wh, excluded.energy_Wh),
                            updated_at = excluded.updated_at
                    """,
                    (connector_id, energy_Wh, at),
                )
                await self._enqueue("StopTransaction", local_id, payload)
                # Now in the StopTransaction's payload: not kept twice.
                await self._db.execute(
                    "DELETE FROM transaction_data WHERE local_id = ?", (local_id,)
                )

        await self._guard("record a transaction stop", run)

    # The outbox is read under the write lock: statements on this one connection see the rows
    # of a transaction another coroutine has begun but not committed yet, and a message must
    # never reach the wire before its row is durable (a rollback would have sent a phantom).

    async def outbox_head(self) -> OutboxEntry | None:
        """The oldest unconfirmed transaction message: they are delivered strictly in order."""

        async def run() -> OutboxEntry | None:
            async with self._write_lock:
                rows = await self._db.execute_fetchall(
                    "SELECT seq, action, local_id, payload, attempts FROM outbox "
                    "ORDER BY seq LIMIT 1"
                )
            for seq, action, local_id, payload, attempts in rows:
                return OutboxEntry(seq, action, local_id, payload, attempts)
            return None

        return await self._guard("read the outbox", run)

    async def outbox_size(self) -> int:
        async def run() -> int:
            async with self._write_lock:
                rows = await self._db.execute_fetchall("SELECT count(*) FROM outbox")
            return int(next(iter(rows))[0])

        return await self._guard("read the outbox", run)

    async def outbox_attempted(self, seq: int) -> int:
        """Count a failed delivery; returns the attempts made so far."""

        async def run() -> int:
            async with self._transaction():
                await self._db.execute(
                    "UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?", (seq,)
                )
                rows = await self._db.execute_fetchall(
                    "SELECT attempts FROM outbox WHERE seq = ?", (seq,)
                )
            return int(next(iter(rows))[0]) if rows else 0

        return await self._guard("update the outbox", run)

    async def outbox_done(self, seq: int, transaction_id: int | None = None) -> None:
        """Drop a confirmed message; a confirmed start records the CSMS's id.

        A stopped transaction whose messages have all left is forgotten in the same commit.
        """

        async def run() -> None:
            async with self._transaction(durable=True):
                await self._outbox_remove(seq, transaction_id)

        await self._guard("update the outbox", run)

    async def outbox_set_aside(self, seq: int, reason: str) -> None:
        """Move a message given up on to outbox_dead (with the CSMS's id, if known), in one
        durable commit: the queue carries on behind it, and nothing is lost."""

        async def run() -> None:
            async with self._transaction(durable=True):
                await self._db.execute(
                    """
                    INSERT INTO outbox_dead (seq, action, local_id, transaction_id, payload,
                        attempts, created_at, set_aside_at, reason)
                    SELECT o.seq, o.action, o.local_id, t.transaction_id, o.payload, o.attempts,
                        o.created_at, ?, ?
                    FROM outbox o LEFT JOIN charging_transaction t ON t.local_id = o.local_id
                    WHERE o.seq = ?
                    """,
                    (_now(), reason, seq),
                )
                await self._outbox_remove(seq, None)

        await self._guard("set an outbox message aside", run)

    async def outbox_dead(self) -> list[SetAsideEntry]:
        """The messages set aside, oldest first (for `hilsim ctl status` and a person)."""
        rows = await self._guard(
            "read the set-aside outbox messages",
            lambda: self._db.execute_fetchall(
                """
                SELECT seq, action, local_id, transaction_id, payload, attempts, set_aside_at,
                       reason
                FROM outbox_dead ORDER BY seq
                """
            ),
        )
        return [SetAsideEntry(*row) for row in rows]

    async def _outbox_remove(self, seq: int, transaction_id: int | None) -> None:
        rows = list(
            await self._db.execute_fetchall("SELECT local_id FROM outbox WHERE seq = ?", (seq,))
        )
        await self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
        if not rows:
            return
        local_id = rows[0][0]
        if transaction_id is not None:
            await self._db.execute(
                "UPDATE charging_transaction SET transaction_id = ? WHERE local_id = ?",
                (transaction_id, local_id),
            )
        await self._db.execute(
            """
            DELETE FROM charging_transaction
            WHERE local_id = ? AND stopped = 1
              AND NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.local_id = ?)
            """,
            (local_id, local_id),
        )

    async def transactions(self) -> list[TransactionRow]:
        """Every transaction not yet forgotten: open ones, and stopped ones with messages queued."""
        rows = await self._guard(
            "read transactions",
            lambda: self._db.execute_fetchall(
                """
                SELECT local_id, connector_id, id_tag, transaction_id, meter_start_Wh,
                       started_at, last_energy_Wh, last_sample_at, stopped
                FROM charging_transaction ORDER BY local_id
                """
            ),
        )
        return [
            TransactionRow(
                local_id=row[0],
                connector_id=row[1],
                id_tag=row[2],
                transaction_id=row[3],
                meter_start_Wh=row[4],
                started_at=row[5],
                last_energy_Wh=row[6],
                last_sample_at=row[7],
                stopped=bool(row[8]),
            )
            for row in rows
        ]

    async def meter_registers(self) -> dict[int, float]:
        """The last persisted energy register of each connector, so energy never goes back."""
        rows = await self._guard(
            "read meter registers",
            lambda: self._db.execute_fetchall("SELECT connector_id, energy_Wh FROM meter_register"),
        )
        return {int(cid): float(energy) for cid, energy in rows}

    # -- authorization cache -------------------------------------------------------------------

    async def cache_id_tag(
        self, id_tag: str, status: str, expiry_date: str | None, parent_id_tag: str | None
    ) -> None:
        async def run() -> None:
            async with self._transaction():
                await self._db.execute(
                    """
                    INSERT INTO authorization_cache (id_tag, status, expiry_date, parent_id_tag,
                        updated_at)
                    VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT (id_tag) DO UPDATE
                        SET status = excluded.status, expiry_date = excluded.expiry_date,
                            parent_id_tag = excluded.parent_id_tag,
                            updated_at = excluded.updated_at
                    """,
                    (id_tag, status, expiry_date, parent_id_tag, _now()),
                )

        await self._guard("update the authorization cache", run)

    async def cached_id_tag(self, id_tag: str) -> CachedIdTag | None:
        rows = await self._guard(
            "read the authorization cache",
            lambda: self._db.execute_fetchall(
                """
                SELECT id_tag, status, expiry_date, parent_id_tag FROM authorization_cache
                WHERE id_tag = ?
                """,
                (id_tag,),
            ),
        )
        for row in rows:
            return CachedIdTag(row[0], row[1], row[2], row[3])
        return None

    async def clear_authorization_cache(self) -> None:
        async def run() -> None:
            async with self._transaction():
                await self._db.execute("DELETE FROM authorization_cache")

        await self._guard("clear the authorization cache", run)

    # -- local authorization list (SendLocalList) -----------------------------------------------

    async def local_list(self) -> tuple[int, list[ListedIdTag]]:
        """The stored list version (0 before the first SendLocalList) and its entries."""

        async def run() -> tuple[int, list[ListedIdTag]]:
            versions = list(
                await self._db.execute_fetchall(
                    "SELECT version FROM local_auth_list_version WHERE id = 1"
                )
            )
            rows = await self._db.execute_fetchall(
                "SELECT id_tag, status, expiry_date, parent_id_tag FROM local_auth_list "
                "ORDER BY id_tag"
            )
            entries = [ListedIdTag(row[0], row[1], row[2], row[3]) for row in rows]
            return (int(versions[0][0]) if versions else 0), entries

        return await self._guard("read the local authorization list", run)

    async def update_local_list(
        self,
        version: int,
        upserts: Sequence[ListedIdTag],
        removals: Sequence[str] = (),
        *,
        full: bool = False,
    ) -> None:
        """Apply one SendLocalList in one commit: all of it or, on any failure, none of it.

        ``full`` replaces the whole list with ``upserts`` (a Full update).
        """

        async def run() -> None:
            async with self._transaction(durable=True):
                if full:
                    await self._db.execute("DELETE FROM local_auth_list")
                await self._db.executemany(
                    "DELETE FROM local_auth_list WHERE id_tag = ?", [(tag,) for tag in removals]
                )
                await self._db.executemany(
                    """
                    INSERT INTO local_auth_list (id_tag, status, expiry_date, parent_id_tag)
                    VALUES (?, ?, ?, ?)
                    ON CONFLICT (id_tag) DO UPDATE
                        SET status = excluded.status, expiry_date = excluded.expiry_date,
                            parent_id_tag = excluded.parent_id_tag
                    """,
                    [(e.id_tag, e.status, e.expiry_date, e.parent_id_tag) for e in upserts],
                )
                await self._db.execute(
                    """
                    INSERT INTO local_auth_list_version (id, version, updated_at) VALUES (1, ?, ?)
                    ON CONFLICT (id) DO UPDATE
                        SET version = excluded.version, updated_at = excluded.updated_at
                    """,
                    (version, _now()),
                )

        await self._guard("update the local authorization list", run)

    # -- availability (ChangeAvailability) ------------------------------------------------------

    async def availability(self) -> dict[int, bool]:
        """Connector id (0: the whole charge point) -> operative, for those ever changed."""
        rows = await self._guard(
            "read connector availability",
            lambda: self._db.execute_fetchall(
                "SELECT connector_id, operative FROM connector_availability"
            ),
        )
        return {int(cid): bool(operative) for cid, operative in rows}

    async def save_availability(self, connector_id: int, operative: bool) -> None:
        async def run() -> None:
            async with self._transaction(durable=True):
                await self._db.execute(
                    """
                    INSERT INTO connector_availability (connector_id, operative, updated_at)
                    VALUES (?, ?, ?)
                    ON CONFLICT (connector_id) DO UPDATE
                        SET operative = excluded.operative, updated_at = excluded.updated_at
                    """,
                    (connector_id, int(operative), _now()),
                )

        await self._guard("save connector availability", run)

    # -- reservations (ReserveNow) ---------------------------------------------------------------

    async def reservations(self) -> list[ReservationRow]:
        rows = await self._guard(
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
            async with self._transaction():
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
                        _now(),
                    ),
                )

        await self._guard("save a reservation", run)

    async def delete_reservation(self, reservation_id: int) -> None:
        async def run() -> None:
            async with self._transaction():
                await self._db.execute(
                    "DELETE FROM reservation WHERE reservation_id = ?", (reservation_id,)
                )

        await self._guard("delete a reservation", run)

    # -- charging profiles and firmware (hilsim.charging_limits, hilsim.firmware) ----------------

    async def charging_profiles(self) -> list[tuple[int, str]]:
        """Every stored charging profile: (connector id, its JSON), oldest first."""
        rows = await self._guard(
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
            async with self._transaction(durable=True):
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
                        (*added, _now()),
                    )

        await self._guard("save charging profiles", run)

    async def firmware(self) -> tuple[str, str | None] | None:
        """The installed firmware version and the status to report after its reboot, if any."""
        rows = await self._guard(
            "read the firmware record",
            lambda: self._db.execute_fetchall(
                "SELECT version, pending_status FROM firmware WHERE id = 1"
            ),
        )
        for version, pending in rows:
            return str(version), pending
        return None

    async def save_firmware(self, version: str, pending_status: str | None) -> None:
        async def run() -> None:
            async with self._transaction(durable=True):
                await self._db.execute(
                    """
                    INSERT INTO firmware (id, version, pending_status, updated_at)
                    VALUES (1, ?, ?, ?)
                    ON CONFLICT (id) DO UPDATE
                        SET version = excluded.version, pending_status = excluded.pending_status,
                            updated_at = excluded.updated_at
                    """,
                    (version, pending_status, _now()),
                )

        await self._guard("save the firmware record", run)

    async def backup_to(self, target: Path) -> None:
        """A consistent copy of the whole database in ``target`` (SQLite's online backup)."""

        async def run() -> None:
            # Made in one thread, written from aiosqlite's: hence check_same_thread=False.
            destination = await asyncio.to_thread(
                lambda: sqlite3.connect(target, check_same_thread=False)
            )
            try:
                await self._db.backup(destination)
            finally:
                await asyncio.to_thread(destination.close)

        await self._guard(f"copy the database to {target}", run)

    # -- internals -----------------------------------------------------------------------------

    async def _keep(self, local_id: int, meter_value: str) -> None:
        await self._db.execute(
            "INSERT INTO transaction_data (local_id, meter_value) VALUES (?, ?)",
            (local_id, meter_value),
        )

    async def _enqueue(self, action: str, local_id: int, payload: str) -> None:
        await self._db.execute(
            "INSERT INTO outbox (action, local_id, payload, created_at) VALUES (?, ?, ?, ?)",
            (action, local_id, payload, _now()),
        )

    async def _configure(self) -> None:
        async def run() -> None:
            rows = list(await self._db.execute_fetchall("PRAGMA journal_mode=WAL"))
            mode = rows[0][0] if rows else None
            if mode != "wal":
                # Still usable, just less robust on power loss; e.g. some network filesystems.
                logger.warning("%s: journal_mode is %s, not wal", self.path, mode)
            await self._db.execute("PRAGMA synchronous=NORMAL")
            check = list(await self._db.execute_fetchall("PRAGMA quick_check"))
            if not check or check[0][0] != "ok":
                raise _QuickCheckFailed(f"quick_check: {check[0][0] if check else '?'}")
            await self._migrate()

        await self._guard("open database", run)

    async def _migrate(self) -> None:
        rows = list(await self._db.execute_fetchall("PRAGMA user_version"))
        version = int(rows[0][0])
        if version > len(MIGRATIONS):
            raise StoreSetupError(  # a restart would only meet it again: exit 2
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
    async def _transaction(self, *, durable: bool = False) -> AsyncIterator[None]:
        """One write transaction; ``durable`` fsyncs its commit (synchronous=FULL)."""
        async with self._write_lock:
            if durable:
                await self._db.execute("PRAGMA synchronous=FULL")
            try:
                await self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield
                except BaseException:
                    await self._db.rollback()
                    raise
                await self._db.commit()
            finally:
                if durable:
                    await self._db.execute("PRAGMA synchronous=NORMAL")

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


def save_key(store: Store) -> Saver:
    """How `ConfigurationKeys.set` persists a key here: under its canonical name, as text."""

    async def save(spec: KeySpec, value: Value) -> None:
        await store.save_key(spec.name, spec.format(value))

    return save


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
    # A write-only key (a secret) is kept by its owner (hilsim.security), never in SQLite.
    await store.seed_keys(
        {spec.name: spec.format(defaults[spec.name]) for spec in SPECS if not spec.writeonly}
    )

    values = dict(defaults)
    for name, text in (await store.load_keys()).items():
        spec = lookup(name)
        if spec is None or spec.writeonly:
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
