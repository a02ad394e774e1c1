"""When an OCPP 2.0.1 transaction starts, changes and ends: pure, one tracker per EVSE.

A 2.0.1 transaction is not the EVSE machine's (`hilsim.evse`): the machine's transaction is the
1.6 one, from the power path closing (SendStartTransaction) to its opening. TxStartPoint says
when the 2.0.1 transaction starts (at plug-in with EVConnected, at authorization with
Authorized, with the machine's with PowerPathClosed) and TxStopPoint when it ends; between the
two every change the CSMS must hear of is a TransactionEvent Updated. So the machine stays as it
is and this tracker translates around it: fed what happened (EV connected or gone, an idToken
authorized or dropped, the machine's transaction started or stopped, its status, a sample), it
answers the TransactionEvents to send as `Draft`s, without seqNo, timestamp, meter values or
`offline` (the caller's, who writes them: `hilsim.ocpp201.transaction_events`).

Standard library only, no IO, no clock: ids come from the ``new_id`` callable it is given.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

log = logging.getLogger(__name__)

#: TxStartPoint/TxStopPoint values understood. ParkingBayOccupancy counts as EVConnected (the
#: bench has no bay sensor: the cable is the first sign of a car); DataSigned and EnergyTransfer
#: as PowerPathClosed (the signed meter value and the energy come with the power path).
EV_POINTS = frozenset({"EVConnected", "ParkingBayOccupancy"})
POWER_POINTS = frozenset({"PowerPathClosed", "DataSigned", "EnergyTransfer"})
KNOWN_POINTS = EV_POINTS | POWER_POINTS | {"Authorized"}

#: the machine's statuses while its transaction runs, which are 2.0.1 charging states as they are
MACHINE_CHARGING_STATES = frozenset({"Charging", "SuspendedEV", "SuspendedEVSE"})

#: 1.6 stop Reason -> (2.0.1 stoppedReason, triggerReason)
_STOPS: dict[str, tuple[str, str]] = {
    "EmergencyStop": ("EmergencyStop", "AbnormalCondition"),
    "EVDisconnected": ("EVDisconnected", "EVCommunicationLost"),
    "HardReset": ("ImmediateReset", "ResetCommand"),
    "SoftReset": ("ImmediateReset", "ResetCommand"),
    "Reboot": ("Reboot", "ResetCommand"),
    "Local": ("Local", "StopAuthorized"),
    "Remote": ("Remote", "RemoteStop"),
    "PowerLoss": ("PowerLoss", "AbnormalCondition"),
    "DeAuthorized": ("DeAuthorized", "Deauthorized"),
    "UnlockCommand": ("Other", "UnlockCommand"),
    "Other": ("Other", "AbnormalCondition"),
}


def stop_reasons(reason_16: str) -> tuple[str, str]:
    """A 1.6 stop Reason as 2.0.1 (stoppedReason, triggerReason)."""
    return _STOPS.get(reason_16, ("Other", "AbnormalCondition"))


@lru_cache(maxsize=16)  # read at every event; a changed value is parsed (and warned of) once
def parse_points(text: str) -> frozenset[str]:
    """A TxStartPoint/TxStopPoint value ("EVConnected,Authorized") as a set; unknown names are
    kept out with a log line (a CSMS may name points the bench cannot observe)."""
    points = {p.strip() for p in text.split(",") if p.strip()}
    unknown = points - KNOWN_POINTS
    if unknown:
        log.warning("transaction points %s are not observed here; ignored", sorted(unknown))
    return frozenset(points & KNOWN_POINTS)


@dataclass(frozen=True, slots=True)
class TxPoints:
    """TxCtrlr.TxStartPoint and TxStopPoint as sets (defaults: the 1.6 moments)."""

    start: frozenset[str] = frozenset({"PowerPathClosed"})
    stop: frozenset[str] = frozenset({"EVConnected", "Authorized"})


def points_from(text: Callable[[str, str], str | None]) -> TxPoints:
    """TxCtrlr's TxStartPoint and TxStopPoint as ``text(component, variable)`` reads them (the
    device model's Actual values); one that is unset or empty keeps its default."""
    default = TxPoints()
    start = parse_points(text("TxCtrlr", "TxStartPoint") or "") or default.start
    stop = parse_points(text("TxCtrlr", "TxStopPoint") or "") or default.stop
    return TxPoints(start, stop)


@dataclass(frozen=True, slots=True)
class Draft:
    """One TransactionEvent to send, without what the writer adds (seqNo, timestamp, meter
    values, offline)."""

    event_type: str  # Started, Updated, Ended
    trigger_reason: str
    tx_id: str
    charging_state: str | None = None  # only when it changed (always on Started)
    stopped_reason: str | None = None
    id_token: dict[str, Any] | None = None
    remote_start_id: int | None = None
    evse_id: int | None = None  # the first event of a transaction names its EVSE
    meter: str | None = None  # which meter value goes with it: a ReadingContext, or None


@dataclass(slots=True)
class EvseTracker:
    """One EVSE's 2.0.1 transaction, from what the caller observed."""

    evse_id: int
    new_id: Callable[[], str]
    tx_id: str | None = None  # the open 2.0.1 transaction
    ev: bool = False
    token: dict[str, Any] | None = None  # the authorized idToken
    token_sent: bool = False
    remote: bool = False  # the authorization came from RequestStartTransaction
    remote_start_id: int | None = None  # to send with the next event
    machine_state: str | None = None  # the machine's transaction's status, while it runs
    sent_state: str | None = None  # the chargingState the CSMS last heard
    held_reason: str | None = None  # a stop kept waiting for the EV to leave (stoppedReason)
    cause: str = "Authorized"  # the trigger of the last thing that brought a start closer
    #: the smart-charging limit (W, None: none) the open transaction's CSMS knows of: the one
    #: in force when it started, or last reported by ChargingRateChanged
    limit_W: float | None = None

    # -- what the caller observed --------------------------------------------------------------

    def ev_connected(self, points: TxPoints) -> list[Draft]:
        self.ev = True
        self.cause = "CablePluggedIn"
        if self.tx_id is not None:
            return self._emit("Updated", "CablePluggedIn")
        if points.start & EV_POINTS:
            return self._start("CablePluggedIn")
        return []

    def ev_disconnected(self, points: TxPoints) -> list[Draft]:
        self.ev = False
        if self.tx_id is None or self.machine_state is not None:
            return []  # the machine's stop (EVDisconnected), or its status, says what follows
        if self.held_reason is not None or points.stop & EV_POINTS or self.token is None:
            return self._end("EVCommunicationLost", self.held_reason or "EVDisconnected")
        return self._emit("Updated", "EVCommunicationLost")

    def remote_start(self, remote_start_id: int, id_token: dict[str, Any]) -> None:
        """A RequestStartTransaction was accepted: its id goes with the next event."""
        self.remote_start_id = remote_start_id
        self.token, self.token_sent, self.remote = id_token, False, True

    def authorized(self, id_token: dict[str, Any], points: TxPoints, remote: bool) -> list[Draft]:
        if self.token is None or self.token.get("idToken") != id_token.get("idToken"):
            self.token, self.token_sent = id_token, False
        self.remote = self.remote or remote
        trigger = self.cause = "RemoteStart" if self.remote else "Authorized"
        if self.tx_id is not None:
            return self._emit("Updated", trigger)
        if "Authorized" in points.start:
            return self._start(trigger)
        return []

    def deauthorized(self, timed_out: bool, points: TxPoints) -> list[Draft]:
        """An authorization ended before the machine's transaction began (ConnectionTimeOut)."""
        self.token, self.token_sent, self.remote = None, False, False
        if self.tx_id is None or self.machine_state is not None:
            return []
        if self.ev and points.start & EV_POINTS and not points.stop & {"Authorized"}:
            return self._emit("Updated", "Deauthorized")
        trigger = "EVConnectTimeout" if timed_out else "Deauthorized"
        return self._end(trigger, "Timeout" if timed_out else "DeAuthorized")

    def local_started(self, id_token: dict[str, Any]) -> list[Draft]:
        """The machine's transaction began (the power path closes): Charging."""
        if self.token is None or self.token.get("idToken") != id_token.get("idToken"):
            self.token, self.token_sent = id_token, False
        self.ev = True
        self.machine_state = "Charging"
        self.held_reason = None
        if self.tx_id is None:
            return self._start("RemoteStart" if self.remote else self.cause)
        return self._emit("Updated", "ChargingStateChanged")

    def machine_status(self, status: str) -> list[Draft]:
        """The machine's status changed while its transaction runs."""
        if self.machine_state is None or status not in MACHINE_CHARGING_STATES:
            return []
        self.machine_state = status
        if self.tx_id is None or status == self.sent_state:
            return []
        return self._emit("Updated", "ChargingStateChanged")

    def local_stopped(
        self, reason_16: str, id_token: dict[str, Any] | None, points: TxPoints
    ) -> list[Draft]:
        """The machine's transaction ended with a 1.6 Reason (and the idToken that stopped it)."""
        self.machine_state = None
        if self.tx_id is None:
            return []
        stopped, trigger = stop_reasons(reason_16)
        if id_token is not None:
            self.token, self.token_sent = id_token, False
        waits_for_ev = (
            reason_16 == "Local"
            and self.ev
            and points.stop & EV_POINTS
            and not points.stop & (POWER_POINTS | {"Authorized"})
        )
        if waits_for_ev:  # TxStopPoint EVConnected: the transaction lasts until the EV leaves
            self.held_reason = stopped
            return self._emit("Updated", trigger)
        return self._end(trigger, stopped)

    def ended_by(self, reason_16: str) -> list[Draft]:
        """End a transaction the machine has none for (RequestStopTransaction before the power
        path closed): nothing else would end it before the EV leaves."""
        if self.tx_id is None or self.machine_state is not None:
            return []
        return self._end(*stop_reasons(reason_16)[::-1])

    def sample(self, clock: bool) -> list[Draft]:
        if self.tx_id is None:
            return []
        context = "Sample.Clock" if clock else "Sample.Periodic"
        trigger = "MeterValueClock" if clock else "MeterValuePeriodic"
        return self._emit("Updated", trigger, meter=context)

    def rate_changed(
        self, limit_W: float | None, significance: float, *, charging: bool = True
    ) -> list[Draft]:
        """Smart charging changed the limit in force: an Updated (ChargingRateChanged) while a
        transaction is open and the limit moved by more than ``significance``
        (SmartChargingCtrlr.LimitChangeSignificance, a fraction of the limit the CSMS knows);
        small steps add up until they count. ``charging``: the machine's transaction runs (a
        limit lifted as it ends changes no rate: its Ended is on the way)."""
        if not charging or self.tx_id is None:
            self.limit_W = limit_W
            return []
        if not significant(self.limit_W, limit_W, significance):
            return []
        self.limit_W = limit_W
        return self._emit("Updated", "ChargingRateChanged")

    def triggered(self) -> list[Draft]:
        """TriggerMessage TransactionEvent: an Updated that states the charging state."""
        if self.tx_id is None:
            return []
        self.sent_state = None
        return self._emit("Updated", "Trigger")

    # -- what the CSMS hears ------------------------------------------------------------------

    @property
    def charging_state(self) -> str:
        if self.machine_state is not None:
            return self.machine_state
        return "EVConnected" if self.ev else "Idle"

    def _start(self, trigger: str) -> list[Draft]:
        self.tx_id = self.new_id()
        self.sent_state = None
        return self._emit("Started", trigger, meter="Transaction.Begin", evse=True)

    def _end(self, trigger: str, stopped_reason: str) -> list[Draft]:
        drafts = self._emit(
            "Ended", trigger, meter="Transaction.End", stopped_reason=stopped_reason
        )
        self.tx_id = None
        self.token, self.token_sent, self.remote = None, False, False
        self.held_reason = self.sent_state = None
        self.remote_start_id = None
        return drafts

    def _emit(
        self,
        event_type: str,
        trigger: str,
        *,
        meter: str | None = None,
        evse: bool = False,
        stopped_reason: str | None = None,
    ) -> list[Draft]:
        assert self.tx_id is not None
        state = self.charging_state
        token = None
        if self.token is not None and not self.token_sent:
            token, self.token_sent = self.token, True
        draft = Draft(
            event_type=event_type,
            trigger_reason=trigger,
            tx_id=self.tx_id,
            charging_state=state if state != self.sent_state else None,
            stopped_reason=stopped_reason,
            id_token=token,
            remote_start_id=self.remote_start_id,
            evse_id=self.evse_id if evse else None,
            meter=meter,
        )
        self.sent_state = state
        self.remote_start_id = None
        return [draft]


def significant(before: float | None, after: float | None, fraction: float) -> bool:
    """Whether a limit moving from ``before`` to ``after`` (W; None: no limit) is news: a limit
    appearing or going away always is, a change by more than ``fraction`` of ``before`` too."""
    if before == after:
        return False
    if before is None or after is None or before == 0:
        return True
    return abs(after - before) > fraction * before


def ended(tx_id: str, reason_16: str) -> Draft:
    """The Ended of a transaction no tracker follows: one a power cut left open, ended at the
    next start (PowerLoss, AbnormalCondition)."""
    stopped, trigger = stop_reasons(reason_16)
    return Draft(
        event_type="Ended",
        trigger_reason=trigger,
        tx_id=tx_id,
        stopped_reason=stopped,
        meter="Transaction.End",
    )
