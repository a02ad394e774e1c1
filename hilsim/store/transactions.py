"""What the CSMS must never lose: transactions, their samples and transaction data, the outbox.

A transaction is recorded before StartTransaction is sent, its messages wait in the outbox until
the CSMS confirmed them, and a message given up on is set aside in outbox_dead, never dropped.
The energy register (meter_register) is kept here too: it moves with every sample.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from hilsim.store.database import Database, now

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A transaction message waiting in the outbox, in the order it must be sent."""

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
    """One charging_transaction row: a transaction as recorded, open or stopped."""

    local_id: int
    connector_id: int
    id_tag: str
    transaction_id: int | None  # the CSMS's id, once StartTransaction was confirmed
    meter_start_Wh: int
    started_at: str
    last_energy_Wh: float
    last_sample_at: str
    stopped: bool
    tx_id: str | None = None  # OCPP 2.0.1: the transactionId the charge point chose
    next_seq_no: int = 0  # OCPP 2.0.1: the seqNo of the transaction's next TransactionEvent


class TransactionRepository:
    """Transactions and their outbox, written through the database's one writer lock.

    Start and stop are committed with synchronous=FULL: a transaction the CSMS may bill must
    survive a power cut the instant after it was decided. Samples and the energy register use
    the connection's NORMAL: at worst the samples of the last seconds before a power cut are
    lost (a process crash loses nothing), and the SD card is spared an fsync per sample.

    The outbox is read under the writer lock: statements on the one connection see the rows of
    a transaction another coroutine has begun but not committed yet, and a message must never
    reach the wire before its row is durable (a rollback would have sent a phantom).
    """

    def __init__(self, database: Database) -> None:
        self._database = database
        self._db = database.connection

    async def begin_transaction(
        self, connector_id: int, id_tag: str, meter_start: int, started_at: str, payload: str
    ) -> int:
        """Record a new transaction and queue its StartTransaction; returns its local id."""

        async def run() -> int:
            async with self._database.transaction(durable=True):
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

        return await self._database.guard("record a transaction start", run)

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
            async with self._database.transaction():
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

        await self._database.guard("record a meter sample", run)

    async def keep_transaction_data(self, local_id: int, meter_value: str) -> None:
        """Keep a MeterValue (JSON) for the StopTransaction of a transaction."""

        async def run() -> None:
            async with self._database.transaction():
                await self._keep(local_id, meter_value)

        await self._database.guard("keep transaction data", run)

    async def transaction_data(self, local_id: int) -> list[str]:
        """The MeterValues (JSON) kept for a transaction's StopTransaction, in the order kept."""
        rows = await self._database.guard(
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
            async with self._database.transaction(durable=True):
                await self._stopped(local_id, connector_id, energy_Wh, at)
                await self._enqueue("StopTransaction", local_id, payload)
                await self._forget_data(local_id)

        await self._database.guard("record a transaction stop", run)

    async def _stopped(self, local_id: int, connector_id: int, energy_Wh: float, at: str) -> None:
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

    # -- OCPP 2.0.1: TransactionEvents, numbered in the commit that queues them ----------------

    async def begin_transaction_event(
        self,
        connector_id: int,
        id_tag: str,
        meter_start: int,
        started_at: str,
        tx_id: str,
        build: Callable[[int], str],
    ) -> int:
        """Record a new 2.0.1 transaction (its id ``tx_id``) and queue its first event, whose
        payload ``build`` makes from its seqNo; returns the local id."""

        async def run() -> int:
            async with self._database.transaction(durable=True):
                cursor = await self._db.execute(
                    """
                    INSERT INTO charging_transaction (connector_id, id_tag, meter_start_Wh,
                        started_at, last_energy_Wh, last_sample_at, tx_id)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """,
                    (connector_id, id_tag, meter_start, started_at, meter_start, started_at,
                     tx_id),
                )  # fmt: skip
                local_id = int(cursor.lastrowid or 0)
                await self._enqueue_event(local_id, build)
                return local_id

        return await self._database.guard("record a transaction start", run)

    async def transaction_event(
        self,
        local_id: int,
        build: Callable[[int], str],
        *,
        id_tag: str | None = None,
        stop: tuple[int, float, str] | None = None,
    ) -> int:
        """Queue a TransactionEvent of a 2.0.1 transaction with the next seqNo, in one commit
        with the seqNo's increment: a seqNo is never given twice, even across a power cut.

        ``id_tag``: the transaction's idTag is now this one; ``stop`` (connector, energy, time):
        the event ends the transaction (its kept transaction data are in the payload now).
        Returns the seqNo given.
        """

        async def run() -> int:
            async with self._database.transaction(durable=True):
                if id_tag is not None:
                    await self._db.execute(
                        "UPDATE charging_transaction SET id_tag = ? WHERE local_id = ?",
                        (id_tag, local_id),
                    )
                if stop is not None:
                    connector_id, energy_Wh, at = stop
                    await self._stopped(local_id, connector_id, energy_Wh, at)
                seq_no = await self._enqueue_event(local_id, build)
                if stop is not None:
                    await self._forget_data(local_id)
                return seq_no

        return await self._database.guard("record a transaction event", run)

    async def outbox_count(self, local_id: int) -> int:
        """How many messages of a transaction wait for the CSMS."""

        async def run() -> int:
            async with self._database.writer_lock:
                rows = await self._db.execute_fetchall(
                    "SELECT count(*) FROM outbox WHERE local_id = ?", (local_id,)
                )
            return int(next(iter(rows))[0])

        return await self._database.guard("read the outbox", run)

    async def _forget_data(self, local_id: int) -> None:
        """The kept transaction data are in the stop's payload now: not kept twice."""
        await self._db.execute("DELETE FROM transaction_data WHERE local_id = ?", (local_id,))

    async def _enqueue_event(self, local_id: int, build: Callable[[int], str]) -> int:
        rows = await self._db.execute_fetchall(
            "SELECT next_seq_no FROM charging_transaction WHERE local_id = ?", (local_id,)
        )
        seq_no = int(next(iter(rows))[0])
        await self._db.execute(
            "UPDATE charging_transaction SET next_seq_no = ? WHERE local_id = ?",
            (seq_no + 1, local_id),
        )
        await self._enqueue("TransactionEvent", local_id, build(seq_no))
        return seq_no

    async def outbox_head(self) -> OutboxEntry | None:
        """The oldest unconfirmed transaction message: they are delivered strictly in order."""

        async def run() -> OutboxEntry | None:
            async with self._database.writer_lock:
                rows = await self._db.execute_fetchall(
                    "SELECT seq, action, local_id, payload, attempts FROM outbox "
                    "ORDER BY seq LIMIT 1"
                )
            for seq, action, local_id, payload, attempts in rows:
                return OutboxEntry(seq, action, local_id, payload, attempts)
            return None

        return await self._database.guard("read the outbox", run)

    async def outbox_size(self) -> int:
        async def run() -> int:
            async with self._database.writer_lock:
                rows = await self._db.execute_fetchall("SELECT count(*) FROM outbox")
            return int(next(iter(rows))[0])

        return await self._database.guard("read the outbox", run)

    async def outbox_attempted(self, seq: int) -> int:
        """Count a failed delivery; returns the attempts made so far."""

        async def run() -> int:
            async with self._database.transaction():
                await self._db.execute(
                    "UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?", (seq,)
                )
                rows = await self._db.execute_fetchall(
                    "SELECT attempts FROM outbox WHERE seq = ?", (seq,)
                )
            return int(next(iter(rows))[0]) if rows else 0

        return await self._database.guard("update the outbox", run)

    async def outbox_done(self, seq: int, transaction_id: int | None = None) -> None:
        """Drop a confirmed message; a confirmed start records the CSMS's id.

        A stopped transaction whose messages have all left is forgotten in the same commit.
        """

        async def run() -> None:
            async with self._database.transaction(durable=True):
                await self._outbox_remove(seq, transaction_id)

        await self._database.guard("update the outbox", run)

    async def outbox_set_aside(self, seq: int, reason: str) -> None:
        """Move a message given up on to outbox_dead (with the CSMS's id, if known), in one
        durable commit: the queue carries on behind it, and nothing is lost."""

        async def run() -> None:
            async with self._database.transaction(durable=True):
                await self._db.execute(
                    """
                    INSERT INTO outbox_dead (seq, action, local_id, transaction_id, payload,
                        attempts, created_at, set_aside_at, reason)
                    SELECT o.seq, o.action, o.local_id, t.transaction_id, o.payload, o.attempts,
                        o.created_at, ?, ?
                    FROM outbox o LEFT JOIN charging_transaction t ON t.local_id = o.local_id
                    WHERE o.seq = ?
                    """,
                    (now(), reason, seq),
                )
                await self._outbox_remove(seq, None)

        await self._database.guard("set an outbox message aside", run)

    async def outbox_dead(self) -> list[SetAsideEntry]:
        """The messages set aside, oldest first (for `hilsim ctl status` and a person)."""
        rows = await self._database.guard(
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
        rows = await self._database.guard(
            "read transactions",
            lambda: self._db.execute_fetchall(
                """
                SELECT local_id, connector_id, id_tag, transaction_id, meter_start_Wh,
                       started_at, last_energy_Wh, last_sample_at, stopped, tx_id, next_seq_no
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
                tx_id=row[9],
                next_seq_no=row[10],
            )
            for row in rows
        ]

    async def meter_registers(self) -> dict[int, float]:
        """The last persisted energy register of each connector, so energy never goes back."""
        rows = await self._database.guard(
            "read meter registers",
            lambda: self._db.execute_fetchall("SELECT connector_id, energy_Wh FROM meter_register"),
        )
        return {int(cid): float(energy) for cid, energy in rows}

    async def _keep(self, local_id: int, meter_value: str) -> None:
        await self._db.execute(
            "INSERT INTO transaction_data (local_id, meter_value) VALUES (?, ?)",
            (local_id, meter_value),
        )

    async def _enqueue(self, action: str, local_id: int, payload: str) -> None:
        await self._db.execute(
            "INSERT INTO outbox (action, local_id, payload, created_at) VALUES (?, ?, ?, ?)",
            (action, local_id, payload, now()),
        )
