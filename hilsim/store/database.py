"""The database file: opening it safely, and the one connection and writer lock every table shares.

The Pi's SD card can lose power at any moment; WAL with synchronous=NORMAL keeps the database
consistent across that while avoiding an fsync per write, which SD cards are slow at and wear from.
Every sqlite3/OS failure leaves this package as a StoreError naming the file, so the CLI prints
one line instead of a traceback. The tables' modules (hilsim.store.keys, .transactions,
.authorization, .charge_point) write only through `Database.transaction` and read through
`Database.guard`, so that rule and the writer lock live here once.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import pwd
import sqlite3
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import aiosqlite

from hilsim.errors import DatabaseInUseError, StoreError, StoreSetupError
from hilsim.store.migrations import migrate

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Files the service creates next to the database are the service user's alone (no group or
#: world bits): they hold the AuthorizationKey's history, idTags and meter readings.
PRIVATE_MODE = 0o600

#: A backup (diagnostics archive) retries a busy database this often, this far apart (20 s in
#: all) and then fails, rather than holding the store's one thread for ever.
BACKUP_BUSY_TRIES = 80
BACKUP_BUSY_SLEEP_S = 0.25

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


def now() -> str:
    """The time a row records, UTC to the millisecond."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Database:
    """One open, locked and migrated SQLite file: its connection and its one writer lock."""

    def __init__(
        self, path: Path, connection: aiosqlite.Connection, lock: DatabaseLock | None = None
    ) -> None:
        """Use `Database.open`; this only wires an already-migrated connection (and its lock)."""
        self.path = path
        self.connection = connection
        self._lock = lock
        # aiosqlite runs calls one at a time but does not stop two coroutines from interleaving
        # the statements of their transactions; this does. Reads that must not see another
        # coroutine's uncommitted rows (on this one connection they would) take it too.
        self.writer_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | Path, *, holder: str = "") -> Database:
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
    ) -> Database:
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
        database = cls(path, connection, lock)
        try:
            await database._configure()
        except StoreError as exc:
            await database._close_quietly()
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
            await database._close_quietly()
            raise
        logger.debug("opened %s", path)
        return database

    async def close(self) -> None:
        """Close the connection, then let go of the lock (WAL is checkpointed by SQLite)."""
        try:
            await self.connection.close()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"{self.path}: cannot close database: {exc}") from exc
        finally:
            if self._lock is not None:
                self._lock.release()

    @asynccontextmanager
    async def transaction(self, *, durable: bool = False) -> AsyncIterator[None]:
        """One write transaction; ``durable`` fsyncs its commit (synchronous=FULL).

        Its control statements (PRAGMA, BEGIN, COMMIT, ROLLBACK) run to completion even when
        the caller is cancelled: aiosqlite carries a statement out in its thread whether or not
        anyone still awaits it, so an abandoned BEGIN would leave the one connection inside a
        transaction nobody ends, and every later write would fail until a restart.
        """
        async with self.writer_lock:
            try:
                if durable:
                    await self._settle(self.connection.execute("PRAGMA synchronous=FULL"))
                try:
                    await self._settle(self.connection.execute("BEGIN IMMEDIATE"))
                    yield
                    await self._settle(self.connection.commit())
                except BaseException:
                    # Also after a BEGIN that went through while its caller was being cancelled.
                    if self.connection.in_transaction:
                        await self._settle(self.connection.rollback())
                    raise
            finally:
                if durable:
                    await self._settle(self.connection.execute("PRAGMA synchronous=NORMAL"))

    @staticmethod
    async def _settle(statement: Awaitable[object]) -> None:
        """Await `statement` to its end; a cancellation that came meanwhile is raised after it."""
        task = asyncio.ensure_future(statement)
        cancelled = False
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if task.cancelled():
                    raise
                cancelled = True
        if cancelled:
            task.exception()  # retrieved: the cancellation is what the caller must see
            raise asyncio.CancelledError
        task.result()

    async def guard(self, action: str, operation: Callable[[], Awaitable[T]]) -> T:
        """Run `operation`, turning an SQLite or OS failure into a StoreError saying `action`."""
        try:
            return await operation()
        except (sqlite3.Error, OSError, ValueError) as exc:
            if isinstance(exc, StoreError):
                raise
            # ValueError is what aiosqlite raises for a closed connection.
            raise StoreError(f"{self.path}: cannot {action}: {exc}") from exc

    async def backup_to(self, target: Path) -> None:
        """A consistent copy of the whole database in ``target`` (SQLite's online backup).

        Under the writer lock: a backup from a connection inside a write transaction gets
        SQLITE_LOCKED, which Python's backup retries forever in aiosqlite's one thread, so the
        COMMIT queued behind it never runs and every later store call hangs (a GetDiagnostics
        arriving while a key was being saved froze the charge point). A backup that still
        stays busy fails after `BACKUP_BUSY_TRIES` instead of spinning.
        """

        def progress(status: int, _remaining: int, _total: int) -> None:
            nonlocal busy
            if status in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                busy += 1
                if busy >= BACKUP_BUSY_TRIES:
                    raise sqlite3.OperationalError("database stayed busy: backup abandoned")

        busy = 0

        async def run() -> None:
            # Made in one thread, written from aiosqlite's: hence check_same_thread=False.
            destination = await asyncio.to_thread(
                lambda: sqlite3.connect(target, check_same_thread=False)
            )
            try:
                async with self.writer_lock:
                    await self.connection.backup(
                        destination, progress=progress, sleep=BACKUP_BUSY_SLEEP_S
                    )
            finally:
                await asyncio.to_thread(destination.close)

        await self.guard(f"copy the database to {target}", run)

    async def _configure(self) -> None:
        async def run() -> None:
            rows = list(await self.connection.execute_fetchall("PRAGMA journal_mode=WAL"))
            mode = rows[0][0] if rows else None
            if mode != "wal":
                # Still usable, just less robust on power loss; e.g. some network filesystems.
                logger.warning("%s: journal_mode is %s, not wal", self.path, mode)
            await self.connection.execute("PRAGMA synchronous=NORMAL")
            check = list(await self.connection.execute_fetchall("PRAGMA quick_check"))
            if not check or check[0][0] != "ok":
                raise _QuickCheckFailed(f"quick_check: {check[0][0] if check else '?'}")
            await migrate(self.connection, self.path)

        await self.guard("open database", run)

    async def _close_quietly(self) -> None:
        try:
            await self.connection.close()
        except (sqlite3.Error, OSError, ValueError):
            logger.debug("%s: error while closing after a failed open", self.path, exc_info=True)
