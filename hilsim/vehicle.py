"""The simulated EV behind a connector: its battery's state of charge.

Kept apart from the meter because a real Modbus meter measures energy but knows nothing of the
car; SoC is always simulated.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class SimulatedVehicle:
    """A battery that fills with the energy delivered in the current session."""

    capacity_Wh: float = 60_000.0
    soc_at_plug: float = 30.0
    energy_at_plug_Wh: float = 0.0

    def plugged_in(self, energy_Wh: float, soc: float | None = None) -> None:
        self.energy_at_plug_Wh = energy_Wh
        if soc is not None:
            self.soc_at_plug = soc

    def soc(self, energy_Wh: float) -> float:
        """Percent, rising with delivered energy and capped at 100."""
        delivered = max(0.0, energy_Wh - self.energy_at_plug_Wh)
        return min(100.0, self.soc_at_plug + 100.0 * delivered / self.capacity_Wh)
