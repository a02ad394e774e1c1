"""The components and variables this charge point has, for OCPP 2.0.1's device model.

At least what the Core, Local Authorization, Smart Charging and Security functional blocks need
(OCPP 2.0.1 Part 2, appendix 3 "Standardized components and variables"), one EVSE per hilsim
connector, each with connector 1. Where a variable IS an OCPP 1.6 configuration key it names
that key and is read and written through it (one value, one set of rules, the 1.6 services keep
working); 2.0.1-only variables have a default and live in the device_variable table.

Choices a reader may wonder about:

- TxStartPoint "PowerPathClosed", TxStopPoint "EVConnected,Authorized": what the charger does
  in 1.6, so a CSMS sees the same sessions in either version (a transaction begins once the EV
  is plugged in AND the driver authorized, when the EVSE machine closes the power path; it ends
  when the cable is pulled or the driver stops by tag). Only the points the EVSE machine can
  tell are offered: EVConnected, Authorized, PowerPathClosed, EnergyTransfer (no parking bay
  sensor, no signed data).
- A setting hilsim has nothing to apply to is ReadOnly (TimeSource, MessageTimeout,
  ResetRetries as in 1.6): a CSMS is never told Accepted about a change that changes nothing.
- SecurityProfile is ReadWrite through the 1.6 key and its guards (only upwards), as for 1.6
  ChangeConfiguration: 2.0.1 would raise it with SetNetworkProfile, which hilsim does not have.
- BasicAuthPassword is the 1.6 AuthorizationKey: the password's UTF-8 bytes, as hexadecimal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hilsim.device_model.variables import (
    Attribute,
    Codec,
    Component,
    DataType,
    Mutability,
    Variable,
)
from hilsim.keys import MEASURANDS

RO, RW, WO = Mutability.read_only, Mutability.read_write, Mutability.write_only
STRING, INTEGER, DECIMAL = DataType.string, DataType.integer, DataType.decimal
BOOLEAN, DATE_TIME = DataType.boolean, DataType.date_time
OPTIONS, MEMBERS, SEQUENCE = DataType.option_list, DataType.member_list, DataType.sequence_list

#: connectorStatus / AvailabilityState values.
AVAILABILITY_STATES = ("Available", "Occupied", "Reserved", "Unavailable", "Faulted")
#: The TxStartPoint/TxStopPoint members the EVSE machine can tell.
TX_POINTS = ("EVConnected", "Authorized", "PowerPathClosed", "EnergyTransfer")
TX_START_POINT = "PowerPathClosed"
TX_STOP_POINT = "EVConnected,Authorized"

_RATE_UNITS = {"Current": "A", "Power": "W"}


def _rate_unit_to_key(text: str) -> str:
    back = {wire: key for key, wire in _RATE_UNITS.items()}
    return ",".join(back.get(item, item) for item in text.split(",") if item)


def _rate_unit_from_key(text: str) -> str:
    return ",".join(_RATE_UNITS.get(item, item) for item in text.split(",") if item)


def _password_to_key(text: str) -> str:
    return text.encode("utf-8").hex()


def _never_shown(text: str) -> str:
    return ""  # a write-only value is never read back


#: SmartChargingCtrlr.RateUnit "A,W" is ChargingScheduleAllowedChargingRateUnit "Current,Power".
RATE_UNIT = Codec(_rate_unit_to_key, _rate_unit_from_key)
#: BasicAuthPassword (the text) is the 1.6 AuthorizationKey (its UTF-8 bytes as hexadecimal).
PASSWORD = Codec(_password_to_key, _never_shown)


@dataclass(frozen=True, slots=True)
class EvseInfo:
    """One EVSE as installed: its id (= hilsim connector id), phases and power."""

    evse_id: int
    phases: int
    max_power_W: float
    connector_type: str = "cType2"


@dataclass(frozen=True, slots=True)
class StationInfo:
    """What the configuration file says about the charge point, for the read-only variables."""

    identity: str
    vendor: str
    model: str
    evses: tuple[EvseInfo, ...]


def build_catalogue(station: StationInfo) -> tuple[Variable, ...]:
    """Every variable of this charge point, in reporting order."""
    return (
        *_station(station),
        *(variable for evse in station.evses for variable in _evse(evse)),
        *_communication(),
        *_device_data(),
        *_authorization(),
        *_transactions(),
        *_metering(),
        *_smart_charging(),
        *_security(station),
        *_clock_and_reservation(),
    )


def _station(station: StationInfo) -> list[Variable]:
    cs = Component("ChargingStation")
    phases = max((evse.phases for evse in station.evses), default=1)
    return [
        Variable(cs, "AvailabilityState", OPTIONS, RO, live="availability_state",
                 default="Available", values_list=AVAILABILITY_STATES),
        Variable(cs, "Available", BOOLEAN, RO, live="available", default="true"),
        Variable(cs, "Model", STRING, RO, default=station.model, max_limit=20),
        Variable(cs, "VendorName", STRING, RO, default=station.vendor, max_limit=50),
        Variable(cs, "SupplyPhases", INTEGER, RO, default=str(phases), min_limit=0, max_limit=3),
    ]  # fmt: skip


def _evse(evse: EvseInfo) -> list[Variable]:
    here = Component("EVSE", evse=evse.evse_id)
    plug = Component("Connector", evse=evse.evse_id, connector=1)
    power = f"{evse.max_power_W:g}"
    return [
        Variable(here, "AvailabilityState", OPTIONS, RO, live="availability_state",
                 default="Available", values_list=AVAILABILITY_STATES),
        Variable(here, "Available", BOOLEAN, RO, live="available", default="true"),
        Variable(here, "Power", DECIMAL, RO, live="power", default="0", unit="W",
                 min_limit=0, max_limit=evse.max_power_W, extra=((Attribute.max_set, power),)),
        Variable(here, "SupplyPhases", INTEGER, RO, default=str(evse.phases), min_limit=0,
                 max_limit=3),
        Variable(plug, "AvailabilityState", OPTIONS, RO, live="availability_state",
                 default="Available", values_list=AVAILABILITY_STATES),
        Variable(plug, "Available", BOOLEAN, RO, live="available", default="true"),
        Variable(plug, "ConnectorType", STRING, RO, default=evse.connector_type),
        Variable(plug, "SupplyPhases", INTEGER, RO, default=str(evse.phases), min_limit=0,
                 max_limit=3),
    ]  # fmt: skip


def _communication() -> list[Variable]:
    comm = Component("OCPPCommCtrlr")
    return [
        Variable(comm, "HeartbeatInterval", INTEGER, key="HeartbeatInterval", unit="s"),
        Variable(comm, "MessageTimeout", INTEGER, RO, instance="Default", default="30",
                 unit="s"),
        Variable(comm, "MessageAttempts", INTEGER, instance="TransactionEvent",
                 key="TransactionMessageAttempts"),
        Variable(comm, "MessageAttemptInterval", INTEGER, instance="TransactionEvent",
                 key="TransactionMessageRetryInterval", unit="s"),
        Variable(comm, "OfflineThreshold", INTEGER, default="60", unit="s", min_limit=0,
                 max_limit=86400),
        Variable(comm, "ResetRetries", INTEGER, RO, key="ResetRetries"),
        Variable(comm, "WebSocketPingInterval", INTEGER, key="WebSocketPingInterval", unit="s"),
        Variable(comm, "NetworkConfigurationPriority", SEQUENCE, default="0", values_list=("0",),
                 non_empty=True),
        Variable(comm, "NetworkProfileConnectionAttempts", INTEGER, default="3", min_limit=1,
                 max_limit=100),
        Variable(comm, "FileTransferProtocols", MEMBERS, RO, default="HTTP,HTTPS,FTP",
                 values_list=("HTTP", "HTTPS", "FTP")),
    ]  # fmt: skip


#: DeviceDataCtrlr's limits: (ItemsPerMessage, BytesPerMessage) per message instance.
DEVICE_DATA_LIMITS = {
    "GetReport": (50, 65000),
    "GetVariables": (50, 65000),
    "SetVariables": (50, 65000),
}


def _device_data() -> list[Variable]:
    data = Component("DeviceDataCtrlr")
    found: list[Variable] = []
    for instance, (items, size) in DEVICE_DATA_LIMITS.items():
        found.append(Variable(data, "ItemsPerMessage", INTEGER, RO, instance=instance,
                              default=str(items)))  # fmt: skip
        found.append(Variable(data, "BytesPerMessage", INTEGER, RO, instance=instance,
                              default=str(size)))  # fmt: skip
    found += [
        Variable(data, "ConfigurationValueSize", INTEGER, RO, default="1000"),
        Variable(data, "ReportingValueSize", INTEGER, RO, default="2500"),
        Variable(data, "ValueSize", INTEGER, RO, default="2500"),
    ]
    return found


def _authorization() -> list[Variable]:
    auth = Component("AuthCtrlr")
    cache = Component("AuthCacheCtrlr")
    local = Component("LocalAuthListCtrlr")
    return [
        Variable(auth, "Enabled", BOOLEAN, key="OCPPAuthorizationEnabled"),
        Variable(auth, "AuthorizeRemoteStart", BOOLEAN, key="AuthorizeRemoteTxRequests"),
        Variable(auth, "LocalAuthorizeOffline", BOOLEAN, key="LocalAuthorizeOffline"),
        Variable(auth, "LocalPreAuthorize", BOOLEAN, key="LocalPreAuthorize"),
        Variable(auth, "OfflineTxForUnknownIdEnabled", BOOLEAN, key="AllowOfflineTxForUnknownId"),
        Variable(cache, "Available", BOOLEAN, RO, default="true"),
        Variable(cache, "Enabled", BOOLEAN, key="AuthorizationCacheEnabled"),
        Variable(cache, "LifeTime", INTEGER, default="86400", unit="s", min_limit=1,
                 max_limit=31536000),
        Variable(local, "Available", BOOLEAN, RO, default="true"),
        Variable(local, "Enabled", BOOLEAN, key="LocalAuthListEnabled"),
        Variable(local, "Entries", INTEGER, RO, live="local_list_entries", default="0",
                 min_limit=0, max_limit_key="LocalAuthListMaxLength"),
        Variable(local, "ItemsPerMessage", INTEGER, RO, key="SendLocalListMaxLength"),
        Variable(local, "BytesPerMessage", INTEGER, RO, default="65000"),
    ]  # fmt: skip


def _transactions() -> list[Variable]:
    tx = Component("TxCtrlr")
    return [
        Variable(tx, "EVConnectionTimeOut", INTEGER, key="ConnectionTimeOut", unit="s"),
        Variable(tx, "StopTxOnEVSideDisconnect", BOOLEAN,
                 key="StopTransactionOnEVSideDisconnect"),
        Variable(tx, "StopTxOnInvalidId", BOOLEAN, key="StopTransactionOnInvalidId"),
        Variable(tx, "MaxEnergyOnInvalidId", INTEGER, RO, key="MaxEnergyOnInvalidId", unit="Wh"),
        Variable(tx, "TxStartPoint", MEMBERS, default=TX_START_POINT, values_list=TX_POINTS,
                 non_empty=True),
        Variable(tx, "TxStopPoint", MEMBERS, default=TX_STOP_POINT, values_list=TX_POINTS,
                 non_empty=True),
        Variable(tx, "TxBeforeAcceptedEnabled", BOOLEAN, RO, default="false"),
    ]  # fmt: skip


def _metering() -> list[Variable]:
    sampled = Component("SampledDataCtrlr")
    aligned = Component("AlignedDataCtrlr")
    return [
        Variable(sampled, "Enabled", BOOLEAN, default="true"),
        Variable(sampled, "TxStartedMeasurands", MEMBERS,
                 default="Energy.Active.Import.Register", values_list=MEASURANDS),
        Variable(sampled, "TxUpdatedMeasurands", MEMBERS, key="MeterValuesSampledData"),
        Variable(sampled, "TxUpdatedInterval", INTEGER, key="MeterValueSampleInterval", unit="s"),
        Variable(sampled, "TxEndedMeasurands", MEMBERS, key="StopTxnSampledData"),
        Variable(sampled, "TxEndedInterval", INTEGER, default="0", unit="s", min_limit=0,
                 max_limit=86400),
        Variable(aligned, "Enabled", BOOLEAN, default="true"),
        Variable(aligned, "Measurands", MEMBERS, key="MeterValuesAlignedData"),
        Variable(aligned, "Interval", INTEGER, key="ClockAlignedDataInterval", unit="s"),
        Variable(aligned, "TxEndedMeasurands", MEMBERS, key="StopTxnAlignedData"),
        Variable(aligned, "TxEndedInterval", INTEGER, default="0", unit="s", min_limit=0,
                 max_limit=86400),
        Variable(aligned, "SendDuringIdle", BOOLEAN, default="false"),
    ]  # fmt: skip


def _smart_charging() -> list[Variable]:
    sc = Component("SmartChargingCtrlr")
    return [
        Variable(sc, "Enabled", BOOLEAN, RO, default="true"),
        Variable(sc, "Available", BOOLEAN, RO, default="true"),
        Variable(sc, "Entries", INTEGER, RO, instance="ChargingProfiles",
                 live="charging_profiles", default="0", min_limit=0,
                 max_limit_key="MaxChargingProfilesInstalled"),
        Variable(sc, "LimitChangeSignificance", DECIMAL, default="0.1", min_limit=0,
                 max_limit=1),
        Variable(sc, "PeriodsPerSchedule", INTEGER, RO, key="ChargingScheduleMaxPeriods"),
        Variable(sc, "ProfileStackLevel", INTEGER, RO, key="ChargeProfileMaxStackLevel"),
        Variable(sc, "RateUnit", MEMBERS, RO, key="ChargingScheduleAllowedChargingRateUnit",
                 codec=RATE_UNIT),
    ]  # fmt: skip


def _security(station: StationInfo) -> list[Variable]:
    sec = Component("SecurityCtrlr")
    return [
        Variable(sec, "SecurityProfile", INTEGER, key="SecurityProfile"),
        Variable(sec, "BasicAuthPassword", STRING, WO, key="AuthorizationKey", codec=PASSWORD,
                 min_limit=16, max_limit=40),
        Variable(sec, "Identity", STRING, RO, default=station.identity, max_limit=48),
        Variable(sec, "OrganizationName", STRING, default="hilsim", max_limit=100),
        Variable(sec, "CertificateEntries", INTEGER, RO, default="0"),
    ]  # fmt: skip


def _clock_and_reservation() -> list[Variable]:
    clock = Component("ClockCtrlr")
    reservation = Component("ReservationCtrlr")
    return [
        Variable(clock, "DateTime", DATE_TIME, RO, live="date_time"),
        Variable(clock, "TimeSource", SEQUENCE, RO, default="NTP,Heartbeat",
                 values_list=("Heartbeat", "NTP", "GPS", "RealTimeClock", "MobileNetwork",
                              "RadioTimeTransmitter")),
        Variable(reservation, "Available", BOOLEAN, RO, default="true"),
        Variable(reservation, "Enabled", BOOLEAN, RO, default="true"),
        Variable(reservation, "NonEvseSpecific", BOOLEAN, RO,
                 key="ReserveConnectorZeroSupported"),
    ]  # fmt: skip


def station_info(
    identity: str, vendor: str, model: str, evses: Sequence[tuple[int, int, float]]
) -> StationInfo:
    """From plain values (the settings' connectors as (id, phases, max_power_W))."""
    return StationInfo(identity, vendor, model,
                       tuple(EvseInfo(i, phases, power) for i, phases, power in evses))  # fmt: skip
