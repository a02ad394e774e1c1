"""Transaction messages that must reach the CSMS exactly once, in order, whatever happens.

StartTransaction, StopTransaction and transaction MeterValues are written to SQLite before they
are sent and deleted only once the CSMS confirmed them (OCPP 1.6, 4.10 "Error responses to
transaction-related messages"). A transaction has a *local* id from the moment it starts, even
offline; the CSMS's transactionId is learnt when its StartTransaction is confirmed and written
into every later message of that transaction as it leaves.

A row holds what goes on the wire (the action and its camelCase payload), never the arguments
of a Python method, so no upgrade can leave a row the code cannot send. A message that fails
TransactionMessageAttempts times for a reason other than the link (a CALLERROR, an invalid
answer, a local error) is set aside in the database (outbox_dead) with an ERROR log line, and the
queue carries on behind it; so is every later message of a transaction whose StartTransaction was
set aside, since the CSMS has no id to file it under.

What the rows say is the dialect's (`TransactionMessages`, chosen once at wiring): `Messages16`
records StartTransaction/MeterValues/StopTransaction and learns the CSMS's ids; the OCPP 2.0.1
dialect (`hilsim.ocpp201.transaction_events`) records TransactionEvents. The queue, its order,
the retries and setting aside are the outbox's, the same for both.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from hilsim.errors import CsmsError
from hilsim.keys import ConfigurationKeys
from hilsim.meter.base import register_Wh
from hilsim.ocpp.client import CallErrorReceived
from hilsim.ocpp.session import CsmsLink, LinkState
from hilsim.store import OutboxEntry, Store, TransactionRow
from hilsim.transaction_messages import Messages16, TransactionMessages

log = logging.getLogger(__name__)

#: After a failure of the outbox itself (the database), seconds before trying again, doubling.
STORE_RETRY_S = (0.5, 30.0)

StartConfirmed = Callable[[int, int, dict[str, Any]], None]

class Outbox:
    """Persists transaction messages, delivers them in order, maps local to CSMS ids."""

    def __init__(
        self,
        store: Store,
        link: CsmsLink,
        keys: ConfigurationKeys,
        messages: Callable[[Outbox], TransactionMessages] | None = None,
    ) -> None:
        """``messages``: builds the dialect for this outbox (OCPP 1.6's unless given)."""
        self.store = store
        self.link = link
        self.keys = keys
        #: told (local id, transactionId, IdTagInfo) of a StartTransaction the CSMS confirmed
        #: after its start stopped waiting (an offline start): `hilsim.transactions`
        self.start_confirmed_listeners: list[StartConfirmed] = []
        self._waiters: dict[int, asyncio.Future[tuple[int, dict[str, Any]]]] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # set whenever the outbox was found empty
        #: the write lock: FIFO, so messages are recorded in the order they were asked for
        self.writes: asyncio.Lock = asyncio.Lock()
        #: seq -> (payload, answer) of a message the CSMS confirmed whose row is not gone yet
        #: (the database failed): it is never sent twice, only its confirmation recorded again.
        self._unrecorded: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
        self.delivered = 0
        self.dropped = 0  # given up on (set aside) since the start
        self.set_aside = 0  # rows in outbox_dead, for `hilsim ctl status`
        #: told the action of every message once it is safely in the database
        self.recorded_listeners: list[Callable[[str], None]] = []
        #: told (idTag, IdTagInfo) of every StopTransaction the CSMS answered with an IdTagInfo
        self.id_tag_info_listeners: list[Callable[[str, dict[str, Any]], None]] = []
        self.messages: TransactionMessages = messages(self) if messages else Messages16()

    # -- ids ---------------------------------------------------------------------------------

    def transaction_id(self, local_id: int) -> int | None:
        """The CSMS's id for a local transaction, once known."""
        return self.messages.transaction_id(local_id)

    def local_id(self, transaction_id: int) -> int | None:
        return self.messages.local_id(transaction_id)

    def known_as(self, connector_id: int, local_id: int | None) -> int | str | None:
        """The id the CSMS knows the connector's transaction by: 1.6 the CSMS's integer, 2.0.1
        the charge point's UUID (which exists before the machine's transaction may)."""
        return self.messages.known_as(connector_id, local_id)

    # -- recording (in call order: the write lock is FIFO) --------------------------------------

    async def start(
        self,
        connector_id: int,
        id_tag: str,
        meter_start: int,
        timestamp: str,
        reservation_id: int | None,
    ) -> int:
        return await self.messages.start(
            self, connector_id, id_tag, meter_start, timestamp, reservation_id
        )

    def expect(self, local_id: int) -> None:
        """A start waits for its confirmation (`wait_confirmed`): registered before anything
        else runs, so the confirmation cannot slip past it."""
        self._waiters[local_id] = asyncio.get_running_loop().create_future()

    def confirm(self, local_id: int, transaction_id: int, info: dict[str, Any]) -> None:
        """The CSMS confirmed a start: its waiter, or else the late-confirmation listeners."""
        waiter = self._waiters.pop(local_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result((transaction_id, info))
        else:
            for listener in self.start_confirmed_listeners:
                listener(local_id, transaction_id, info)

    def tell_id_tag_info(self, id_tag: str, info: dict[str, Any]) -> None:
        for listener in self.id_tag_info_listeners:
            listener(id_tag, info)

    async def sample(
        self,
        connector_id: int,
        energy_Wh: float,
        timestamp: str,
        local_id: int | None,
        meter_value: list[dict[str, Any]] | None,
        kept: dict[str, Any] | None = None,
    ) -> None:
        """Persist a sample: the register, the transaction's MeterValues (if any are wanted)
        and ``kept``, a MeterValue for its StopTransaction's transactionData (if any)."""
        action = await self.messages.sample(
            self, connector_id, energy_Wh, timestamp, local_id, meter_value, kept
        )
        if action is not None:
            self.recorded(action)

    async def keep(self, local_id: int, meter_value: dict[str, Any]) -> None:
        """Keep a MeterValue for the transaction's StopTransaction (Transaction.Begin)."""
        async with self.writes:
            await self.store.keep_transaction_data(local_id, json.dumps(meter_value))

    async def stop(
        self,
        local_id: int,
        connector_id: int,
        meter_stop: int,
        energy_Wh: float,
        timestamp: str,
        reason: str,
        id_tag: str | None,
        end: dict[str, Any] | None = None,
    ) -> None:
        """Record the stop; its transactionData is what was kept (Begin, samples, clock-aligned
        values: StopTxnSampledData, StopTxnAlignedData), then ``end`` (Transaction.End).

        After a power cut there is no ``end``, but what was kept is in the database.
        """
        async with self.writes:  # every earlier keep and sample is written by now
            data = [json.loads(text) for text in await self.store.transaction_data(local_id)]
            if end is not None:
                data.append(end)
            action = await self.messages.stop(
                self, local_id, connector_id, meter_stop, energy_Wh, timestamp, reason,
                id_tag, data,
            )  # fmt: skip
        if action is not None:
            self.recorded(action)

    def recorded(self, action: str) -> None:
        """A message is safely in the database: wake the delivery, tell the listeners."""
        self._wake.set()
        for listener in self.recorded_listeners:
            listener(action)

    async def wait_confirmed(
        self, local_id: int, timeout: float
    ) -> tuple[int, dict[str, Any]] | None:
        """The CSMS's answer to a StartTransaction, or None if it did not come in time."""
        future = self._waiters.get(local_id)
        if future is None:
            return None
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            # Offline or slow: the transaction goes on locally; a later confirmation arrives
            # through start_confirmed_listeners instead.
            self._waiters.pop(local_id, None)
            return None

    # -- after a restart -----------------------------------------------------------------------

    async def recover(self) -> list[TransactionRow]:
        """Load the id map; end transactions a power cut left open (reason PowerLoss).

        Returns the transactions that were ended, for the log.
        """
        ended = []
        for row in await self.store.transactions():
            self.messages.adopt(row)
            if not row.stopped:
                log.warning(
                    "transaction %s on connector %d was open at power loss; "
                    "stopping it at %.0f Wh as of %s",
                    row.transaction_id or f"(local {row.local_id})",
                    row.connector_id,
                    row.last_energy_Wh,
                    row.last_sample_at,
                )
                await self.stop(
                    row.local_id,
                    row.connector_id,
                    register_Wh(row.last_energy_Wh),
                    row.last_energy_Wh,
                    row.last_sample_at,
                    "PowerLoss",
                    None,
                )
                ended.append(row)
        dead = await self.store.outbox_dead()
        self.set_aside = len(dead)
        if dead:
            log.warning(
                "%d transaction message(s) are set aside in %s (table outbox_dead), never sent; "
                "the last: %s (%s)",
                len(dead), self.store.path, dead[-1].action, dead[-1].reason,
            )  # fmt: skip
        pending = await self.store.outbox_size()
        if pending:
            log.info("%d transaction message(s) wait for the CSMS", pending)
            self._wake.set()
        return ended

    # -- delivery ------------------------------------------------------------------------------

    async def drained(self) -> None:
        """Return once every queued message has been delivered (or given up on)."""
        while await self.store.outbox_size():
            self._idle.clear()
            await self._idle.wait()

    async def run(self) -> None:
        """Deliver queued messages, oldest first, whenever the link is up.

        Nothing ends this loop but a cancellation: a failing database is logged and tried again
        (with a growing pause), so one bad write never takes the service down with it.
        """
        pause = STORE_RETRY_S[0]
        while True:
            try:
                if self.link.state != LinkState.CONNECTED:
                    await self.link.connected.wait()
                head = await self.store.outbox_head()
                if head is None:
                    self._idle.set()
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                await self._deliver(head)
            except Exception:
                log.exception("the outbox failed; trying again in %g s", pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, STORE_RETRY_S[1])
            else:
                pause = STORE_RETRY_S[0]

    async def _deliver(self, entry: OutboxEntry) -> None:
        confirmed = self._unrecorded.get(entry.seq)
        if confirmed is not None:  # sent and confirmed already; only recording it failed
            await self._record(entry, confirmed[1])
            return
        try:
            payload = json.loads(entry.payload)
            if not isinstance(payload, dict):
                raise ValueError(f"expected a JSON object, got {type(payload).__name__}")
        except ValueError as exc:
            await self._failed(entry, f"unreadable payload: {exc}")
            return
        why = self.messages.prepare(entry, payload)
        if why is not None:
            await self._set_aside(entry, why)
            return
        action = entry.action
        try:
            result = await self.link.submit(lambda client: client.call(action, payload), action)
        except CallErrorReceived as exc:  # InvalidResultReceived too
            await self._failed(entry, str(exc))
            return
        except CsmsError as exc:
            log.info("%s not delivered (%s); kept for after reconnection", entry.action, exc)
            await self._link_lost()
            return
        except Exception as exc:
            log.exception("%s (seq %d) could not be sent", entry.action, entry.seq)
            await self._failed(entry, f"{type(exc).__name__}: {exc}")
            return
        invalid = self.messages.check(entry, result)
        if invalid is not None:
            await self._failed(entry, f"invalid answer: {invalid}")
            return
        self._unrecorded[entry.seq] = (payload, result)
        self.messages.announce(self, entry, payload, result)
        await self._record(entry, result)

    async def _record(self, entry: OutboxEntry, result: dict[str, Any]) -> None:
        """The confirmed message leaves the database (a start records the CSMS's id)."""
        transaction_id = self.messages.learnt_id(entry, result)
        await self.store.outbox_done(entry.seq, transaction_id=transaction_id)
        del self._unrecorded[entry.seq]
        self.delivered += 1

    async def _failed(self, entry: OutboxEntry, why: str) -> None:
        """A failure the link did not cause: try again later, or set the message aside."""
        attempts = await self.store.outbox_attempted(entry.seq)
        limit = int(self.keys.get("TransactionMessageAttempts"))
        if attempts >= limit:
            await self._set_aside(entry, f"failed {attempts} time(s), last: {why}")
            return
        delay = float(self.keys.get("TransactionMessageRetryInterval")) * attempts
        log.warning("%s not delivered (%s); attempt %d of %d in %g s", entry.action, why,
                    attempts + 1, limit, delay)
        await asyncio.sleep(delay)

    async def _set_aside(self, entry: OutboxEntry, reason: str) -> None:
        transaction_id = self.messages.transaction_id(entry.local_id)
        log.error(
            "%s of transaction %s set aside, never to be sent: %s; kept in %s (table "
            "outbox_dead, seq %d)",
            entry.action,
            transaction_id if transaction_id is not None else f"(local {entry.local_id})",
            reason,
            self.store.path,
            entry.seq,
        )
        await self.store.outbox_set_aside(entry.seq, reason)
        self.dropped += 1
        self.set_aside += 1

    async def _link_lost(self) -> None:
        """Wait until the link has gone down and come back, instead of spinning on it."""
        await self.link.disconnected.wait()

