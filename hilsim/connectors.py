"""One connector's runtime: its pure machine and the things around it that do IO.

In a module of its own so that every service that works on connectors (metering, transactions,
reservations, smart charging, operations) names the same type without importing the charger
that holds them: those services get what they need of the charger (``dispatch``, the clock)
as callables and small Protocols at construction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from hilsim.config import ConnectorSettings
from hilsim.evse import Connector, ErrorCode, Outcome, Status, events
from hilsim.meter import MeterSource
from hilsim.vehicle import SimulatedVehicle

if TYPE_CHECKING:
    from hilsim.clock import Clock
    from hilsim.keys import ConfigurationKeys

log = logging.getLogger(__name__)

#: Feed one event to a connector's machine and carry out its effects (`Charger.dispatch`).
Dispatch = Callable[[int, events.Event], Outcome]


@dataclass(slots=True)
class ConnectorRuntime:
    """One connector's machine and the things around it that do IO."""

    settings: ConnectorSettings
    machine: Connector
    meter: MeterSource
    vehicle: SimulatedVehicle = field(default_factory=SimulatedVehicle)
    voltage_V: float = 230.0
    limit_W: float | None = None  # from SetChargingProfile; None = only max_power_W applies
    metering: asyncio.Future[Any] | None = None
    deadline: asyncio.TimerHandle | None = None
    last_sample: dict[str, float] = field(default_factory=dict)
    #: MinimumStatusDuration: the StatusNotification waiting for its status to hold
    status_report: asyncio.TimerHandle | None = None
    #: the status and error code the CSMS last heard in a StatusNotification
    reported: tuple[Status, ErrorCode] | None = None

    @property
    def id(self) -> int:
        return self.settings.id

    @property
    def phases(self) -> int:
        return self.settings.phases

    @property
    def ocpp_status(self) -> tuple[Status, ErrorCode]:
        """What a StatusNotification states now: the status and its errorCode (NoError)."""
        state = self.machine.state
        return state.status, state.error_code or ErrorCode.NO_ERROR

    def offered_power_W(self) -> float:
        """What flows while Charging: the smaller of the hardware's maximum and the CSMS limit."""
        if self.machine.status != Status.CHARGING:
            return 0.0
        cap = float(self.settings.max_power_W)
        return cap if self.limit_W is None else max(0.0, min(cap, self.limit_W))


class ConnectorDispatcher(Protocol):
    """The connectors and the one way to change them (`Charger`): what reservations and the
    CSMS's operations work on, without importing the charger that owns them."""

    @property
    def connectors(self) -> Mapping[int, ConnectorRuntime]: ...
    @property
    def keys(self) -> ConfigurationKeys: ...
    @property
    def wall(self) -> Clock: ...
    @property
    def status_listeners(self) -> list[Callable[[int, Status, ErrorCode], None]]: ...
    @property
    def event_listeners(self) -> list[Callable[[int, events.Event, Outcome], None]]: ...
    def clock(self) -> float: ...
    def dispatch(self, connector_id: int, event: events.Event, *, hold: bool = False) -> Outcome:
        """Feed one event to a connector's machine; ``hold``: keep its effects back (`held`)."""
        ...

    def held(self, connector_id: int, outcome: Outcome) -> Callable[[], None]: ...
