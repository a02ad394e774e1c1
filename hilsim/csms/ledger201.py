"""The central system's OCPP 2.0.1 transaction ledger: every TransactionEvent, per transaction.

In 2.0.1 the charge point names its transactions (``transactionInfo.transactionId``, a string
it chooses) and numbers the events of each one (``seqNo`` from 0, one more per event, across
reconnects and power loss). A CSMS that bills from these events has to notice when one is
missing, repeated or late; this ledger keeps each transaction's events in arrival order and
says what it noticed (:attr:`TransactionRecord201.problems`), without refusing anything: the
charge point is answered normally, the tester reads the ledger.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

ENERGY = "Energy.Active.Import.Register"


@dataclass
class TransactionRecord201:
    """One 2.0.1 transaction as the central system saw it (payloads exactly as sent)."""

    transaction_id: str
    charge_point_id: str
    evse_id: int | None = None
    connector_id: int | None = None
    #: the last idToken the charge point sent for it ({"idToken", "type"}), if any
    id_token: dict[str, Any] | None = None
    #: idTokenInfo.status the central system last answered with, if it answered one
    id_token_status: str | None = None
    remote_start_id: int | None = None
    #: every TransactionEventRequest payload of this transaction, in arrival order
    events: list[dict[str, Any]] = field(default_factory=list)
    #: every MeterValue object (camelCase) sent with these events, in arrival order
    meter_values: list[dict[str, Any]] = field(default_factory=list)
    #: what looked wrong, one readable line each (missing or repeated seqNo, no Started...)
    problems: list[str] = field(default_factory=list)
    first_seen_at: float = field(default_factory=time.time)
    ended_at: float | None = None  # when the central system received eventType Ended

    # ----------------------------------------------------------------------------- views

    @property
    def seq_nos(self) -> list[int]:
        """Every seqNo in arrival order (repeats included)."""
        return [int(event["seqNo"]) for event in self.events]

    @property
    def gaps(self) -> list[int]:
        """The seqNos missing between 0 and the highest one received."""
        seen = set(self.seq_nos)
        return [n for n in range(max(seen, default=-1) + 1) if n not in seen]

    @property
    def repeated(self) -> list[int]:
        """seqNos received more than once (a charge point that missed an answer sends again)."""
        return sorted(n for n, count in Counter(self.seq_nos).items() if count > 1)

    @property
    def started(self) -> bool:
        return any(event["eventType"] == "Started" for event in self.events)

    @property
    def ended(self) -> bool:
        return any(event["eventType"] == "Ended" for event in self.events)

    @property
    def active(self) -> bool:
        return not self.ended

    @property
    def offline_seq_nos(self) -> list[int]:
        """seqNos of the events sent with ``offline: true`` (they happened while offline)."""
        return [int(event["seqNo"]) for event in self.events if event.get("offline")]

    @property
    def trigger_reasons(self) -> list[str]:
        return [str(event["triggerReason"]) for event in self.events]

    def _last(self, key: str) -> Any:
        for event in reversed(self.events):
            value = event.get("transactionInfo", {}).get(key)
            if value is not None:
                return value
        return None

    @property
    def charging_state(self) -> str | None:
        """The last ``transactionInfo.chargingState`` sent."""
        value = self._last("chargingState")
        return None if value is None else str(value)

    @property
    def stopped_reason(self) -> str | None:
        """``transactionInfo.stoppedReason`` once Ended ("Local" when left out, the default)."""
        if not self.ended:
            return None
        value = self._last("stoppedReason")
        return "Local" if value is None else str(value)

    @property
    def start_timestamp(self) -> str | None:
        for event in self.events:
            if event["eventType"] == "Started":
                return str(event["timestamp"])
        return None

    def samples(self, measurand: str = ENERGY) -> list[tuple[str, float]]:
        """(timestamp, value) of every sampled value of one measurand, in arrival order.

        A sampled value without a measurand is Energy.Active.Import.Register (the default).
        """
        found = []
        for meter_value in self.meter_values:
            for sample in meter_value.get("sampledValue", []):
                if sample.get("measurand", ENERGY) == measurand:
                    found.append((str(meter_value.get("timestamp", "")), float(sample["value"])))
        return found

    @property
    def energy_wh(self) -> float | None:
        """Last minus first energy register sample, when there are two (Wh as sent)."""
        energy = self.samples()
        if len(energy) < 2:
            return None
        return energy[-1][1] - energy[0][1]


class TransactionLedger201(dict[str, TransactionRecord201]):
    """transactionId -> record, for every 2.0.1 charge point of one central system."""

    def event(
        self, charge_point_id: str, payload: dict[str, Any], id_token_status: str | None
    ) -> TransactionRecord201:
        """Take in one TransactionEventRequest (already schema-checked); never refuses."""
        info = payload["transactionInfo"]
        transaction_id = str(info["transactionId"])
        record = self.get(transaction_id)
        if record is None:
            record = TransactionRecord201(transaction_id, charge_point_id)
            self[transaction_id] = record
        self._judge(record, charge_point_id, payload)
        record.events.append(payload)
        record.meter_values.extend(payload.get("meterValue", []))
        evse = payload.get("evse")
        if evse is not None:
            record.evse_id = evse["id"]
            record.connector_id = evse.get("connectorId", record.connector_id)
        if "idToken" in payload:
            record.id_token = payload["idToken"]
        if id_token_status is not None:
            record.id_token_status = id_token_status
        if info.get("remoteStartId") is not None:
            record.remote_start_id = info["remoteStartId"]
        if payload["eventType"] == "Ended" and record.ended_at is None:
            record.ended_at = time.time()
            logger.info(
                "%s: transaction %s ended (%s) after %d event(s)%s",
                charge_point_id,
                transaction_id,
                record.stopped_reason,
                len(record.events),
                f"; seqNo missing: {record.gaps}" if record.gaps else "",
            )
        elif payload["eventType"] == "Started":
            logger.info(
                "%s: transaction %s started on EVSE %s (%s)",
                charge_point_id,
                transaction_id,
                record.evse_id,
                payload["triggerReason"],
            )
        return record

    def _judge(
        self, record: TransactionRecord201, charge_point_id: str, payload: dict[str, Any]
    ) -> None:
        """Note what is wrong with this event, given the ones before it."""
        seq_no = int(payload["seqNo"])
        kind = payload["eventType"]
        found: list[str] = []
        if record.charge_point_id != charge_point_id:
            found.append(f"event from {charge_point_id}, transaction of {record.charge_point_id}")
        previous = record.seq_nos
        if seq_no in previous:
            found.append(f"seqNo {seq_no} received again ({kind})")
        elif previous and seq_no < max(previous):
            found.append(f"seqNo {seq_no} arrived after {max(previous)} (out of order)")
        else:
            expected = max(previous) + 1 if previous else 0
            if seq_no > expected:
                missing = ", ".join(str(n) for n in range(expected, seq_no))
                after = f"follows {expected - 1}" if previous else "is the first received"
                found.append(f"seqNo {seq_no} ({kind}) {after}: {missing} missing")
        if kind == "Started" and record.started and seq_no not in previous:
            found.append(f"a second Started (seqNo {seq_no})")
        if kind != "Started" and not previous:
            found.append(f"{kind} (seqNo {seq_no}) for a transaction never Started here")
        if record.ended and seq_no not in previous:
            found.append(f"{kind} (seqNo {seq_no}) after the transaction Ended")
        for text in found:
            logger.warning("%s: transaction %s: %s", charge_point_id, record.transaction_id, text)
        record.problems.extend(found)

    def open_for(self, charge_point_id: str) -> list[TransactionRecord201]:
        """The transactions of one charge point not Ended yet, oldest first."""
        return [r for r in self.values() if r.charge_point_id == charge_point_id and r.active]
