"""Energy meters: where a connector's energy, power, current and voltage come from.

The metering loop only knows the `MeterSource` interface; which implementation sits behind it
(synthetic now, Modbus later) is chosen per connector from the configuration.
"""

from hilsim.meter.base import MeterReading, MeterSource
from hilsim.meter.synthetic import SyntheticMeter

__all__ = ["MeterReading", "MeterSource", "SyntheticMeter"]
