"""Building the charge point's OCPP 2.0.1 device model, in 2.0.1 mode only.

Its catalogue comes from the settings (identity, one EVSE per connector); its live values from
the charger, read when asked through small callables, so `hilsim.device_model` imports neither
the charger nor this layer: a connector's AvailabilityState is its 1.6 status mapped to 2.0.1
(the design constants' table), the clock is the charger's wall clock (the one that stamps
every message), Entries are the local list's and the installed profiles' counts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sized
from typing import Any, Protocol

from hilsim.config import Settings
from hilsim.device_model import (
    Component,
    DeviceModel,
    LiveSource,
    Variable,
    build_catalogue,
    station_info,
)
from hilsim.device_model.service import ConfigurationPort, VariableStore
from hilsim.ocpp201.client import CONNECTOR_STATUS
from hilsim.store import VariableAddress

log = logging.getLogger(__name__)

class StatusSource(Protocol):
    """A connector as the device model reads it (`hilsim.connectors.ConnectorRuntime`)."""

    @property
    def ocpp_status(self) -> tuple[Any, Any]: ...

    def offered_power_W(self) -> float: ...


class Wall(Protocol):
    def iso(self) -> str: ...


class ModelledCharger(Protocol):
    """What the device model reads of the charger."""

    @property
    def connectors(self) -> Mapping[int, StatusSource]: ...

    @property
    def wall(self) -> Wall: ...


def availability_state(charger: ModelledCharger, component: Component) -> str | None:
    """A connector's or EVSE's 2.0.1 state; the station's: Unavailable when every EVSE is,
    Faulted when every one is, else Available."""
    if component.evse is not None:
        runtime = charger.connectors.get(component.evse)
        if runtime is None:
            return None
        return CONNECTOR_STATUS.get(str(runtime.ocpp_status[0]))
    states = {
        CONNECTOR_STATUS.get(str(rt.ocpp_status[0]), "Available")
        for rt in charger.connectors.values()
    }
    if len(states) == 1 and states <= {"Unavailable", "Faulted"}:
        return states.pop()
    return "Available"


def live_sources(
    charger: ModelledCharger,
    local_list: Sized | None = None,
    profiles: Callable[[], int] | None = None,
) -> dict[str, LiveSource]:
    """The device model's live values, read from the charger when asked."""

    def power(component: Component) -> str | None:
        runtime = None if component.evse is None else charger.connectors.get(component.evse)
        return None if runtime is None else f"{runtime.offered_power_W():g}"

    def date_time(component: Component) -> str:
        return charger.wall.iso()

    sources: dict[str, LiveSource] = {
        "availability_state": lambda component: availability_state(charger, component),
        "power": power,
        "date_time": date_time,
    }
    if local_list is not None:
        sources["local_list_entries"] = lambda component: str(len(local_list))
    if profiles is not None:
        sources["charging_profiles"] = lambda component: str(profiles())
    return sources


def build_device_model(
    settings: Settings,
    configuration: ConfigurationPort,
    store: VariableStore,
    stored: Mapping[VariableAddress, str],
    charger: ModelledCharger,
    *,
    local_list: Sized | None = None,
    profiles: Callable[[], int] | None = None,
) -> DeviceModel:
    """The device model of this charge point over its ``stored`` values (read beforehand:
    the charger builds its services synchronously).

    A connector's status change is NOT announced as an AvailabilityState NotifyEvent: the
    StatusNotification the client sends already says it (and a Faulted one its Problem event),
    and a second message per status change would double the traffic a bench CSMS sees.
    `DeviceModel.live_changed` is there for a live variable without a message of its own."""
    return DeviceModel(
        catalogue_for(settings), configuration, store, stored,
        live_sources(charger, local_list, profiles),
    )  # fmt: skip


def catalogue_for(settings: Settings) -> tuple[Variable, ...]:
    """The components and variables of the charge point the settings describe: the running
    one's, and `hilsim config` reads them with no charger running."""
    cp = settings.charge_point
    evses = [(c.id, c.phases, float(c.max_power_W)) for c in settings.connectors]
    return build_catalogue(station_info(cp.id, cp.vendor, cp.model, evses))
