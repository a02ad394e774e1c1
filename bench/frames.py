"""Payloads the benchmarks send, built the same way for hilsim and for the bare baseline.

Standard library only: the bare baseline imports it, and must not pay for hilsim's imports.
"""

from __future__ import annotations

from typing import Any


def _sampled(
    value: float, measurand: str, unit: str, location: str, digits: int = 1
) -> dict[str, str]:
    return {
        "value": f"{value:.{digits}f}",
        "context": "Sample.Periodic",
        "measurand": measurand,
        "location": location,
        "unit": unit,
    }


def meter_value(
    timestamp: str, energy_Wh: float, power_W: float, current_A: float, soc: float
) -> list[dict[str, Any]]:
    """One MeterValues sample with the four measurands hilsim's metering loop sends."""
    return [
        {
            "timestamp": timestamp,
            "sampledValue": [
                _sampled(energy_Wh, "Energy.Active.Import.Register", "Wh", "Outlet"),
                _sampled(power_W, "Power.Active.Import", "W", "Outlet"),
                _sampled(current_A, "Current.Import", "A", "Outlet"),
                _sampled(soc, "SoC", "Percent", "EV", digits=2),
            ],
        }
    ]
