"""Transaction messages that must reach the CSMS exactly once, in order, whatever happens.

StartTransaction, StopTransaction and transaction MeterValues are written to SQLite before they
are sent and deleted only once the CSMS confirmed them (OCPP 1.6, 4.10 "Error responses to
transaction-related messages"). A transaction has a *local* id from the moment it starts, even
offline; the CSMS's transactionId is learnt when its StartTransaction is confirmed and written
into every later message of that transaction as it leaves.
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

log = logging.getLogger(__name__)

#: Which client method sends each action; payloads are that method's keyword arguments.
_METHODS = {
    "StartTransaction": "start_transaction",
    "MeterValues": "meter_values",
    "StopTransaction": "stop_transaction",
}

StartConfirmed = Callable[[int, int, dict[str, Any]], None]


class Outbox:
    """Persists transaction messages, delivers them in order, maps local to CSMS ids."""

    def __init__(
        self,
        store: Store,
        link: CsmsLink,
        keys: ConfigurationKeys,
        on_start_confirmed: StartConfirmed,
    ) -> None:
        self.store = store
        self.link = link
        self.keys = keys
        self.on_start_confirmed = on_start_confirmed
        self._ids: dict[int, int] = {}  # local id -> CSMS transactionId
        self._waiters: dict[int, asyncio.Future[tuple[int, dict[str, Any]]]] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # set whenever the outbox was found empty
        self._writes: asyncio.Lock = asyncio.Lock()
        self.delivered = 0
        self.dropped = 0
        #: told the action of every message once it is safely in the database
        self.recorded_listeners: list[Callable[[str], None]] = []
        #: told (idTag, IdTagInfo) of every StopTransaction the CSMS answered with an IdTagInfo
        self.id_tag_info_listeners: list[Callable[[str, dict[str, Any]], None]] = []

    # -- ids ---------------------------------------------------------------------------------

    def transaction_id(self, local_id: int) -> int | None:
        """The CSMS's id for a local transaction, once known."""
        return self._ids.get(local_id)

    def local_id(self, transaction_id: int) -> int | None:
        for local, csms in self._ids.items():
            if csms == transaction_id:
                return local
        return None

    # -- recording (in call order: the write lock is FIFO) --------------------------------------

    async def start(
        self,
        connector_id: int,
        id_tag: str,
        meter_start: int,
        timestamp: str,
        reservation_id: int | None,
    ) -> int:
        payload = {
            "connector_id": connector_id,
            "id_tag": id_tag,
            "meter_start": meter_start,
            "timestamp": timestamp,
            "reservation_id": reservation_id,
        }
        async with self._writes:
            local_id = await self.store.begin_transaction(
                connector_id, id_tag, meter_start, timestamp, json.dumps(payload)
            )
        # Registered before anything else runs, so the confirmation cannot slip past it.
        self._waiters[local_id] = asyncio.get_running_loop().create_future()
        self._recorded("StartTransaction")
        return local_id

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
        payload = kept_json = None
        if local_id is not None and meter_value is not None:
            payload = json.dumps({"connector_id": connector_id, "meter_value": meter_value})
        if local_id is not None and kept is not None:
            kept_json = json.dumps(kept)
        async with self._writes:
            await self.store.record_sample(
                connector_id, energy_Wh, timestamp, local_id, payload, kept_json
            )
        if payload is not None:
            self._recorded("MeterValues")

    async def keep(self, local_id: int, meter_value: dict[str, Any]) -> None:
        """Keep a MeterValue for the transaction's StopTransaction (Transaction.Begin)."""
        async with self._writes:
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
        payload: dict[str, Any] = {
            "meter_stop": meter_stop,
            "timestamp": timestamp,
            "reason": reason,
            "id_tag": id_tag,
        }
        async with self._writes:  # every earlier keep and sample is written by now
            data = [json.loads(text) for text in await self.store.transaction_data(local_id)]
            if end is not None:
                data.append(end)
            if data:
                payload["transaction_data"] = data
            await self.store.end_transaction(
                local_id, connector_id, energy_Wh, timestamp, json.dumps(payload)
            )
        self._recorded("StopTransaction")

    def _recorded(self, action: str) -> None:
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
            # through on_start_confirmed instead.
            self._waiters.pop(local_id, None)
            return None

    # -- after a restart -----------------------------------------------------------------------

    async def recover(self) -> list[TransactionRow]:
        """Load the id map; end transactions a power cut left open (reason PowerLoss).

        Returns the transactions that were ended, for the log.
        """
        ended = []
        for row in await self.store.transactions():
            if row.transaction_id is not None:
                self._ids[row.local_id] = row.transaction_id
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
        """Deliver queued messages, oldest first, whenever the link is up."""
        while True:
            if self.link.state != LinkState.CONNECTED:
                await self.link.connected.wait()
            head = await self.store.outbox_head()
            if head is None:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._deliver(head)

    async def _deliver(self, entry: OutboxEntry) -> None:
        kwargs = json.loads(entry.payload)
        if entry.action != "StartTransaction":
            transaction_id = self._ids.get(entry.local_id)
            if transaction_id is None:
                # Its StartTransaction was given up on: the CSMS has no id to file this under.
                log.error("dropping %s of a transaction the CSMS never confirmed", entry.action)
                self.dropped += 1
                await self.store.outbox_done(entry.seq)
                return
            kwargs["transaction_id"] = transaction_id
        method = _METHODS[entry.action]
        try:
            result = await self.link.submit(
                lambda client: getattr(client, method)(**kwargs), entry.action
            )
        except CallErrorReceived as exc:
            await self._refused(entry, exc)
            return
        except CsmsError as exc:
            log.info("%s not delivered (%s); kept for after reconnection", entry.action, exc)
            await self._link_lost()
            return
        if entry.action == "StartTransaction":
            transaction_id, info = result
            self._ids[entry.local_id] = int(transaction_id)
            await self.store.outbox_done(entry.seq, transaction_id=int(transaction_id))
            waiter = self._waiters.pop(entry.local_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result((int(transaction_id), info))
            else:
                self.on_start_confirmed(entry.local_id, int(transaction_id), info)
        else:
            await self.store.outbox_done(entry.seq)
            if entry.action == "StopTransaction" and result and kwargs.get("id_tag"):
                for listener in self.id_tag_info_listeners:
                    listener(str(kwargs["id_tag"]), result)
        self.delivered += 1

    async def _refused(self, entry: OutboxEntry, exc: CallErrorReceived) -> None:
        attempts = await self.store.outbox_attempted(entry.seq)
        limit = int(self.keys.get("TransactionMessageAttempts"))
        if attempts >= limit:
            log.error("%s refused %d times (%s); giving up on it", entry.action, attempts, exc)
            self.dropped += 1
            await self.store.outbox_done(entry.seq)
            return
        delay = float(self.keys.get("TransactionMessageRetryInterval")) * attempts
        log.warning("%s refused (%s); attempt %d of %d in %g s", entry.action, exc,
                    attempts + 1, limit, delay)
        await asyncio.sleep(delay)

    async def _link_lost(self) -> None:
        """Wait until the link has gone down and come back, instead of spinning on it."""
        await self.link.disconnected.wait()
