"""Events: everything that can happen to a connector, from a button, `hilsim ctl`, or the CSMS.

A button press and the equivalent `ctl` command produce the same event object, which is what makes
the panel, the control socket and the tests interchangeable.
"""

from __future__ import annotations

from dataclasses import dataclass

from hilsim.evse.types import ErrorCode, FaultSource, StopReason


@dataclass(frozen=True, slots=True)
class PlugIn:
    """The EV's cable was plugged into the connector."""


@dataclass(frozen=True, slots=True)
class Unplug:
    """The EV's cable was pulled out."""


@dataclass(frozen=True, slots=True)
class PresentTag:
    """An RFID card was held to the reader of this connector."""

    id_tag: str


@dataclass(frozen=True, slots=True)
class AuthorizeResult:
    """The CSMS answered Authorize (status is IdTagInfo.status)."""

    id_tag: str
    status: str
    parent_id_tag: str | None = None


@dataclass(frozen=True, slots=True)
class RemoteStart:
    """RemoteStartTransaction addressed to this connector."""

    id_tag: str


@dataclass(frozen=True, slots=True)
class RemoteStop:
    """RemoteStopTransaction, for the transaction with this local id (the adapter maps the
    CSMS's transactionId to it)."""

    local_id: int


@dataclass(frozen=True, slots=True)
class TransactionStarted:
    """The start is recorded under ``local_id`` (the charge point's own id; the CSMS's
    transactionId is the adapter's business), with the CSMS's IdTagInfo.status if it answered."""

    local_id: int
    status: str = "Accepted"


@dataclass(frozen=True, slots=True)
class StartFailed:
    """StartTransaction could not be delivered; the start is abandoned."""

    reason: str


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault raised by ``source``; ends a running transaction with ``stop_reason``.

    Refused while the same source has a fault active; a fault from another source joins it.
    """

    error_code: ErrorCode = ErrorCode.OTHER_ERROR
    stop_reason: StopReason = StopReason.OTHER
    source: FaultSource = FaultSource.OPERATOR


@dataclass(frozen=True, slots=True)
class ClearFault:
    """``source``'s fault went away; None: a person clears every fault but an engaged
    emergency stop's (a source whose cause persists, such as a dead meter, raises its fault
    again)."""

    source: FaultSource | None = None


@dataclass(frozen=True, slots=True)
class EndTransaction:
    """Stop a running transaction for a reason outside the connector (reset, shutdown, e-stop)."""

    reason: StopReason
    id_tag: str | None = None


@dataclass(frozen=True, slots=True)
class EvSuspend:
    """The EV stopped drawing energy (battery full, EV's own schedule)."""


@dataclass(frozen=True, slots=True)
class EvResume:
    """The EV draws energy again."""


@dataclass(frozen=True, slots=True)
class SetPowerLimit:
    """Smart charging changed the limit in force; 0 suspends, None removes the limit."""

    limit_W: float | None


@dataclass(frozen=True, slots=True)
class ChangeAvailability:
    """ChangeAvailability Operative (True) or Inoperative (False)."""

    operative: bool


@dataclass(frozen=True, slots=True)
class Reserve:
    """ReserveNow addressed to this connector (``expires_at`` already monotonic)."""

    reservation_id: int
    id_tag: str
    expires_at: float
    parent_id_tag: str | None = None


@dataclass(frozen=True, slots=True)
class CancelReservation:
    """CancelReservation of the reservation this connector holds."""

    reservation_id: int


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: expires idTags waiting for a plug and reservations."""


Event = (
    PlugIn
    | Unplug
    | PresentTag
    | AuthorizeResult
    | RemoteStart
    | RemoteStop
    | TransactionStarted
    | StartFailed
    | Fault
    | ClearFault
    | EndTransaction
    | EvSuspend
    | EvResume
    | SetPowerLimit
    | ChangeAvailability
    | Reserve
    | CancelReservation
    | Tick
)
