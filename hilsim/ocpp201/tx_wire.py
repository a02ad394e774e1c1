"""What a 2.0.1 message says, field by field, from what the 1.6 services hand over.

The services speak 1.6 shapes (a tag string, a snake_case IdTagInfo, MeterValues with values as
text and units as "unit"); the outbox's 2.0.1 dialect (`hilsim.ocpp201.transaction_events`) and
the 2.0.1 client (`hilsim.ocpp201.client`: Authorize, MeterValues) write 2.0.1's with these, and
only with these: one translation, so a TransactionEvent and a MeterValues never disagree.
Pure functions, no IO.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from hilsim.meter import register_Wh

#: The type of every idToken from the panel, `hilsim ctl` and the web page (RFID cards).
ID_TOKEN_TYPE = "ISO14443"
#: idTokenInfo statuses that mean the same in 1.6; any other is Invalid to the services.
SAME_ID_STATUSES = frozenset({"Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"})
#: 2.0.1's MeasurandEnumType. 1.6 has two more (Temperature, RPM): a 2.0.1 CSMS would refuse the
#: whole message for one of them, so they are left out of 2.0.1 frames.
MEASURANDS_201 = frozenset({
    "Current.Export", "Current.Import", "Current.Offered",
    "Energy.Active.Export.Register", "Energy.Active.Import.Register",
    "Energy.Reactive.Export.Register", "Energy.Reactive.Import.Register",
    "Energy.Active.Export.Interval", "Energy.Active.Import.Interval", "Energy.Active.Net",
    "Energy.Reactive.Export.Interval", "Energy.Reactive.Import.Interval", "Energy.Reactive.Net",
    "Energy.Apparent.Net", "Energy.Apparent.Import", "Energy.Apparent.Export",
    "Frequency", "Power.Active.Export", "Power.Active.Import", "Power.Factor", "Power.Offered",
    "Power.Reactive.Export", "Power.Reactive.Import", "SoC", "Voltage",
})  # fmt: skip
#: 1.6 UnitOfMeasure spellings that 2.0.1's standardized units spell otherwise (1.6 has both
#: "Celsius" and the misspelt "Celcius"; 2.0.1 only the first).
UNITS_201 = {"Celcius": "Celsius"}
#: How much sooner than its TxEndedInterval a sample may come and still be kept: samples are
#: taken at their own interval (TxUpdatedInterval, AlignedDataCtrlr.Interval), give or take ms.
ENDED_SLACK_S = 0.1
#: Units 2.0.1 states where 1.6 left them implied (1.6 Frequency has no unit: Hertz by definition).
IMPLIED_UNITS = {"Frequency": "Hz"}


def id_token(tag: str) -> dict[str, Any]:
    """A tag from the panel, `hilsim ctl` or the web page, as a 2.0.1 IdToken."""
    return {"idToken": tag, "type": ID_TOKEN_TYPE}


def id_tag_info(info: dict[str, Any]) -> dict[str, Any]:
    """A 2.0.1 IdTokenInfo as a 1.6 IdTagInfo (snake_case), for the services and the cache."""
    status = str(info.get("status", "Invalid"))
    out: dict[str, Any] = {"status": status if status in SAME_ID_STATUSES else "Invalid"}
    if info.get("cacheExpiryDateTime"):
        out["expiry_date"] = info["cacheExpiryDateTime"]
    group = info.get("groupIdToken")
    if isinstance(group, dict) and group.get("idToken"):
        out["parent_id_tag"] = group["idToken"]
    return out


def sampled_value_201(value: dict[str, Any]) -> dict[str, Any] | None:
    """A 1.6 SampledValue as 2.0.1's, or None where 2.0.1 cannot say it (a measurand it does not
    have, a value that is not a finite number): leaving one value out beats a refused message."""
    measurand = value.get("measurand")
    if measurand is not None and measurand not in MEASURANDS_201:
        return None
    try:
        number = float(value["value"])
    except (KeyError, TypeError, ValueError):
        return None
    if not math.isfinite(number):
        return None
    out: dict[str, Any] = {"value": number}
    for key in ("context", "measurand", "phase", "location"):
        if value.get(key) is not None:
            out[key] = value[key]
    unit = value.get("unit") or IMPLIED_UNITS.get(str(measurand))
    if unit is not None:
        out["unitOfMeasure"] = {"unit": UNITS_201.get(unit, unit)}
    return out


def meter_value_201(value: dict[str, Any]) -> dict[str, Any]:
    """A 1.6 MeterValue (`hilsim.metering`) as 2.0.1's: numbers, and units as UnitOfMeasure.
    Its sampledValue may come out empty: `meter_values_201` leaves such a value out."""
    sampled = [sv for v in value.get("sampledValue", []) if (sv := sampled_value_201(v))]
    return {"timestamp": value["timestamp"], "sampledValue": sampled}


def meter_values_201(values: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """1.6 MeterValues as 2.0.1's, without those left with nothing to say (2.0.1 wants at least
    one sampledValue in each; an empty list means: no meterValue at all)."""
    return [mv for mv in map(meter_value_201, values) if mv["sampledValue"]]


def register_value(energy_Wh: float, stamp: str, context: str) -> dict[str, Any]:
    """The energy register alone, as a 2.0.1 MeterValue (Transaction.Begin and .End)."""
    return {
        "timestamp": stamp,
        "sampledValue": [
            {
                "value": float(register_Wh(energy_Wh)),
                "context": context,
                "measurand": "Energy.Active.Import.Register",
                "location": "Outlet",
                "unitOfMeasure": {"unit": "Wh"},
            }
        ],
    }


def ended_meter_values(
    kept: list[dict[str, Any]], register_end: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """An Ended's meterValue: what was kept for it (1.6 MeterValues: Transaction.Begin, samples
    of StopTxnSampledData/StopTxnAlignedData, Transaction.End), then the register at the end
    (``register_end``) unless the kept Transaction.End already states it."""
    values = meter_values_201(kept)
    stated = any(
        sv.get("context") == "Transaction.End"
        and sv.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register"
        and "phase" not in sv
        for mv in values
        for sv in mv["sampledValue"]
    )
    return values if stated else [*values, *register_end]


class EndedSampling:
    """Which samples kept for an Ended (TxEndedMeasurands, 1.6's StopTxnSampledData/AlignedData)
    go into it: one per TxEndedInterval of their controller (SampledDataCtrlr for periodic,
    AlignedDataCtrlr for clock-aligned ones), none between Transaction.Begin and .End at 0.

    Samples are only taken at TxUpdatedInterval and AlignedDataCtrlr.Interval: a shorter
    TxEndedInterval gets them that often, not more; the first of a transaction is kept.
    """

    def __init__(self, interval_s: Callable[[str], int | None] = lambda _: None) -> None:
        """``interval_s``: a controller's TxEndedInterval now; None: every sample is kept."""
        self.interval_s = interval_s
        #: (connector, controller) -> (local id, stamp) of the last sample kept
        self._last: dict[tuple[int, str], tuple[int, datetime]] = {}

    def keep(self, connector_id: int, local_id: int, kept: dict[str, Any], stamp: str) -> bool:
        sampled = kept.get("sampledValue") or [{}]
        clock = sampled[0].get("context") == "Sample.Clock"
        controller = "AlignedDataCtrlr" if clock else "SampledDataCtrlr"
        interval = self.interval_s(controller)
        if interval is None:
            return True
        if interval <= 0:
            return False
        try:
            now = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            return True  # our own stamps parse; keeping beats losing a value
        last = self._last.get((connector_id, controller))
        since = None if last is None or last[0] != local_id else (now - last[1]).total_seconds()
        if since is not None and since < interval - ENDED_SLACK_S:
            return False
        self._last[(connector_id, controller)] = (local_id, now)
        return True
