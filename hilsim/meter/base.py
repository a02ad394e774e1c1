"""The meter source contract.

A source must:
- return readings whose ``energy_Wh`` never decreases (the CSMS bills on it);
- accept ``offer(power_W)``: the power the charger currently lets flow. A synthetic meter turns
  it into energy; a real meter may ignore it because it measures what actually flows;
- be cheap to ``read()``: the metering loop reads it once per sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class MeterReading:
    energy_Wh: float
    power_W: float
    current_A: float
    voltage_V: float


class MeterSource(Protocol):
    def offer(self, power_W: float, now: float) -> None:
        """The power the charger lets flow from ``now`` on."""

    def read(self, now: float) -> MeterReading:
        """The meter's state at ``now`` (monotonic seconds)."""
