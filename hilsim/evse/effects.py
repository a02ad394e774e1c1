"""Effects: what the machine asks the outside world to do. Adapters carry them out."""

from __future__ import annotations

from dataclasses import dataclass

from hilsim.evse.types import ErrorCode, Status, StopReason


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """Send StatusNotification, update LEDs and relay."""

    connector_id: int
    status: Status
    error_code: ErrorCode = ErrorCode.NO_ERROR


@dataclass(frozen=True, slots=True)
class SendAuthorize:
    """Ask whether the idTag may charge (local list, cache, Authorize.req, offline rules)."""

    connector_id: int
    id_tag: str


@dataclass(frozen=True, slots=True)
class SendStartTransaction:
    """The adapter reads meterStart from the meter and stamps the time."""

    connector_id: int
    id_tag: str
    reservation_id: int | None = None


@dataclass(frozen=True, slots=True)
class SendStopTransaction:
    """The adapter reads meterStop from the meter and stamps the time."""

    connector_id: int
    local_id: int
    reason: StopReason
    id_tag: str | None = None


@dataclass(frozen=True, slots=True)
class AuthorizationEnded:
    """An idTag stopped waiting: refused by the CSMS, timed out, or cancelled. For logs and LEDs."""

    connector_id: int
    id_tag: str
    why: str


@dataclass(frozen=True, slots=True)
class ReservationEnded:
    """A reservation ended without being used: cancelled or expired (``why``)."""

    connector_id: int
    reservation_id: int
    why: str


Effect = (
    StatusChanged
    | SendAuthorize
    | SendStartTransaction
    | SendStopTransaction
    | AuthorizationEnded
    | ReservationEnded
)
