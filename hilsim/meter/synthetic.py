"""The synthetic energy counter: integrates the offered power over time.

It is a product feature, not a test double: on a bench without a real meter it makes MeterValues
look like a charger's, with energy that only rises while power flows.
"""

from __future__ import annotations

from hilsim.meter.base import (
    HealthListener,
    MeterHealth,
    MeterReading,
    MeterState,
    PhaseReading,
)

_PHASES = ("L1", "L2", "L3")


class SyntheticMeter:
    """Energy is integrated lazily at each offer/read, so it costs nothing between samples."""

    description = "synthetic"

    def __init__(self, voltage_V: float, energy_Wh: float = 0.0, phases: int = 1) -> None:
        self.voltage_V = voltage_V
        #: Phases the power is shared over, evenly (a balanced load, as an EV's on-board
        #: charger draws): the current is per phase, and each phase is reported beside the
        #: totals, as a three-phase meter reports them.
        self.phases = phases
        self.health_listeners: list[HealthListener] = []
        self._energy_Wh = energy_Wh
        self._power_W = 0.0
        self._since: float | None = None

    @property
    def health(self) -> MeterHealth:
        return MeterHealth(MeterState.OK)

    async def start(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        """Nothing to release."""

    def _integrate(self, now: float) -> None:
        if self._since is not None and now > self._since:
            self._energy_Wh += self._power_W * (now - self._since) / 3600.0
        if self._since is None or now > self._since:
            self._since = now

    def offer(self, power_W: float, now: float) -> None:
        self._integrate(now)
        self._power_W = max(0.0, power_W)

    def read(self, now: float) -> MeterReading:
        self._integrate(now)
        power = self._power_W
        current = power / (self.voltage_V * self.phases) if self.voltage_V > 0 else 0.0
        if self.phases == 1:
            return MeterReading(self._energy_Wh, power, current, self.voltage_V)
        share = power / self.phases
        each = tuple(
            PhaseReading(name, power_W=share, current_A=current)
            for name in _PHASES[: self.phases]
        )
        return MeterReading(self._energy_Wh, power, current, self.voltage_V, each)
