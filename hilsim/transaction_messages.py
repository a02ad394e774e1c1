"""The dialects of the outbox (`hilsim.outbox`): what its rows say and what answers mean.

The outbox's queue, order, retries and setting aside are the same whatever the protocol; what
a start, a sample and a stop are recorded as, and what the CSMS's answer to each means, is the
dialect's, chosen once at wiring: `Messages16` here (StartTransaction, MeterValues,
StopTransaction; the CSMS gives the ids), or OCPP 2.0.1's TransactionEvents
(`hilsim.ocpp201.transaction_events`; the charge point gives the ids).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Protocol

from hilsim.ocpp.session import CsmsLink
from hilsim.ocpp.validation import snake_case
from hilsim.store import OutboxEntry, Store, TransactionRow

log = logging.getLogger(__name__)

#: What SQLite can store: a transactionId beyond it is an invalid answer, not a crash.
_INT64 = range(-(2**63), 2**63)


class OutboxPort(Protocol):
    """What a dialect uses of the outbox (`hilsim.outbox.Outbox`)."""

    @property
    def store(self) -> Store: ...
    @property
    def link(self) -> CsmsLink: ...
    @property
    def writes(self) -> asyncio.Lock:
        """Held while writing rows: FIFO, so rows are written in the order asked for."""
        ...

    def recorded(self, action: str) -> None:
        """A message is in the database: wake the delivery."""
        ...

    def expect(self, local_id: int) -> None:
        """A start waits for its confirmation."""
        ...

    def confirm(self, local_id: int, transaction_id: int, info: dict[str, Any]) -> None:
        """The CSMS confirmed a start (``info``: a 1.6 IdTagInfo, snake_case)."""
        ...

    def tell_id_tag_info(self, id_tag: str, info: dict[str, Any]) -> None:
        """The CSMS said this of an idTag: for the authorization cache."""
        ...


class TransactionMessages(Protocol):
    """A dialect of the outbox: what its rows say, and what the CSMS's answers to them mean.

    Recording goes through the outbox (its write lock keeps the call order); the dialect writes
    the rows with ``outbox.store`` and announces them with ``outbox.recorded``.
    """

    async def start(
        self,
        outbox: OutboxPort,
        connector_id: int,
        id_tag: str,
        meter_start: int,
        timestamp: str,
        reservation_id: int | None,
    ) -> int:
        """Record a (1.6-level) transaction start; returns its local id."""
        ...

    async def sample(
        self,
        outbox: OutboxPort,
        connector_id: int,
        energy_Wh: float,
        timestamp: str,
        local_id: int | None,
        meter_value: list[dict[str, Any]] | None,
        kept: dict[str, Any] | None,
    ) -> str | None:
        """Persist a sample; returns the action queued, if any."""
        ...

    async def stop(
        self,
        outbox: OutboxPort,
        local_id: int,
        connector_id: int,
        meter_stop: int,
        energy_Wh: float,
        timestamp: str,
        reason: str,
        id_tag: str | None,
        data: list[dict[str, Any]],
    ) -> str | None:
        """Record the stop (``data``: what was kept, then Transaction.End); returns the action."""
        ...

    def adopt(self, row: TransactionRow) -> None:
        """Learn a transaction the database holds (after a restart)."""
        ...

    def transaction_id(self, local_id: int) -> int | None: ...

    def local_id(self, transaction_id: int) -> int | None: ...

    def known_as(self, connector_id: int, local_id: int | None) -> int | str | None:
        """The id the CSMS knows the connector's transaction by, as `hilsim ctl status` and the
        web page show it (None: none yet)."""
        ...

    def prepare(self, entry: OutboxEntry, payload: dict[str, Any]) -> str | None:
        """Complete a payload before it leaves; a reason to set it aside instead, or None."""
        ...

    def check(self, entry: OutboxEntry, result: dict[str, Any]) -> str | None:
        """Why an answer is invalid, or None."""
        ...

    def announce(
        self,
        outbox: OutboxPort,
        entry: OutboxEntry,
        payload: dict[str, Any],
        result: dict[str, Any],
    ) -> None:
        """Act on the CSMS's answer at once (once): ids, the waiting start, the cache."""
        ...

    def learnt_id(self, entry: OutboxEntry, result: dict[str, Any]) -> int | None:
        """The CSMS's transactionId the confirmed message gave, to be stored with it."""
        ...


class Messages16:
    """OCPP 1.6: StartTransaction, MeterValues and StopTransaction; the CSMS gives the ids."""

    def __init__(self) -> None:
        self._ids: dict[int, int] = {}  # local id -> CSMS transactionId

    def transaction_id(self, local_id: int) -> int | None:
        return self._ids.get(local_id)

    def known_as(self, connector_id: int, local_id: int | None) -> int | None:
        return None if local_id is None else self._ids.get(local_id)

    def local_id(self, transaction_id: int) -> int | None:
        for local, csms in self._ids.items():
            if csms == transaction_id:
                return local
        return None

    def adopt(self, row: TransactionRow) -> None:
        if row.transaction_id is not None:
            self._ids[row.local_id] = row.transaction_id

    async def start(
        self,
        outbox: OutboxPort,
        connector_id: int,
        id_tag: str,
        meter_start: int,
        timestamp: str,
        reservation_id: int | None,
    ) -> int:
        payload: dict[str, Any] = {
            "connectorId": connector_id,
            "idTag": id_tag,
            "meterStart": meter_start,
            "timestamp": timestamp,
        }
        if reservation_id is not None:
            payload["reservationId"] = reservation_id
        async with outbox.writes:
            local_id = await outbox.store.begin_transaction(
                connector_id, id_tag, meter_start, timestamp, json.dumps(payload)
            )
        outbox.expect(local_id)
        outbox.recorded("StartTransaction")
        return local_id

    async def sample(
        self,
        outbox: OutboxPort,
        connector_id: int,
        energy_Wh: float,
        timestamp: str,
        local_id: int | None,
        meter_value: list[dict[str, Any]] | None,
        kept: dict[str, Any] | None,
    ) -> str | None:
        payload = kept_json = None
        if local_id is not None and meter_value is not None:
            payload = json.dumps({"connectorId": connector_id, "meterValue": meter_value})
        if local_id is not None and kept is not None:
            kept_json = json.dumps(kept)
        async with outbox.writes:
            await outbox.store.record_sample(
                connector_id, energy_Wh, timestamp, local_id, payload, kept_json
            )
        return "MeterValues" if payload is not None else None

    async def stop(
        self,
        outbox: OutboxPort,
        local_id: int,
        connector_id: int,
        meter_stop: int,
        energy_Wh: float,
        timestamp: str,
        reason: str,
        id_tag: str | None,
        data: list[dict[str, Any]],
    ) -> str | None:
        payload: dict[str, Any] = {
            "meterStop": meter_stop,
            "timestamp": timestamp,
            "reason": reason,
        }
        if id_tag is not None:
            payload["idTag"] = id_tag
        if data:
            payload["transactionData"] = data
        await outbox.store.end_transaction(
            local_id, connector_id, energy_Wh, timestamp, json.dumps(payload)
        )
        return "StopTransaction"

    def prepare(self, entry: OutboxEntry, payload: dict[str, Any]) -> str | None:
        if entry.action not in ("StartTransaction", "MeterValues", "StopTransaction"):
            return f"an OCPP 1.6 charge point cannot send {entry.action}"
        if entry.action != "StartTransaction":
            transaction_id = self._ids.get(entry.local_id)
            if transaction_id is None:
                # Its StartTransaction was set aside: the CSMS has no id to file this under.
                return "its StartTransaction was never confirmed"
            payload["transactionId"] = transaction_id
        return None

    def check(self, entry: OutboxEntry, result: dict[str, Any]) -> str | None:
        if entry.action == "StartTransaction" and int(result["transactionId"]) not in _INT64:
            return f"transactionId {result['transactionId']}"
        return None

    def announce(
        self,
        outbox: OutboxPort,
        entry: OutboxEntry,
        payload: dict[str, Any],
        result: dict[str, Any],
    ) -> None:
        if entry.action == "StartTransaction":
            transaction_id = int(result["transactionId"])
            self._ids[entry.local_id] = transaction_id
            outbox.confirm(entry.local_id, transaction_id, dict(snake_case(result["idTagInfo"])))
        elif entry.action == "StopTransaction" and payload.get("idTag"):
            info = dict(snake_case(result.get("idTagInfo") or {}))
            if info:
                outbox.tell_id_tag_info(str(payload["idTag"]), info)

    def learnt_id(self, entry: OutboxEntry, result: dict[str, Any]) -> int | None:
        if entry.action == "StartTransaction":
            return int(result["transactionId"])
        return None
