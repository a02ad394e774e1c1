"""The composition of a charge point: every service built once, in dependency order.

Nothing is set on a service after it is built: a service gets what it needs at construction,
as an object built before it, a callable, or a small Protocol that the charger satisfies
(`hilsim.connectors.ConnectorDispatcher`, `hilsim.operations.OperationsHost`, ...). The one
loop that remains (the link calls the charger for incoming CALLs, the charger's services call
the link for outgoing ones) is broken by giving the link its owner when it runs
(`CsmsLink.run(owner)`), not when it is built.

Order: security (profile, Basic auth, TLS) -> link -> charger, which builds its connectors and
then calls back here for its services (`ChargerServices`), each built from those before it:
configuration, smart charging, outbox, authorization with the local list, metering, availability
(ChangeAvailability, Reset), operations (unlock, local list, reservations, triggers),
transactions, and last firmware/diagnostics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from hilsim.authorization import Authorizer
from hilsim.availability import Availability
from hilsim.charger import Charger, ChargerServices
from hilsim.charging_limits import ChargingLimits
from hilsim.config import Settings
from hilsim.configuration import Configuration
from hilsim.diagnostics_archive import installation_summary
from hilsim.firmware import Firmware, LogRing, installed_firmware
from hilsim.keys import ConfigurationKeys
from hilsim.local_list import LocalAuthList
from hilsim.meter import MeterSource
from hilsim.metering import Metering
from hilsim.ocpp.client import Identity
from hilsim.ocpp.session import CsmsLink, LinkState
from hilsim.ocpp.transport import Backoff
from hilsim.ocpp.wire import FrameListener
from hilsim.operations import Operations
from hilsim.outbox import Outbox
from hilsim.security import ConnectionSecurity, key_file_for, security_settings
from hilsim.store import Store
from hilsim.tasks import TaskSet
from hilsim.transaction_messages import TransactionMessages
from hilsim.transactions import Transactions

if TYPE_CHECKING:
    from hilsim.device_model import DeviceModel

log = logging.getLogger(__name__)


def identity_of(settings: Settings) -> Identity:
    """What BootNotification says, as configured (UpdateFirmware may change the version)."""
    cp = settings.charge_point
    return Identity(
        vendor=cp.vendor,
        model=cp.model,
        firmware_version=cp.firmware_version,
        serial_number=cp.serial_number,
        charge_box_serial_number=cp.charge_box_serial_number,
        meter_serial_number=cp.meter_serial_number,
        meter_type=cp.meter_type,
    )


def protocol_options(ocpp_version: str) -> dict[str, Any]:
    """The link's client factory, subprotocol and schemas for ``ocpp_version``: none for 1.6
    (the link's defaults). The 2.0.1 package is imported here, only in 2.0.1 mode, so a 1.6
    charge point never pays for loading it."""
    if ocpp_version != "2.0.1":
        return {}
    from hilsim.ocpp201.client import link_options

    return link_options()


def transaction_dialect(
    ocpp_version: str, charger: Charger, store: Store, link: CsmsLink, tasks: TaskSet
) -> Callable[[Outbox], TransactionMessages] | None:
    """What the outbox's rows say: None for 1.6 (its default); OCPP 2.0.1's TransactionEvents,
    imported here only in 2.0.1 mode."""
    if ocpp_version != "2.0.1":
        return None
    from hilsim.ocpp201.tx_dialect import dialect_for

    return dialect_for(charger, store, link, tasks)


@dataclass(frozen=True, slots=True)
class ChargePoint:
    """The built charge point: run ``link.run(charger)`` and ``charger.outbox.run()``."""

    security: ConnectionSecurity
    link: CsmsLink
    charger: Charger
    firmware: Firmware


async def build_charge_point(
    settings: Settings,
    store: Store,
    keys: ConfigurationKeys,
    *,
    meters: Mapping[int, MeterSource],
    registers: Mapping[int, float],
    voltage_overridden: bool,
    restart: Callable[[str], None],
    log_ring: LogRing | None,
    backoff: Backoff | None = None,
    frame_listeners: list[FrameListener] | None = None,
    response_timeout: float = 30.0,
) -> ChargePoint:
    """Everything `hilsim run` serves, from its settings and its open database.

    ``restart``: ends the service and starts the program afresh (Reset Hard, and a firmware
    update taking effect), given the reason the new run's 2.0.1 BootNotification states.
    """
    cp = settings.charge_point
    # Security profile 0-3: scheme, Basic auth, TLS, and the AuthorizationKey's file.
    security = ConnectionSecurity(
        security_settings(settings), keys, store, cp.id, key_file_for(settings)
    )
    # BootNotification states the version an earlier UpdateFirmware installed.
    installed = await installed_firmware(store, cp.firmware_version)
    identity = identity_of(settings)
    if installed is not None and installed[0]:
        identity = replace(identity, firmware_version=installed[0])
    link = CsmsLink(
        cp.endpoint,
        cp.id,
        identity,
        keys,
        backoff=backoff,
        frame_listeners=frame_listeners,
        response_timeout=response_timeout,
        security=security,
        **protocol_options(cp.ocpp_version),
    )

    tasks = TaskSet("charger")  # the charger's background tasks, shared with its services
    # The 2.0.1 device model's stored values, read now: the services are built synchronously.
    variables = await store.variables.load_variables() if cp.ocpp_version == "2.0.1" else None

    def services(charger: Charger) -> ChargerServices:
        # Each from those before it, on the charger's connectors and its one dispatch.
        configuration = Configuration(keys, store, tasks)
        smart_charging = ChargingLimits(charger)
        dialect = transaction_dialect(cp.ocpp_version, charger, store, link, tasks)
        outbox = Outbox(store, link, keys, dialect)
        local_list = LocalAuthList(store, keys)
        authorizer = Authorizer(store, keys, link, charger.wall, local_list)
        # StopTransaction's IdTagInfo feeds the authorization cache too.
        outbox.id_tag_info_listeners.append(
            lambda id_tag, info: tasks.spawn(authorizer.remember(id_tag, info), "cache-id-tag")
        )
        metering = Metering(
            charger.connectors, keys, link, outbox,
            clock=charger.clock, wall=charger.wall, dispatch=charger.dispatch, tasks=tasks,
        )  # fmt: skip
        availability = Availability(charger, link, hard_reset=lambda: restart("RemoteReset"))
        operations = Operations(charger, link, authorizer, local_list, metering, availability)
        transactions = Transactions(
            charger.connectors, link, outbox, metering,
            clock=charger.clock, wall=charger.wall, dispatch=charger.dispatch,
            claim_reservation=operations.reservations.claim,
            remember=authorizer.remember, tasks=tasks,
        )  # fmt: skip
        # FirmwareManagement: the installed version, updates, and diagnostics archives of the
        # recent log lines and the database. Last: it works on the whole charger.
        firmware = Firmware(
            charger, store, link,
            configured_version=cp.firmware_version,
            state_dir=settings.storage.database.parent,
            log_ring=log_ring,
            ca_file=security.settings.ca_file,
            installation=installation_summary(settings),
            installed=installed,
            restart=lambda: restart("FirmwareUpdate"),
        )  # fmt: skip
        device_model = None
        if variables is not None:
            device_model = _device_model(
                settings, configuration, store, variables, charger, link,
                local_list=local_list, profiles=lambda: len(smart_charging.profiles.profiles),
            )  # fmt: skip
            text = device_model.text
            metering.aligned_during_transactions = (
                lambda: text("AlignedDataCtrlr", "SendDuringIdle").lower() != "true"
            )
            authorizer.cache_lifetime_s = lambda: float(text("AuthCacheCtrlr", "LifeTime"))
        return ChargerServices(
            configuration, smart_charging, outbox, authorizer, metering,
            availability, operations, transactions, firmware, device_model,
        )  # fmt: skip

    charger = Charger(
        settings.connectors,
        keys,
        store,
        link,
        voltage_overridden=voltage_overridden,
        registers=registers,
        meters=meters,
        services=services,
        tasks=tasks,
    )
    assert charger.firmware is not None
    return ChargePoint(security, link, charger, charger.firmware)


def _device_model(
    settings: Settings,
    configuration: Configuration,
    store: Store,
    stored: Mapping[Any, str],
    charger: Charger,
    link: CsmsLink,
    **live: Any,
) -> DeviceModel:
    """OCPP 2.0.1's device model on the charger's configuration, connectors and clock, its
    changes not made by SetVariables sent as NotifyEvent. Imported here, in 2.0.1 mode only."""
    from hilsim.ocpp201.device_model_handlers import forward_changes
    from hilsim.ocpp201.device_model_setup import build_device_model

    model = build_device_model(settings, configuration, store.variables, stored, charger, **live)
    forward_changes(
        model,
        lambda job, name: link.submit(job, name, quiet=True),
        charger.wall.iso,
        lambda: link.state == LinkState.CONNECTED,
    )
    return model
