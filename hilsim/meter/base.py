"""The meter source contract.

A source must:
- return readings whose ``energy_Wh`` (and per-phase energies) never decrease, because the CSMS
  bills on them: a counter reset or a swapped meter is absorbed by the source (see `continuity`);
- accept ``offer(power_W)``: the power the charger currently lets flow. A synthetic meter turns
  it into energy; a real meter ignores it because it measures what actually flows;
- be cheap to ``read()``: the metering loop reads it once per sample, so a polled meter answers
  from its last good poll rather than from the wire;
- tell its ``health`` and call each of ``health_listeners`` once per change of state or problem
  (never once per poll), so the charger can fault the connector and light the LEDs;
- be started with ``await start()`` and stopped with ``await close()``; neither raises because
  the meter is missing or silent: that is a health state, not an error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


@dataclass(frozen=True, slots=True)
class PhaseReading:
    """One phase of a three-phase meter; None where the meter has no such register."""

    phase: str  # "L1", "L2", "L3"
    energy_Wh: float | None = None
    power_W: float | None = None
    current_A: float | None = None
    voltage_V: float | None = None  # line to neutral


@dataclass(frozen=True, slots=True)
class MeterReading:
    """Totals (None where the meter does not report one), per-phase values, and when."""

    energy_Wh: float
    power_W: float | None
    current_A: float | None  # a three-phase meter's average line current
    voltage_V: float | None  # a three-phase meter's average line-to-neutral voltage
    phases: tuple[PhaseReading, ...] = ()
    frequency_Hz: float | None = None
    taken_at: float | None = None  # monotonic time of the poll; None for a synthetic meter
    #: Measured by a real meter. A synthetic reading's voltage is the configured one and its
    #: current is derived, so only energy, power and current of it go into MeterValues.
    measured: bool = False


class MeterState(StrEnum):
    STARTING = "starting"  # not answered yet since start
    OK = "ok"  # the last poll was answered sensibly
    RETRYING = "retrying"  # failing, retried with backoff, not yet for fault_after_s
    FAILED = "failed"  # failing for at least fault_after_s: the connector is Faulted


class Problem(StrEnum):
    """Why a meter is not OK, in the words a person at the bench needs."""

    NO_ANSWER = "no answer"
    GARBLED = "garbled answer"
    REFUSED = "exception response"
    IMPLAUSIBLE = "implausible values"
    PORT_MISSING = "serial port missing"
    PORT_ERROR = "serial port error"


@dataclass(frozen=True, slots=True)
class MeterHealth:
    """Whether a meter answers, and if not, what is wrong with it since when."""

    state: MeterState
    problem: Problem | None = None
    detail: str = ""  # changes freely (counts, bytes); not a state change
    since: float = 0.0  # monotonic time this state (and problem) began

    @property
    def ok(self) -> bool:
        return self.state == MeterState.OK

    def describe(self) -> str:
        if self.problem is None:
            return str(self.state)
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.state} ({self.problem}{detail})"


HealthListener = Callable[[MeterHealth], None]


class MeterSource(Protocol):
    #: Called with the new health on each change of state or problem.
    health_listeners: list[HealthListener]

    @property
    def description(self) -> str:
        """What and where, for logs and `ctl status`: 'sdm630 at /dev/ttyUSB0 (9600 8N1, unit 1)'"""

    @property
    def health(self) -> MeterHealth: ...

    async def start(self) -> None:
        """Begin measuring (a polled meter tries its first poll before returning)."""

    async def close(self) -> None:
        """Stop measuring and release the port."""

    def offer(self, power_W: float, now: float) -> None:
        """The power the charger lets flow from ``now`` on."""

    def read(self, now: float) -> MeterReading:
        """The meter's state at ``now`` (monotonic seconds), or its last good reading."""


def register_Wh(energy_Wh: float) -> int:
    """The energy register as reported to the CSMS: whole Wh, rounded down.

    meterStart and meterStop are integers in OCPP 1.6. Rounding down everywhere (samples too)
    keeps the reported register monotonic: a sample can never show more than the meterStop that
    follows it, which rounding to nearest allowed by up to half a watt-hour.
    """
    return math.floor(energy_Wh)
