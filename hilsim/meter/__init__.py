"""Energy meters: where a connector's energy, power, current and voltage come from.

The metering loop only knows the `MeterSource` interface; which implementation sits behind it
(the synthetic counter, or a Modbus RTU meter on a serial port) is chosen per connector from the
configuration (`hilsim.meter.config`). Nothing here imports pymodbus: `hilsim.meter.modbus` does,
and is imported only when a Modbus meter is configured.
"""

from hilsim.meter.base import (
    HealthListener,
    MeterHealth,
    MeterReading,
    MeterSource,
    MeterState,
    PhaseReading,
    Problem,
    register_Wh,
)
from hilsim.meter.synthetic import SyntheticMeter

__all__ = [
    "HealthListener",
    "MeterHealth",
    "MeterReading",
    "MeterSource",
    "MeterState",
    "PhaseReading",
    "Problem",
    "SyntheticMeter",
    "register_Wh",
]
