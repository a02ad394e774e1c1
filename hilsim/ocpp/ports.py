"""What the OCPP handlers need from the charge point's services, as small Protocols.

The handlers translate; the services decide. Typing each handler mixin against the few methods
it calls (instead of importing the service classes) keeps `hilsim.ocpp` free of imports of the
services, which import the link in turn: the dependency runs one way, services -> ocpp.

A method that sets something in motion returns its status together with a `Release`: the
effects to carry out once the CALLRESULT is on the wire (see `hilsim.ocpp.routing.Reply`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

#: Effects held back until the answer that caused them is on the wire.
Release = Callable[[], None]


def nothing() -> None:
    """The release of an answer that sets nothing in motion."""
    return None


class ConfigurationEntry(NamedTuple):
    """One key of a GetConfiguration answer. A tuple: dozens are made for every request."""

    key: str
    readonly: bool
    value: str | None  # None: a write-only key, listed without its value


class TriggerSender(Protocol):
    """What a triggered message is sent through: the OCPP client of the current connection."""

    async def boot_notification(self, identity: Any) -> Any: ...
    async def heartbeat(self) -> str: ...
    async def status_notification(
        self, connector_id: int, status: str, error_code: str, timestamp: str
    ) -> None: ...
    async def meter_values(
        self, connector_id: int, transaction_id: int | None, meter_value: list[dict[str, Any]]
    ) -> None: ...
    async def diagnostics_status_notification(self, status: str) -> None: ...
    async def firmware_status_notification(self, status: str) -> None: ...


class AvailabilityPort(Protocol):
    """ChangeAvailability and Reset (`hilsim.availability`)."""

    async def change_availability(
        self, connector_id: int, operative: bool
    ) -> tuple[str, Release]: ...
    def reset(self, reset_type: str) -> tuple[str, Release]: ...


class OperationsPort(Protocol):
    """The rest of Core, LocalAuthListManagement, Reservation and RemoteTrigger
    (`hilsim.operations`)."""

    def unlock_connector(self, connector_id: int) -> tuple[str, Release]: ...
    async def clear_cache(self) -> str: ...
    def data_transfer(
        self, vendor_id: str, message_id: str | None, data: str | None
    ) -> tuple[str, str | None]: ...
    async def send_local_list(
        self,
        list_version: int,
        update_type: str,
        local_authorization_list: Sequence[Mapping[str, Any]] | None,
    ) -> str: ...
    def get_local_list_version(self) -> int: ...
    async def reserve_now(
        self,
        connector_id: int,
        expiry_date: str,
        id_tag: str,
        reservation_id: int,
        parent_id_tag: str | None = None,
    ) -> tuple[str, Release]: ...
    async def cancel_reservation(self, reservation_id: int) -> tuple[str, Release]: ...
    def trigger_message(
        self, requested_message: str, connector_id: int | None, sender: TriggerSender
    ) -> tuple[str, Release]: ...


class FirmwarePort(Protocol):
    """UpdateFirmware and GetDiagnostics (`hilsim.firmware`)."""

    def update(
        self, location: str, retrieve_date: str, retries: int | None, retry_interval: int | None
    ) -> None: ...
    def diagnostics(
        self,
        location: str,
        retries: int | None,
        retry_interval: int | None,
        start_time: str | None,
        stop_time: str | None,
    ) -> str: ...


class SmartChargingPort(Protocol):
    """SetChargingProfile, ClearChargingProfile, GetCompositeSchedule (`charging_limits`)."""

    async def set(self, connector_id: int, data: Mapping[str, Any]) -> str: ...
    async def clear(
        self,
        profile_id: int | None,
        connector_id: int | None,
        purpose: str | None,
        stack_level: int | None,
    ) -> str: ...
    def composite(self, connector_id: int, duration: int, unit: str | None) -> dict[str, Any]: ...


class ConfigurationPort(Protocol):
    """GetConfiguration and ChangeConfiguration (`hilsim.configuration`)."""

    def get_configuration(
        self, keys: Sequence[str] | None
    ) -> tuple[list[ConfigurationEntry], list[str]]: ...

    async def change_configuration(self, key: str, value: str) -> str: ...


class ChargerPort(Protocol):
    """What the OCPP handlers need from the charge point. Each returns the OCPP status string."""

    @property
    def configuration(self) -> ConfigurationPort: ...

    def remote_start(
        self, id_tag: str, connector_id: int | None, profile: dict[str, Any] | None
    ) -> tuple[str, Release]: ...

    def remote_stop(self, transaction_id: int) -> tuple[str, Release]: ...

    @property
    def availability(self) -> AvailabilityPort: ...

    @property
    def operations(self) -> OperationsPort | None: ...

    @property
    def firmware(self) -> FirmwarePort | None: ...

    @property
    def smart_charging(self) -> SmartChargingPort: ...


#: Sends the message a TriggerMessage asked for, once its answer is on the wire.
Trigger = Callable[[TriggerSender], Awaitable[None]]
