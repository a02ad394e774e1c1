"""The central system's transaction ledger: what each charge point said about each transaction."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


@dataclass
class TransactionRecord:
    """One transaction as the central system saw it (payload values exactly as sent)."""

    transaction_id: int
    charge_point_id: str
    connector_id: int
    id_tag: str
    meter_start: int  # Wh
    start_timestamp: str  # StartTransaction.req timestamp, as sent by the charge point
    id_tag_status: str  # idTagInfo.status the central system answered with
    reservation_id: int | None = None
    started_at: float = field(default_factory=time.time)  # when the central system received it
    meter_stop: int | None = None  # Wh
    stop_timestamp: str | None = None
    reason: str | None = None  # "Local" when the charge point left it out (OCPP 1.6 default)
    stop_id_tag: str | None = None
    stopped_at: float | None = None
    #: every MeterValue object (camelCase, as on the wire) of MeterValues.req for this transaction
    meter_values: list[dict[str, Any]] = field(default_factory=list)
    #: the transactionData of StopTransaction.req (camelCase MeterValue objects)
    transaction_data: list[dict[str, Any]] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.meter_stop is None

    @property
    def energy_wh(self) -> int | None:
        """meterStop - meterStart, once stopped."""
        return None if self.meter_stop is None else self.meter_stop - self.meter_start

    def samples(self, measurand: str = "Energy.Active.Import.Register") -> list[tuple[str, str]]:
        """(timestamp, value) of every sampled value of one measurand, in arrival order.

        A sampled value without a measurand is Energy.Active.Import.Register (OCPP 1.6 default).
        """
        found = []
        for meter_value in self.meter_values:
            for sample in meter_value.get("sampledValue", []):
                if sample.get("measurand", "Energy.Active.Import.Register") == measurand:
                    found.append((meter_value.get("timestamp", ""), sample.get("value", "")))
        return found


class TransactionLedger(dict[int, TransactionRecord]):
    """Transaction id -> record. Ids start at 1 and only ever increase."""

    def __init__(self) -> None:
        super().__init__()
        self._last_id = 0
        self.repeated_starts = 0  # StartTransactions received again for a known transaction

    def start(
        self, charge_point_id: str, payload: dict[str, Any], id_tag_status: str
    ) -> TransactionRecord:
        # A charge point that lost power (or its link) after sending StartTransaction but before
        # reading the answer sends it again from its outbox: the same start, the same id.
        for record in self.values():
            if (
                record.charge_point_id == charge_point_id
                and record.connector_id == payload["connectorId"]
                and record.id_tag == payload["idTag"]
                and record.start_timestamp == payload["timestamp"]
                and record.meter_start == payload["meterStart"]
            ):
                self.repeated_starts += 1
                logger.info(
                    "%s: StartTransaction repeated; still transaction %d",
                    charge_point_id,
                    record.transaction_id,
                )
                return record
        self._last_id += 1
        record = TransactionRecord(
            transaction_id=self._last_id,
            charge_point_id=charge_point_id,
            connector_id=payload["connectorId"],
            id_tag=payload["idTag"],
            meter_start=payload["meterStart"],
            start_timestamp=payload["timestamp"],
            id_tag_status=id_tag_status,
            reservation_id=payload.get("reservationId"),
        )
        self[record.transaction_id] = record
        logger.info(
            "%s: transaction %d started on connector %d for %s (%s), meter %d Wh",
            charge_point_id,
            record.transaction_id,
            record.connector_id,
            record.id_tag,
            id_tag_status,
            record.meter_start,
        )
        return record

    def stop(self, charge_point_id: str, payload: dict[str, Any]) -> TransactionRecord | None:
        record = self.get(payload["transactionId"])
        if record is None:
            logger.warning(
                "%s: StopTransaction for unknown transaction %s",
                charge_point_id,
                payload["transactionId"],
            )
            return None
        if record.charge_point_id != charge_point_id:
            logger.warning(
                "%s: StopTransaction for transaction %d of %s",
                charge_point_id,
                record.transaction_id,
                record.charge_point_id,
            )
        if not record.active:
            # A charge point repeats StopTransaction when it missed the answer: same data again.
            logger.info("%s: transaction %d stopped again", charge_point_id, record.transaction_id)
        record.meter_stop = payload["meterStop"]
        record.stop_timestamp = payload["timestamp"]
        record.reason = payload.get("reason", "Local")
        record.stop_id_tag = payload.get("idTag")
        record.stopped_at = time.time()
        record.transaction_data = list(payload.get("transactionData", []))
        logger.info(
            "%s: transaction %d stopped (%s), meter %d Wh, %d Wh charged",
            charge_point_id,
            record.transaction_id,
            record.reason,
            record.meter_stop,
            record.energy_wh,
        )
        return record

    def meter_values(
        self, charge_point_id: str, payload: dict[str, Any]
    ) -> TransactionRecord | None:
        transaction_id = payload.get("transactionId")
        if transaction_id is None:
            return None
        record = self.get(transaction_id)
        if record is None:
            logger.warning(
                "%s: MeterValues for unknown transaction %s", charge_point_id, transaction_id
            )
            return None
        record.meter_values.extend(payload.get("meterValue", []))
        return record
