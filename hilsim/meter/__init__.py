"""Energy meters: where a connector's energy, power, current and voltage come from.

The metering loop only knows the `MeterSource` interface; which implementation sits behind it
(the synthetic counter, or a Modbus RTU meter on a serial port) is chosen per connector from the
configuration (`hilsim.meter.config`). Nothing here imports pymodbus: `hilsim.meter.modbus` does,
and is imported only when a Modbus meter is configured.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from hilsim.config import Settings

__all__ = [
    "HealthListener",
    "MeterHealth",
    "MeterReading",
    "MeterSource",
    "MeterState",
    "PhaseReading",
    "Problem",
    "SyntheticMeter",
    "meter_tables",
    "register_Wh",
]


def meter_tables(settings: Settings) -> Iterator[tuple[int, Any]]:
    """(position of the [[connector]] table, counting from 1; its [connector.meter] table).

    Cheap on purpose: `hilsim run` asks it before loading the meter settings parser at all.
    """
    for n, table in enumerate(settings.raw.get("connector") or (), 1):
        if isinstance(table, Mapping) and "meter" in table:
            yield n, table["meter"]
