"""The EVSE state machine: one per connector, events in, new state and effects out.

Pure by design: no IO, no asyncio, no clock. The caller passes ``now`` (seconds on any monotonic
scale) so deadlines are testable without waiting, and carries out the returned effects. An event
that makes no sense in the current state is *refused*: the state is left untouched and the reason
is returned, so a stray button press or a confused CSMS can never half-apply a transition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from hilsim.evse import events as ev
from hilsim.evse.effects import (
    AuthorizationEnded,
    Effect,
    ReservationEnded,
    SendAuthorize,
    SendStartTransaction,
    SendStopTransaction,
    StatusChanged,
)
from hilsim.evse.types import (
    Authorization,
    ConnectorState,
    ErrorCode,
    FaultSource,
    Policy,
    Reservation,
    Status,
    StopReason,
    Transaction,
)

ACCEPTED = "Accepted"


class Refused(Exception):
    """Raised inside a transition; turned into ``Outcome.refused`` before it leaves the module."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one event did to a connector: the new state, the effects to carry out, or why the
    event was refused (the state then unchanged)."""

    state: ConnectorState
    effects: tuple[Effect, ...] = ()
    refused: str | None = None

    @property
    def accepted(self) -> bool:
        return self.refused is None


@dataclass(slots=True)
class _Step:
    """Mutable scratch for one transition: the state being built and the effects emitted."""

    state: ConnectorState
    policy: Policy
    now: float
    effects: list[Effect] = field(default_factory=list)

    def set(self, **changes: object) -> None:
        self.state = replace(self.state, **changes)  # type: ignore[arg-type]

    @property
    def cid(self) -> int:
        return self.state.connector_id

    # -- building blocks shared by several events ----------------------------------------------

    def require_usable(self) -> None:
        if self.state.error_code is not None:
            raise Refused("connector is faulted")
        if not self.state.operative:
            raise Refused("connector is unavailable")

    def authorized(self, id_tag: str, remote: bool, parent_id_tag: str | None = None) -> None:
        """An idTag is cleared to charge: start now if plugged, else wait ConnectionTimeOut."""
        if self.state.plugged:
            self.start(id_tag, remote, parent_id_tag)
        else:
            deadline = self.now + self.policy.connection_timeout_s
            waiting = Authorization(id_tag, remote, False, deadline, parent_id_tag)
            self.set(authorization=waiting)

    def start(self, id_tag: str, remote: bool, parent_id_tag: str | None = None) -> None:
        reservation = self.state.reservation
        reservation_id = None
        if reservation is not None and reservation.admits(id_tag, parent_id_tag):
            reservation_id = reservation.reservation_id
        self.set(
            authorization=None,
            reservation=None,
            finishing=False,
            ev_suspended=False,
            transaction=Transaction(id_tag=id_tag, started_at=self.now, remote=remote),
        )
        self.effects.append(SendStartTransaction(self.cid, id_tag, reservation_id))

    def stop(self, reason: StopReason, id_tag: str | None = None) -> None:
        """End the transaction; if its id is not known yet, stop as soon as it is."""
        tx = self.state.transaction
        assert tx is not None
        if tx.local_id is None:
            if tx.stop_reason is None:
                self.set(transaction=replace(tx, stop_reason=reason, stop_id_tag=id_tag))
            return
        self.effects.append(SendStopTransaction(self.cid, tx.local_id, reason, id_tag))
        self.ended()

    def ended(self) -> None:
        """The transaction is over: Finishing while plugged; apply a scheduled availability."""
        self.set(transaction=None, finishing=self.state.plugged, ev_suspended=False)
        self.apply_scheduled_availability()

    def apply_scheduled_availability(self) -> None:
        if self.state.scheduled_operative is not None:
            self.set(operative=self.state.scheduled_operative, scheduled_operative=None)

    def drop_authorization(self, why: str) -> None:
        auth = self.state.authorization
        if auth is not None:
            self.set(authorization=None)
            self.effects.append(AuthorizationEnded(self.cid, auth.id_tag, why))

    def check_reservation(self, id_tag: str) -> bool:
        """Refuse an idTag the reservation cannot admit; True if only its parent idTag can tell.

        The parent idTag is learnt from Authorize (IdTagInfo.parentIdTag), so such an idTag must
        be authorised whatever the policy says, and is checked again when the answer comes.
        """
        res = self.state.reservation
        if res is None or res.admits(id_tag):
            return False
        if res.parent_id_tag is None:
            raise Refused(f"reserved for another idTag (reservation {res.reservation_id})")
        return True


def _plug_in(s: _Step, e: ev.PlugIn) -> None:
    if s.state.plugged:
        raise Refused("already plugged in")
    s.set(plugged=True, finishing=False)
    auth = s.state.authorization
    if auth is not None and not auth.pending and s.state.error_code is None and s.state.operative:
        s.start(auth.id_tag, auth.remote, auth.parent_id_tag)


def _unplug(s: _Step, e: ev.Unplug) -> None:
    if not s.state.plugged:
        raise Refused("not plugged in")
    tx = s.state.transaction
    # A transaction whose id is not known yet cannot be kept waiting for the EV: it stops.
    if tx is not None and (s.policy.stop_on_ev_disconnect or tx.local_id is None):
        s.stop(StopReason.EV_DISCONNECTED)
    s.set(plugged=False, finishing=False, ev_suspended=False)


def _present_tag(s: _Step, e: ev.PresentTag) -> None:
    tx = s.state.transaction
    if tx is not None:
        if e.id_tag != tx.id_tag:
            raise Refused(f"transaction belongs to idTag {tx.id_tag}")
        s.stop(StopReason.LOCAL, e.id_tag)
        return
    s.require_usable()
    auth = s.state.authorization
    if auth is not None:
        if auth.id_tag == e.id_tag and not auth.pending:
            s.drop_authorization("cancelled by presenting the tag again")
            return
        raise Refused(f"idTag {auth.id_tag} is already waiting on this connector")
    if s.check_reservation(e.id_tag) or s.policy.authorize_local:
        s.set(authorization=Authorization(e.id_tag, remote=False, pending=True))
        s.effects.append(SendAuthorize(s.cid, e.id_tag))
    else:
        s.authorized(e.id_tag, remote=False)


def _authorize_result(s: _Step, e: ev.AuthorizeResult) -> None:
    auth = s.state.authorization
    if auth is None or not auth.pending or auth.id_tag != e.id_tag:
        raise Refused(f"no Authorize pending for idTag {e.id_tag}")
    if e.status != ACCEPTED:
        s.drop_authorization(f"CSMS answered {e.status}")
        return
    s.set(authorization=None)
    if s.state.error_code is not None or not s.state.operative:
        s.effects.append(AuthorizationEnded(s.cid, e.id_tag, "connector no longer usable"))
        return
    res = s.state.reservation
    if res is not None and not res.admits(e.id_tag, e.parent_id_tag):
        why = f"reserved for another idTag (reservation {res.reservation_id})"
        s.effects.append(AuthorizationEnded(s.cid, e.id_tag, why))
        return
    s.authorized(e.id_tag, auth.remote, e.parent_id_tag)


def _remote_start(s: _Step, e: ev.RemoteStart) -> None:
    s.require_usable()
    if s.state.transaction is not None:
        raise Refused("a transaction is already running")
    if s.state.authorization is not None:
        raise Refused(f"idTag {s.state.authorization.id_tag} is already waiting on this connector")
    if s.check_reservation(e.id_tag) or s.policy.authorize_remote:
        s.set(authorization=Authorization(e.id_tag, remote=True, pending=True))
        s.effects.append(SendAuthorize(s.cid, e.id_tag))
    else:
        s.authorized(e.id_tag, remote=True)


def _remote_stop(s: _Step, e: ev.RemoteStop) -> None:
    tx = s.state.transaction
    if tx is None or tx.local_id != e.local_id:
        raise Refused(f"no transaction {e.local_id} on this connector")
    s.stop(StopReason.REMOTE)


def _transaction_started(s: _Step, e: ev.TransactionStarted) -> None:
    tx = s.state.transaction
    if tx is None or tx.local_id is not None:
        raise Refused("no StartTransaction pending")
    s.set(transaction=replace(tx, local_id=e.local_id))
    if e.status != ACCEPTED and (s.policy.stop_on_invalid_id or tx.stop_reason is not None):
        s.stop(StopReason.DE_AUTHORIZED)
    elif tx.stop_reason is not None:
        s.stop(tx.stop_reason, tx.stop_id_tag)
    elif e.status != ACCEPTED:
        # StopTransactionOnInvalidId false: the transaction goes on, without energy.
        s.set(transaction=replace(tx, local_id=e.local_id, invalid=True))


def _start_failed(s: _Step, e: ev.StartFailed) -> None:
    tx = s.state.transaction
    if tx is None or tx.local_id is not None:
        raise Refused("no StartTransaction pending")
    s.set(transaction=None, ev_suspended=False)
    s.apply_scheduled_availability()
    s.effects.append(AuthorizationEnded(s.cid, tx.id_tag, f"StartTransaction failed: {e.reason}"))


def _fault(s: _Step, e: ev.Fault) -> None:
    faults = s.state.faults
    for source, code in faults:
        if source == e.source:
            raise Refused(f"already faulted by {source} ({code})")
    if e.error_code == ErrorCode.NO_ERROR:
        raise Refused("a fault needs an error code other than NoError")
    if s.state.transaction is not None:
        s.stop(e.stop_reason)
    s.drop_authorization("connector faulted")
    s.set(faults=(*faults, (e.source, e.error_code)))


#: Faults that only their own source clears: a person's ClearFault leaves them.
_LATCHED = frozenset({FaultSource.PANEL_ESTOP, FaultSource.WEB_ESTOP})


def _clear_fault(s: _Step, e: ev.ClearFault) -> None:
    faults = s.state.faults
    if not faults:
        raise Refused("not faulted")
    if e.source is None:
        # A person clears what they can; an emergency stop stays latched until it is released
        # (the button let go, the page's stop disengaged), or the clear would restore power
        # while the stop is still pressed.
        remaining = tuple(f for f in faults if f[0] in _LATCHED)
        if len(remaining) == len(faults):
            held = ", ".join(sorted(source for source, _ in remaining))
            raise Refused(f"the emergency stop is engaged ({held}): release it to clear")
    else:
        remaining = tuple(f for f in faults if f[0] != e.source)
        if len(remaining) == len(faults):
            raise Refused(f"no fault raised by {e.source}")
    s.set(faults=remaining)


def _end_transaction(s: _Step, e: ev.EndTransaction) -> None:
    if s.state.transaction is None:
        raise Refused("no transaction running")
    s.stop(e.reason, e.id_tag)


def _ev_suspend(s: _Step, e: ev.EvSuspend) -> None:
    if s.state.transaction is None or not s.state.plugged or s.state.ev_suspended:
        raise Refused("EV is not drawing energy in a transaction")
    s.set(ev_suspended=True)


def _ev_resume(s: _Step, e: ev.EvResume) -> None:
    if not s.state.ev_suspended:
        raise Refused("EV is not suspended")
    s.set(ev_suspended=False)


def _set_power_limit(s: _Step, e: ev.SetPowerLimit) -> None:
    if e.limit_W is not None and not 0 <= e.limit_W < math.inf:
        raise Refused("a power limit must be a finite number of watts, 0 or more")
    s.set(power_limit_W=e.limit_W)


def _change_availability(s: _Step, e: ev.ChangeAvailability) -> None:
    if s.state.transaction is not None and not e.operative:
        s.set(scheduled_operative=False)
        return
    s.set(operative=e.operative, scheduled_operative=None)
    if not e.operative:
        s.drop_authorization("connector made unavailable")


def _reserve(s: _Step, e: ev.Reserve) -> None:
    s.require_usable()
    res = s.state.reservation
    if res is not None and res.reservation_id != e.reservation_id:
        raise Refused("connector is already reserved")
    # an EV plugged into a Reserved connector leaves it Reserved, and a matching reservationId
    # is then replaced (OCPP 1.6 5.13); an idTag already waiting or charging occupies it
    plugged = s.state.plugged and res is None
    if s.state.transaction is not None or plugged or s.state.authorization is not None:
        raise Refused("connector is occupied")
    s.set(reservation=Reservation(e.reservation_id, e.id_tag, e.expires_at, e.parent_id_tag))


def _cancel_reservation(s: _Step, e: ev.CancelReservation) -> None:
    res = s.state.reservation
    if res is None or res.reservation_id != e.reservation_id:
        raise Refused(f"no reservation {e.reservation_id} on this connector")
    s.set(reservation=None)
    s.effects.append(ReservationEnded(s.cid, e.reservation_id, "cancelled"))


def _tick(s: _Step, e: ev.Tick) -> None:
    auth = s.state.authorization
    if auth is not None and auth.expires_at is not None and auth.expires_at <= s.now:
        s.drop_authorization("no EV plugged in within ConnectionTimeOut")
    res = s.state.reservation
    if res is not None and res.expires_at <= s.now:
        s.set(reservation=None)
        s.effects.append(ReservationEnded(s.cid, res.reservation_id, "expired"))


_HANDLERS = {
    ev.PlugIn: _plug_in,
    ev.Unplug: _unplug,
    ev.PresentTag: _present_tag,
    ev.AuthorizeResult: _authorize_result,
    ev.RemoteStart: _remote_start,
    ev.RemoteStop: _remote_stop,
    ev.TransactionStarted: _transaction_started,
    ev.StartFailed: _start_failed,
    ev.Fault: _fault,
    ev.ClearFault: _clear_fault,
    ev.EndTransaction: _end_transaction,
    ev.EvSuspend: _ev_suspend,
    ev.EvResume: _ev_resume,
    ev.SetPowerLimit: _set_power_limit,
    ev.ChangeAvailability: _change_availability,
    ev.Reserve: _reserve,
    ev.CancelReservation: _cancel_reservation,
    ev.Tick: _tick,
}


def transition(state: ConnectorState, event: ev.Event, policy: Policy, now: float) -> Outcome:
    """Apply one event. A StatusChanged effect is appended whenever the derived status changes."""
    handler = _HANDLERS.get(type(event))
    if handler is None:
        return Outcome(state, (), f"unknown event {type(event).__name__}")
    step = _Step(state, policy, now)
    try:
        handler(step, event)  # type: ignore[operator]
    except Refused as refusal:
        return Outcome(state, (), str(refusal))
    before, after = state.status, step.state.status
    error = step.state.error_code or ErrorCode.NO_ERROR
    if after != before or error != (state.error_code or ErrorCode.NO_ERROR):
        step.effects.append(StatusChanged(state.connector_id, after, error))
    return Outcome(step.state, tuple(step.effects))


def next_deadline(state: ConnectorState) -> float | None:
    """When the next Tick can change something, so the adapter sleeps exactly that long."""
    deadlines = []
    if state.authorization is not None and state.authorization.expires_at is not None:
        deadlines.append(state.authorization.expires_at)
    if state.reservation is not None:
        deadlines.append(state.reservation.expires_at)
    return min(deadlines, default=None)


class Connector:
    """One connector's machine: holds the current state and the policy it obeys."""

    def __init__(self, connector_id: int, policy: Policy | None = None) -> None:
        self.state = ConnectorState(connector_id)
        self.policy = policy or Policy()

    @property
    def connector_id(self) -> int:
        return self.state.connector_id

    @property
    def status(self) -> Status:
        return self.state.status

    def handle(self, event: ev.Event, now: float) -> Outcome:
        outcome = transition(self.state, event, self.policy, now)
        self.state = outcome.state
        return outcome

    def next_deadline(self) -> float | None:
        return next_deadline(self.state)
