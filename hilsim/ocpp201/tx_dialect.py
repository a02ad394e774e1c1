"""How the outbox's 2.0.1 dialect (`hilsim.ocpp201.transaction_events`) is put on a charger:
what it reads of the charger, the device model and the metering service, and when.

The device model and the metering service are built after the outbox, so each is read when an
event comes, never at build time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from hilsim.clock import Clock
from hilsim.connectors import ConnectorRuntime
from hilsim.evse import Outcome, events
from hilsim.ocpp.session import CsmsLink
from hilsim.ocpp201.transaction_events import TransactionEvents
from hilsim.ocpp201.tx_tracker import TxPoints, points_from
from hilsim.ocpp201.tx_wire import EndedSampling
from hilsim.store import Store
from hilsim.tasks import TaskSet
from hilsim.transaction_messages import OutboxPort

REGISTER = "Energy.Active.Import.Register"


class DeviceVariables(Protocol):
    """The device model (`hilsim.device_model.DeviceModel`), as TxCtrlr is read from it."""

    def text(self, component: str, name: str) -> str:
        """The Actual value of a charge-point-wide variable; KeyError if it has none."""
        ...


class MeterValues(Protocol):
    """The metering service (`hilsim.metering.Metering`), as a Started reads it."""

    def meter_value(
        self, connector_id: int, context: str, *, listed: Sequence[str] | None = None
    ) -> dict[str, Any]: ...


class EventSource(Protocol):
    """What the dialect observes of the charge point (`hilsim.charger.Charger`)."""

    @property
    def device_model(self) -> DeviceVariables | None: ...

    @property
    def metering(self) -> MeterValues: ...
    @property
    def connectors(self) -> Mapping[int, ConnectorRuntime]: ...
    @property
    def wall(self) -> Clock: ...
    @property
    def event_listeners(self) -> list[Callable[[int, events.Event, Outcome], None]]: ...

    def clock(self) -> float: ...


def dialect_for(
    charger: EventSource,
    store: Store,
    link: CsmsLink,
    tasks: TaskSet,
) -> Callable[[OutboxPort], TransactionEvents]:
    """The outbox's 2.0.1 dialect for this charger (`hilsim.wiring`, in 2.0.1 mode): it follows
    every connector's machine, and TxStartPoint/TxStopPoint as the device model has them now."""

    def energy_Wh(connector_id: int) -> float:
        return charger.connectors[connector_id].meter.read(charger.clock()).energy_Wh

    def text(component: str, name: str) -> str | None:
        model = charger.device_model  # built after the outbox: read when an event comes
        if model is None:
            return None
        try:
            return model.text(component, name)
        except KeyError:
            return None

    def points() -> TxPoints:
        return points_from(text)

    def begun(evse_id: int) -> list[dict[str, Any]]:
        """SampledDataCtrlr.TxStartedMeasurands now, but the register (it comes from the
        start's own reading, meterStart): 1.6 sampled values, context Transaction.Begin."""
        listed = text("SampledDataCtrlr", "TxStartedMeasurands") or ""
        others = [m for m in map(str.strip, listed.split(",")) if m and m != REGISTER]
        if not others:
            return []
        value = charger.metering.meter_value(evse_id, "Transaction.Begin", listed=others)
        return list(value["sampledValue"])

    def ended_interval(controller: str) -> int | None:
        """SampledDataCtrlr's or AlignedDataCtrlr's TxEndedInterval (s) now."""
        value = text(controller, "TxEndedInterval")
        return None if value is None or not value.strip().isdigit() else int(value)

    def limit_significance() -> float:
        value = text("SmartChargingCtrlr", "LimitChangeSignificance")
        return 0.1 if value is None else float(value)  # the device model checked it: 0..1

    def build(outbox: OutboxPort) -> TransactionEvents:
        dialect = TransactionEvents(
            outbox, store, link, charger.wall, tasks,
            energy_Wh=energy_Wh, points=points, begun=begun,
            ended_sampling=EndedSampling(ended_interval), limit_significance=limit_significance,
        )  # fmt: skip
        charger.event_listeners.append(dialect.on_event)
        return dialect

    return build
