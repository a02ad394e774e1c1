"""Which measurands a MeterValue carries: what the CSMS configured, out of what hilsim can measure.

MeterValuesSampledData (and MeterValuesAlignedData) name the measurands a CSMS wants; a charger
sends those it has, in the order it measures them. Power.Offered and Current.Offered are what the
charger offers the EV (the connector's maximum, lowered by smart charging), not a meter reading.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hilsim.keys import ConfigurationKeys


def wanted(keys: ConfigurationKeys, key: str = "MeterValuesSampledData") -> tuple[str, ...]:
    """The measurands a list key (MeterValuesSampledData, StopTxnSampledData, ...) names."""
    spec = keys.spec(key)
    return spec.items(keys.get(key)) if spec is not None else ()


def choose(
    sampled: Iterable[dict[str, str]],
    wanted: Sequence[str],
    *,
    offered_W: float | None = None,
    voltage_V: float | None = None,
    phases: int = 1,
    context: str | None = None,
) -> list[dict[str, str]]:
    """The sampled values whose measurand is wanted, plus the offered ones when asked for.

    Current.Offered is per phase, like the limits it comes from: W / (V x ``phases``).
    ``context`` replaces each value's context (e.g. "Trigger", "Sample.Clock").
    """
    chosen = [dict(value) for value in sampled if value.get("measurand") in wanted]
    if offered_W is not None:
        if "Power.Offered" in wanted:
            chosen.append(_offered(f"{offered_W:.1f}", "Power.Offered", "W"))
        if "Current.Offered" in wanted and voltage_V:
            per_phase = offered_W / (voltage_V * phases)
            chosen.append(_offered(f"{per_phase:.2f}", "Current.Offered", "A"))
    if context is not None:
        for value in chosen:
            value["context"] = context
    return chosen


def _offered(value: str, measurand: str, unit: str) -> dict[str, str]:
    return {
        "value": value,
        "context": "Sample.Periodic",
        "measurand": measurand,
        "location": "Outlet",
        "unit": unit,
    }
