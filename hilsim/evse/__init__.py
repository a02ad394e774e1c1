"""The pure EVSE state machine: standard library only, no IO, no asyncio, no clock."""

from hilsim.evse import effects, events
from hilsim.evse.machine import Connector, Outcome, next_deadline, transition
from hilsim.evse.types import (
    TRANSACTION_STATUSES,
    ConnectorState,
    ErrorCode,
    FaultSource,
    Policy,
    Status,
    StopReason,
    derive_status,
)

__all__ = [
    "TRANSACTION_STATUSES",
    "Connector",
    "ConnectorState",
    "ErrorCode",
    "FaultSource",
    "Outcome",
    "Policy",
    "Status",
    "StopReason",
    "derive_status",
    "effects",
    "events",
    "next_deadline",
    "transition",
]
