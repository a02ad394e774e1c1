"""What a 2.0.1 TransactionEvent says, field by field, from what the 1.6 services hand over.

The services speak 1.6 shapes (a tag string, a snake_case IdTagInfo, MeterValues with values as
text and units as "unit"); the outbox's 2.0.1 dialect (`hilsim.ocpp201.transaction_events`)
writes 2.0.1's with these. Pure functions, no IO.
"""

from __future__ import annotations

from typing import Any

from hilsim.meter import register_Wh

#: idTokenInfo.status -> the 1.6 IdTagInfo status the services understand
_STATUS_16 = {"Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"}


def id_token(tag: str) -> dict[str, Any]:
    """A tag from the panel, `hilsim ctl` or the web page, as a 2.0.1 IdToken."""
    return {"idToken": tag, "type": "ISO14443"}


def id_tag_info(info: dict[str, Any]) -> dict[str, Any]:
    """A 2.0.1 IdTokenInfo as a 1.6 IdTagInfo (snake_case), for the services and the cache."""
    status = str(info.get("status", "Invalid"))
    out: dict[str, Any] = {"status": status if status in _STATUS_16 else "Invalid"}
    if info.get("cacheExpiryDateTime"):
        out["expiry_date"] = info["cacheExpiryDateTime"]
    group = info.get("groupIdToken")
    if isinstance(group, dict) and group.get("idToken"):
        out["parent_id_tag"] = group["idToken"]
    return out


def meter_value_201(value: dict[str, Any]) -> dict[str, Any]:
    """A 1.6 MeterValue (`hilsim.metering`) as 2.0.1's: numbers, and units as UnitOfMeasure."""
    sampled = []
    for sv in value.get("sampledValue", []):
        out: dict[str, Any] = {"value": float(sv["value"])}
        for key in ("context", "measurand", "phase", "location"):
            if key in sv:
                out[key] = sv[key]
        unit = sv.get("unit") or ("Hz" if sv.get("measurand") == "Frequency" else None)
        if unit is not None:
            out["unitOfMeasure"] = {"unit": unit}
        sampled.append(out)
    return {"timestamp": value["timestamp"], "sampledValue": sampled}


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
    values = [meter_value_201(mv) for mv in kept]
    stated = any(
        sv.get("context") == "Transaction.End"
        and sv.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register"
        and "phase" not in sv
        for mv in values
        for sv in mv["sampledValue"]
    )
    return values if stated else [*values, *register_end]
