"""The charger's vocabulary: statuses, error codes, stop reasons, and the connector's state.

Values are the literal OCPP 1.6 strings so that nothing between the machine and the wire has to
translate them. Standard library only: this package must stay importable without asyncio or IO.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    """OCPP 1.6 ChargePointStatus."""

    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    SUSPENDED_EV = "SuspendedEV"
    SUSPENDED_EVSE = "SuspendedEVSE"
    FINISHING = "Finishing"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"


class ErrorCode(StrEnum):
    """OCPP 1.6 ChargePointErrorCode."""

    NO_ERROR = "NoError"
    CONNECTOR_LOCK_FAILURE = "ConnectorLockFailure"
    EV_COMMUNICATION_ERROR = "EVCommunicationError"
    GROUND_FAILURE = "GroundFailure"
    HIGH_TEMPERATURE = "HighTemperature"
    INTERNAL_ERROR = "InternalError"
    LOCAL_LIST_CONFLICT = "LocalListConflict"
    OTHER_ERROR = "OtherError"
    OVER_CURRENT_FAILURE = "OverCurrentFailure"
    OVER_VOLTAGE = "OverVoltage"
    POWER_METER_FAILURE = "PowerMeterFailure"
    POWER_SWITCH_FAILURE = "PowerSwitchFailure"
    READER_FAILURE = "ReaderFailure"
    RESET_FAILURE = "ResetFailure"
    UNDER_VOLTAGE = "UnderVoltage"
    WEAK_SIGNAL = "WeakSignal"


class FaultSource(StrEnum):
    """Who raised a fault, and so who may clear it (as libocpp's active errors are keyed).

    A connector holds at most one fault per source; each source raises and clears its own, so
    no adapter has to remember which connectors it faulted.
    """

    OPERATOR = "operator"  # `hilsim ctl fault`, the panel's fault switch, a test
    METER = "meter"  # the connector's meter stopped answering (PowerMeterFailure)
    STORE = "store"  # a transaction stop the database did not take yet (InternalError)
    PANEL_ESTOP = "panel-estop"  # the panel's emergency stop button
    WEB_ESTOP = "web-estop"  # the demo page's emergency stop


class StopReason(StrEnum):
    """OCPP 1.6 Reason for StopTransaction."""

    EMERGENCY_STOP = "EmergencyStop"
    EV_DISCONNECTED = "EVDisconnected"
    HARD_RESET = "HardReset"
    LOCAL = "Local"
    OTHER = "Other"
    POWER_LOSS = "PowerLoss"
    REBOOT = "Reboot"
    REMOTE = "Remote"
    SOFT_RESET = "SoftReset"
    UNLOCK_COMMAND = "UnlockCommand"
    DE_AUTHORIZED = "DeAuthorized"


#: Statuses in which energy may flow and a transaction is confirmed by the CSMS.
TRANSACTION_STATUSES = frozenset({Status.CHARGING, Status.SUSPENDED_EV, Status.SUSPENDED_EVSE})


@dataclass(frozen=True, slots=True)
class Policy:
    """The OCPP configuration keys the machine obeys; the adapter refreshes it when keys change."""

    authorize_local: bool = True  # OCPPAuthorizationEnabled: Authorize before a local start
    authorize_remote: bool = False  # AuthorizeRemoteTxRequests: Authorize before a remote start
    connection_timeout_s: float = 60.0  # ConnectionTimeOut: how long an idTag waits for a plug
    stop_on_ev_disconnect: bool = True  # StopTransactionOnEVSideDisconnect
    stop_on_invalid_id: bool = True  # StopTransactionOnInvalidId


@dataclass(frozen=True, slots=True)
class Authorization:
    """An idTag presented (locally or remotely) that has not yet become a transaction."""

    id_tag: str
    remote: bool
    pending: bool  # True while the CSMS has not answered Authorize
    expires_at: float | None = None  # ConnectionTimeOut deadline once authorised and unplugged
    parent_id_tag: str | None = None  # from IdTagInfo, admits the idTag to a parent reservation


@dataclass(frozen=True, slots=True)
class Transaction:
    """A transaction from the moment StartTransaction is decided until StopTransaction is sent."""

    id_tag: str
    started_at: float
    remote: bool
    local_id: int | None = None  # the charge point's id; None until the start is recorded
    stop_reason: StopReason | None = None  # a stop asked for before the id was known
    stop_id_tag: str | None = None
    invalid: bool = False  # the CSMS refused its idTag; kept (StopTransactionOnInvalidId false)


@dataclass(frozen=True, slots=True)
class Reservation:
    """A connector held for an idTag (or its parent) until ``expires_at`` (monotonic)."""

    reservation_id: int
    id_tag: str
    expires_at: float
    parent_id_tag: str | None = None

    def admits(self, id_tag: str, parent_id_tag: str | None = None) -> bool:
        if id_tag == self.id_tag:
            return True
        return self.parent_id_tag is not None and parent_id_tag == self.parent_id_tag


@dataclass(frozen=True, slots=True)
class ConnectorState:
    """Everything the status is derived from. Immutable: each event yields a new one."""

    connector_id: int
    plugged: bool = False
    #: the active faults, (source, errorCode), in the order they were raised
    faults: tuple[tuple[FaultSource, ErrorCode], ...] = ()
    operative: bool = True
    scheduled_operative: bool | None = None  # ChangeAvailability waiting for a transaction to end
    ev_suspended: bool = False
    power_limit_W: float | None = None  # from smart charging; None means unlimited
    authorization: Authorization | None = None
    transaction: Transaction | None = None
    finishing: bool = False  # a transaction ended while the EV is still plugged
    reservation: Reservation | None = None

    @property
    def status(self) -> Status:
        return derive_status(self)

    def faulted_by(self, source: FaultSource) -> bool:
        return any(raised_by == source for raised_by, _ in self.faults)

    @property
    def error_code(self) -> ErrorCode | None:
        """The errorCode a StatusNotification reports: that of the first-raised active fault.

        The first fault is the cause the others may follow from (an e-stop pressed because the
        meter went dark stays a PowerMeterFailure), and it does not change while it lasts, so
        a later fault from another source sends no new StatusNotification. None: not faulted.
        """
        return self.faults[0][1] if self.faults else None

    @property
    def local_id(self) -> int | None:
        return self.transaction.local_id if self.transaction else None


def derive_status(s: ConnectorState) -> Status:
    """Status is computed from inputs in a fixed priority, never stored.

    Storing it invites the two to disagree after an odd sequence of events; deriving it (as
    MicroOcpp does) makes every status reachable only through its causes.
    """
    if s.error_code is not None:
        return Status.FAULTED
    if not s.operative:
        return Status.UNAVAILABLE
    tx = s.transaction
    if tx is not None:
        if tx.local_id is None:
            return Status.PREPARING
        if not s.plugged:
            # Unplugged at the EV and kept (StopTransactionOnEVSideDisconnect false): the EV is
            # not there to draw energy; a stop waiting for the id is Preparing until sent.
            return Status.SUSPENDED_EV if tx.stop_reason is None else Status.PREPARING
        if tx.invalid:
            return Status.SUSPENDED_EVSE  # no energy for a refused idTag
        if s.ev_suspended:
            return Status.SUSPENDED_EV
        if s.power_limit_W is not None and s.power_limit_W <= 0:
            return Status.SUSPENDED_EVSE
        return Status.CHARGING
    if s.finishing:
        return Status.FINISHING
    if s.authorization is not None:
        return Status.PREPARING
    if s.reservation is not None:
        return Status.RESERVED
    if s.plugged:
        return Status.PREPARING
    return Status.AVAILABLE
