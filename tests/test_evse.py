"""The pure EVSE state machine (``hilsim.evse``) against OCPP 1.6.

Sections:

1. ``derive_status``: the status is a function of the connector's inputs, in a fixed priority
   (Faulted > Unavailable > transaction > Finishing > waiting authorization > Reserved >
   Preparing (plugged) > Available).
2. Happy paths, written as the OCPP 1.6 use cases they implement, asserting the exact effects.
3. Refusals: a matrix of named reachable states (every status) against every event type with
   each accepted outcome spelled out, a walk of *every* state the matrix's events can reach
   checking the contract for each event, and the specific refusals one by one.
4. Hypothesis: random event sequences never raise and keep every invariant.
5. The package imports nothing but the standard library.

Time is a plain float: the machine never reads a clock, so ``T0`` is arbitrary.
"""

from __future__ import annotations

import ast
import functools
import math
import sys
import typing
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import hilsim.evse
from hilsim.evse import (
    TRANSACTION_STATUSES,
    Connector,
    ConnectorState,
    ErrorCode,
    FaultSource,
    Outcome,
    Policy,
    Status,
    StopReason,
    derive_status,
    next_deadline,
    transition,
)
from hilsim.evse import effects as fx
from hilsim.evse import events as ev
from hilsim.evse.types import Authorization, Reservation, Transaction

CID = 1


def _by_operator(code: ErrorCode) -> tuple[tuple[FaultSource, ErrorCode], ...]:
    """A connector's faults when an operator raised one with ``code``."""
    return ((FaultSource.OPERATOR, code),)


T0 = 1_000.0
TIMEOUT = Policy().connection_timeout_s  # ConnectionTimeOut of the default policy
RESERVED_UNTIL = T0 + 600  # expiryDate of the reservations made below
LATE = T0 + 3_600  # past every deadline any scenario sets

ALL_EVENT_TYPES = frozenset(typing.get_args(ev.Event))


# -- effects, spelled as in the spec ---------------------------------------------------------------


def status(s: Status, error: ErrorCode = ErrorCode.NO_ERROR) -> fx.StatusChanged:
    return fx.StatusChanged(CID, s, error)


def authorize(id_tag: str) -> fx.SendAuthorize:
    return fx.SendAuthorize(CID, id_tag)


def start_tx(id_tag: str, reservation_id: int | None = None) -> fx.SendStartTransaction:
    return fx.SendStartTransaction(CID, id_tag, reservation_id)


def stop_tx(tx_id: int, reason: StopReason, id_tag: str | None = None) -> fx.SendStopTransaction:
    return fx.SendStopTransaction(CID, tx_id, reason, id_tag)


def _error(s: ConnectorState) -> ErrorCode:
    return s.error_code or ErrorCode.NO_ERROR


def _of(effects: tuple[fx.Effect, ...], kind: type) -> list:
    return [e for e in effects if isinstance(e, kind)]


# -- invariants every outcome must satisfy -----------------------------------------------------


def check_state(s: ConnectorState) -> None:
    """What must hold of any state the machine ever hands out."""
    tx, auth = s.transaction, s.authorization
    assert s.error_code != ErrorCode.NO_ERROR, "NoError is spelled error_code=None"
    assert s.status == derive_status(s)
    if s.finishing:
        assert s.plugged and tx is None, "Finishing is an EV still plugged after a transaction"
    if tx is not None:
        assert auth is None, "an idTag either waits or has become the transaction"
        assert s.reservation is None, "a transaction consumes (or never had) a reservation"
        assert s.operative, "ChangeAvailability Inoperative waits for the transaction to end"
        if tx.local_id is None:
            if not s.plugged or s.error_code is not None:
                # a transaction outlives its plug or a fault only as a stop awaiting the id
                assert tx.stop_reason is not None
        else:
            assert tx.stop_reason is None and tx.stop_id_tag is None, "stop was not sent"
            assert s.error_code is None, "a confirmed transaction runs"
            if not s.plugged:  # kept over an EV-side disconnect (StopTransactionOnEVSideDisconnect)
                assert s.status == Status.SUSPENDED_EV
        assert not tx.invalid or tx.local_id is not None, "only the CSMS refuses an idTag"
    else:
        assert s.scheduled_operative is None, "a scheduled availability outlived its transaction"
        assert not s.ev_suspended, "SuspendedEV without a transaction"
    if s.scheduled_operative is not None:
        assert s.scheduled_operative is False and s.operative, "only Inoperative is scheduled"
    if s.ev_suspended:
        assert s.plugged, "an unplugged EV cannot suspend"
    if auth is not None:
        assert s.error_code is None and s.operative, "an unusable connector keeps no idTag"
        if auth.pending:
            assert auth.expires_at is None, "ConnectionTimeOut starts once authorised"
        else:
            assert auth.expires_at is not None, "an authorised idTag waits ConnectionTimeOut"
            assert not s.plugged, "an authorised idTag with the EV plugged has started"
    if s.power_limit_W is not None:
        assert s.power_limit_W >= 0


def check_outcome(before: ConnectorState, event: object, o: Outcome) -> None:
    """The contract of ``transition`` for one event, whatever the event and state."""
    assert isinstance(o, Outcome)
    # physical facts and the passing of time cannot be refused, only impossible ones
    if isinstance(event, ev.PlugIn):
        assert o.accepted == (not before.plugged)
    elif isinstance(event, ev.Unplug):
        assert o.accepted == before.plugged
    elif isinstance(event, ev.Tick):
        assert o.accepted
    elif isinstance(event, ev.ClearFault):
        sources = {source for source, _ in before.faults}
        latched = {FaultSource.PANEL_ESTOP, FaultSource.WEB_ESTOP}
        if event.source is None:  # a person clears all but an engaged emergency stop
            assert o.accepted == bool(sources - latched)
            assert {s for s, _ in o.state.faults} == sources & latched
        else:
            assert o.accepted == (event.source in sources)
    elif isinstance(event, ev.Fault) and event.error_code != ErrorCode.NO_ERROR:
        assert o.accepted == (event.source not in {source for source, _ in before.faults})
    # faults are raised and cleared by source: at most one per source, status Faulted while any
    # is active, and the errorCode reported is the first-raised active one's
    sources_after = [source for source, _ in o.state.faults]
    assert len(sources_after) == len(set(sources_after)), "one fault per source"
    assert (o.state.status == Status.FAULTED) == bool(o.state.faults)
    assert o.state.error_code == (o.state.faults[0][1] if o.state.faults else None)
    if o.accepted and isinstance(event, ev.Fault):
        assert o.state.faults[: len(before.faults)] == before.faults, "a new fault goes last"

    if o.refused is not None:
        assert isinstance(o.refused, str) and o.refused.strip(), "a refusal gives a reason"
        assert o.state is before, "a refused event leaves the state untouched"
        assert o.effects == (), "a refused event has no effects"
        return

    after, effects = o.state, o.effects
    check_state(after)
    assert after.connector_id == before.connector_id
    assert all(e.connector_id == before.connector_id for e in effects)
    if after == before:
        assert effects == (), "an event that changes nothing says nothing"

    # StatusNotification iff the derived status or error code changed, after everything else
    reported = _of(effects, fx.StatusChanged)
    if (after.status, _error(after)) != (before.status, _error(before)):
        assert reported == [status(after.status, _error(after))]
        assert effects[-1] == reported[0]
    else:
        assert reported == []

    starts = _of(effects, fx.SendStartTransaction)
    stops = _of(effects, fx.SendStopTransaction)
    authorizes = _of(effects, fx.SendAuthorize)
    assert len(starts) + len(stops) <= 1, "one transaction message per event"
    assert len(authorizes) <= 1
    assert not (authorizes and starts)
    if before.error_code is not None or not before.operative:
        assert not starts and not authorizes, "a Faulted/Unavailable connector starts nothing"

    if starts:
        (start,) = starts
        assert before.transaction is None
        assert after.transaction is not None and after.transaction.local_id is None
        assert after.transaction.id_tag == start.id_tag
        assert after.plugged, "StartTransaction only with the EV plugged"
        assert after.authorization is None and after.reservation is None
        if start.reservation_id is not None:
            assert before.reservation is not None
            assert start.reservation_id == before.reservation.reservation_id
    elif before.transaction is None:
        assert after.transaction is None, "a transaction begins only with StartTransaction"

    if stops:
        (stop,) = stops
        assert before.transaction is not None, "StopTransaction needs a transaction"
        if before.local_id is not None:
            assert stop.local_id == before.local_id
        else:  # the stop waited for the id the CSMS has just given
            assert isinstance(event, ev.TransactionStarted)
            assert stop.local_id == event.local_id
        assert after.transaction is None
    elif before.transaction is not None and after.transaction is None:
        assert isinstance(event, ev.StartFailed), "a transaction ends only with StopTransaction"
        assert before.local_id is None
    if before.transaction is not None and after.transaction is not None:
        assert after.transaction.id_tag == before.transaction.id_tag
        assert after.transaction.started_at == before.transaction.started_at

    if authorizes:
        (auth,) = authorizes
        assert after.authorization is not None and after.authorization.pending
        assert after.authorization.id_tag == auth.id_tag


# -- a connector driven by a test, checking the contract at every step -------------------------


class Sim:
    def __init__(self, policy: Policy | None = None, *, now: float = T0) -> None:
        self.connector = Connector(CID, policy)
        self.now = now

    @property
    def state(self) -> ConnectorState:
        return self.connector.state

    @property
    def status(self) -> Status:
        return self.connector.status

    def __call__(self, event: ev.Event, *, at: float | None = None) -> tuple[fx.Effect, ...]:
        """Apply an event that must be accepted; return its effects."""
        if at is not None:
            self.now = at
        before = self.connector.state
        outcome = self.connector.handle(event, self.now)
        check_outcome(before, event, outcome)
        assert outcome.accepted, f"{event} refused in {before.status}: {outcome.refused}"
        return outcome.effects

    def refuse(self, event: object, *, because: str = "") -> str:
        """Apply an event that must be refused; return the reason."""
        before = self.connector.state
        outcome = self.connector.handle(event, self.now)  # type: ignore[arg-type]
        check_outcome(before, event, outcome)
        assert not outcome.accepted, f"{event} accepted in {before.status}: {outcome.effects}"
        assert self.connector.state is before
        assert because.lower() in (outcome.refused or "").lower()
        return outcome.refused or ""

    def run(self, *events: ev.Event) -> Sim:
        for event in events:
            self(event)
        return self


def charging(policy: Policy | None = None, *, tag: str = "A", tx_id: int = 1) -> Sim:
    """Plugged, remotely started (no Authorize under the default policy), confirmed: Charging."""
    sim = Sim(policy or Policy(authorize_remote=False))
    sim.run(ev.PlugIn(), ev.RemoteStart(tag))
    if sim.connector.policy.authorize_remote:
        sim(ev.AuthorizeResult(tag, "Accepted"))
    sim(ev.TransactionStarted(tx_id))
    assert sim.status == Status.CHARGING
    return sim


# ==============================================================================================
# 1. derive_status
# ==============================================================================================

_BASE = ConnectorState(CID)
_PENDING_AUTH = Authorization("A", remote=False, pending=True)
_WAITING_AUTH = Authorization("A", remote=True, pending=False, expires_at=T0 + TIMEOUT)
_TX_STARTING = Transaction("A", started_at=T0, remote=False)
_TX = Transaction("A", started_at=T0, remote=False, local_id=1)
_RESERVATION = Reservation(7, "A", RESERVED_UNTIL)
_PLUGGED = replace(_BASE, plugged=True)
_CHARGING = replace(_PLUGGED, transaction=_TX)

DERIVE_STATUS_TABLE: list[tuple[str, ConnectorState, Status]] = [
    # the base cases, one per status
    ("nothing going on", _BASE, Status.AVAILABLE),
    ("EV plugged, no idTag", _PLUGGED, Status.PREPARING),
    ("idTag awaiting Authorize", replace(_BASE, authorization=_PENDING_AUTH), Status.PREPARING),
    ("idTag waiting for a plug", replace(_BASE, authorization=_WAITING_AUTH), Status.PREPARING),
    ("StartTransaction unanswered", replace(_PLUGGED, transaction=_TX_STARTING), Status.PREPARING),
    ("transaction confirmed", _CHARGING, Status.CHARGING),
    ("EV stopped drawing", replace(_CHARGING, ev_suspended=True), Status.SUSPENDED_EV),
    ("limit 0 W", replace(_CHARGING, power_limit_W=0.0), Status.SUSPENDED_EVSE),
    ("transaction over, EV plugged", replace(_PLUGGED, finishing=True), Status.FINISHING),
    ("reserved", replace(_BASE, reservation=_RESERVATION), Status.RESERVED),
    ("inoperative", replace(_BASE, operative=False), Status.UNAVAILABLE),
    ("faulted", replace(_BASE, faults=_by_operator(ErrorCode.GROUND_FAILURE)), Status.FAULTED),
    # power limits that do not suspend
    ("limit above 0 W", replace(_CHARGING, power_limit_W=3_680.0), Status.CHARGING),
    ("limit removed", replace(_CHARGING, power_limit_W=None), Status.CHARGING),
    ("limit 0 W without transaction", replace(_BASE, power_limit_W=0.0), Status.AVAILABLE),
    ("limit 0 W, EV plugged", replace(_PLUGGED, power_limit_W=0.0), Status.PREPARING),
    ("limit 0 W, unconfirmed", replace(_PLUGGED, transaction=_TX_STARTING, power_limit_W=0.0),
     Status.PREPARING),
    # priority: Faulted > everything
    ("faulted beats inoperative",
     replace(_BASE, faults=_by_operator(ErrorCode.OTHER_ERROR), operative=False), Status.FAULTED),
    ("faulted beats transaction",
     replace(_CHARGING, faults=_by_operator(ErrorCode.OVER_CURRENT_FAILURE)), Status.FAULTED),
    ("faulted beats Finishing",
     replace(_PLUGGED, finishing=True, faults=_by_operator(ErrorCode.HIGH_TEMPERATURE)),
     Status.FAULTED),
    ("faulted beats Reserved",
     replace(_BASE, reservation=_RESERVATION, faults=_by_operator(ErrorCode.READER_FAILURE)),
     Status.FAULTED),
    # Unavailable > transaction and below
    ("inoperative beats transaction", replace(_CHARGING, operative=False), Status.UNAVAILABLE),
    ("inoperative beats Finishing",
     replace(_PLUGGED, finishing=True, operative=False), Status.UNAVAILABLE),
    ("inoperative beats waiting idTag",
     replace(_BASE, authorization=_WAITING_AUTH, operative=False), Status.UNAVAILABLE),
    ("inoperative beats Reserved",
     replace(_BASE, reservation=_RESERVATION, operative=False), Status.UNAVAILABLE),
    ("inoperative beats plugged", replace(_PLUGGED, operative=False), Status.UNAVAILABLE),
    ("Inoperative merely scheduled", replace(_CHARGING, scheduled_operative=False),
     Status.CHARGING),
    # transaction > Finishing > waiting idTag > Reserved > plugged
    ("transaction beats Finishing", replace(_CHARGING, finishing=True), Status.CHARGING),
    ("unconfirmed transaction beats Finishing",
     replace(_PLUGGED, transaction=_TX_STARTING, finishing=True), Status.PREPARING),
    ("transaction beats Reserved", replace(_CHARGING, reservation=_RESERVATION), Status.CHARGING),
    ("Finishing beats waiting idTag",
     replace(_PLUGGED, finishing=True, authorization=_PENDING_AUTH), Status.FINISHING),
    ("Finishing beats Reserved",
     replace(_PLUGGED, finishing=True, reservation=_RESERVATION), Status.FINISHING),
    ("waiting idTag beats Reserved",
     replace(_BASE, authorization=_WAITING_AUTH, reservation=_RESERVATION), Status.PREPARING),
    ("Reserved beats plugged", replace(_PLUGGED, reservation=_RESERVATION), Status.RESERVED),
    # within a transaction: unconfirmed/unplugged > SuspendedEV > SuspendedEVSE > Charging
    ("stop awaiting the id, EV gone",
     replace(_BASE, transaction=replace(_TX_STARTING, stop_reason=StopReason.EV_DISCONNECTED)),
     Status.PREPARING),
    ("unconfirmed beats SuspendedEV",
     replace(_PLUGGED, transaction=_TX_STARTING, ev_suspended=True), Status.PREPARING),
    ("SuspendedEV beats SuspendedEVSE",
     replace(_CHARGING, ev_suspended=True, power_limit_W=0.0), Status.SUSPENDED_EV),
]


@pytest.mark.parametrize(
    ("state", "expected"),
    [pytest.param(s, x, id=name) for name, s, x in DERIVE_STATUS_TABLE],
)
def test_derive_status(state: ConnectorState, expected: Status) -> None:
    assert derive_status(state) == expected
    assert state.status == expected


def test_derive_status_table_reaches_every_status() -> None:
    assert {expected for _, _, expected in DERIVE_STATUS_TABLE} == set(Status)


def test_transaction_statuses_are_the_energy_flowing_ones() -> None:
    assert frozenset({Status.CHARGING, Status.SUSPENDED_EV, Status.SUSPENDED_EVSE}) == (
        TRANSACTION_STATUSES
    )
    for _, state, expected in DERIVE_STATUS_TABLE:
        if expected in TRANSACTION_STATUSES:
            assert state.local_id is not None and state.plugged


def test_vocabulary_is_the_literal_ocpp_strings() -> None:
    assert [s.value for s in Status] == [
        "Available", "Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing",
        "Reserved", "Unavailable", "Faulted",
    ]
    assert ErrorCode.NO_ERROR == "NoError" and len(ErrorCode) == 16
    assert {r.value for r in StopReason} == {
        "EmergencyStop", "EVDisconnected", "HardReset", "Local", "Other", "PowerLoss", "Reboot",
        "Remote", "SoftReset", "UnlockCommand", "DeAuthorized",
    }


# ==============================================================================================
# 2. Happy paths: the OCPP 1.6 use cases, effect by effect
# ==============================================================================================


class TestLocalStart:
    """Start by idTag at the reader (OCPPAuthorizationEnabled: Authorize first)."""

    def test_plug_then_tag(self) -> None:
        sim = Sim(Policy(authorize_local=True))
        assert sim.status == Status.AVAILABLE
        assert sim(ev.PlugIn()) == (status(Status.PREPARING),)
        assert sim(ev.PresentTag("A")) == (authorize("A"),)
        assert sim.state.authorization == Authorization("A", remote=False, pending=True)
        assert sim(ev.AuthorizeResult("A", "Accepted")) == (start_tx("A"),)
        assert sim.state.transaction == Transaction("A", started_at=T0, remote=False)
        assert sim.status == Status.PREPARING, "Preparing until StartTransaction.conf"
        assert sim(ev.TransactionStarted(42)) == (status(Status.CHARGING),)
        assert sim.state.local_id == 42

    def test_tag_then_plug_within_connection_timeout(self) -> None:
        sim = Sim()
        assert sim(ev.PresentTag("A")) == (authorize("A"), status(Status.PREPARING))
        assert next_deadline(sim.state) is None, "no ConnectionTimeOut while Authorize pends"
        assert sim(ev.AuthorizeResult("A", "Accepted"), at=T0 + 1) == ()
        assert sim.state.authorization == Authorization(
            "A", remote=False, pending=False, expires_at=T0 + 1 + TIMEOUT
        )
        assert sim.connector.next_deadline() == T0 + 1 + TIMEOUT
        assert sim(ev.PlugIn(), at=T0 + 30) == (start_tx("A"),)
        assert sim.state.transaction == Transaction("A", started_at=T0 + 30, remote=False)
        assert next_deadline(sim.state) is None
        assert sim(ev.TransactionStarted(1)) == (status(Status.CHARGING),)

    @pytest.mark.parametrize("answer", ["Invalid", "Blocked", "Expired", "ConcurrentTx"])
    def test_authorize_rejected(self, answer: str) -> None:
        sim = Sim().run(ev.PlugIn(), ev.PresentTag("A"))
        effects = sim(ev.AuthorizeResult("A", answer))
        assert effects == (fx.AuthorizationEnded(CID, "A", f"CSMS answered {answer}"),)
        assert sim.status == Status.PREPARING and sim.state.authorization is None
        assert sim.state.transaction is None

    def test_authorize_rejected_before_plug(self) -> None:
        sim = Sim().run(ev.PresentTag("A"))
        effects = sim(ev.AuthorizeResult("A", "Invalid"))
        assert effects == (
            fx.AuthorizationEnded(CID, "A", "CSMS answered Invalid"),
            status(Status.AVAILABLE),
        )

    def test_new_session_from_finishing(self) -> None:
        """Finishing -> Preparing -> Charging when an idTag is presented again (F2)."""
        sim = charging()
        sim(ev.RemoteStop(1))
        assert sim.status == Status.FINISHING
        assert sim(ev.PresentTag("B")) == (authorize("B"),), "Finishing outranks the idTag"
        assert sim(ev.AuthorizeResult("B", "Accepted")) == (start_tx("B"), status(Status.PREPARING))
        assert sim(ev.TransactionStarted(2)) == (status(Status.CHARGING),)
        assert not sim.state.finishing


class TestFreeVend:
    """OCPPAuthorizationEnabled false: the idTag starts without asking the CSMS."""

    policy = Policy(authorize_local=False)

    def test_plug_then_tag(self) -> None:
        sim = Sim(self.policy)
        assert sim(ev.PlugIn()) == (status(Status.PREPARING),)
        assert sim(ev.PresentTag("A")) == (start_tx("A"),)
        assert sim(ev.TransactionStarted(1)) == (status(Status.CHARGING),)

    def test_tag_then_plug(self) -> None:
        sim = Sim(self.policy)
        assert sim(ev.PresentTag("A")) == (status(Status.PREPARING),)
        assert sim.state.authorization == Authorization("A", False, False, T0 + TIMEOUT)
        assert sim(ev.PlugIn()) == (start_tx("A"),)

    def test_remote_start_still_obeys_authorize_remote(self) -> None:
        sim = Sim(Policy(authorize_local=False, authorize_remote=True)).run(ev.PlugIn())
        assert sim(ev.RemoteStart("A")) == (authorize("A"),)


class TestRemoteStart:
    """RemoteStartTransaction, with and without AuthorizeRemoteTxRequests."""

    def test_plugged_without_authorize(self) -> None:
        sim = Sim(Policy(authorize_remote=False)).run(ev.PlugIn())
        assert sim(ev.RemoteStart("A")) == (start_tx("A"),)
        assert sim.state.transaction == Transaction("A", started_at=T0, remote=True)
        assert sim(ev.TransactionStarted(7)) == (status(Status.CHARGING),)

    def test_plugged_with_authorize(self) -> None:
        sim = Sim(Policy(authorize_remote=True)).run(ev.PlugIn())
        assert sim(ev.RemoteStart("A")) == (authorize("A"),)
        assert sim.state.authorization == Authorization("A", remote=True, pending=True)
        assert sim(ev.AuthorizeResult("A", "Accepted")) == (start_tx("A"),)
        assert sim.state.transaction is not None and sim.state.transaction.remote
        assert sim(ev.TransactionStarted(7)) == (status(Status.CHARGING),)

    def test_with_authorize_rejected(self) -> None:
        sim = Sim(Policy(authorize_remote=True)).run(ev.PlugIn(), ev.RemoteStart("A"))
        assert sim(ev.AuthorizeResult("A", "Blocked")) == (
            fx.AuthorizationEnded(CID, "A", "CSMS answered Blocked"),
        )
        assert sim.state.transaction is None

    def test_before_plug_then_plug(self) -> None:
        sim = Sim()
        assert sim(ev.RemoteStart("A")) == (status(Status.PREPARING),)
        assert sim.state.authorization == Authorization("A", True, False, T0 + TIMEOUT)
        assert sim(ev.PlugIn(), at=T0 + 10) == (start_tx("A"),)
        assert sim.state.transaction == Transaction("A", started_at=T0 + 10, remote=True)
        assert sim(ev.TransactionStarted(3)) == (status(Status.CHARGING),)

    def test_with_authorize_before_plug_then_plug(self) -> None:
        sim = Sim(Policy(authorize_remote=True))
        assert sim(ev.RemoteStart("A")) == (authorize("A"), status(Status.PREPARING))
        assert sim(ev.AuthorizeResult("A", "Accepted")) == ()
        assert sim(ev.PlugIn()) == (start_tx("A"),)
        assert sim.state.transaction is not None and sim.state.transaction.remote

    def test_while_finishing(self) -> None:
        sim = charging()
        sim(ev.EndTransaction(StopReason.LOCAL))
        assert sim(ev.RemoteStart("B")) == (start_tx("B"), status(Status.PREPARING))


class TestStop:
    def test_local_stop_by_the_same_tag(self) -> None:
        sim = charging(tag="A", tx_id=5)
        assert sim(ev.PresentTag("A")) == (
            stop_tx(5, StopReason.LOCAL, "A"),
            status(Status.FINISHING),
        )
        assert sim.state.transaction is None and sim.state.finishing
        assert sim(ev.Unplug()) == (status(Status.AVAILABLE),)
        assert sim.state == ConnectorState(CID)

    def test_remote_stop(self) -> None:
        sim = charging(tx_id=5)
        assert sim(ev.RemoteStop(5)) == (stop_tx(5, StopReason.REMOTE), status(Status.FINISHING))
        assert sim(ev.Unplug()) == (status(Status.AVAILABLE),)

    @pytest.mark.parametrize(
        "reason", [StopReason.HARD_RESET, StopReason.SOFT_RESET, StopReason.REBOOT,
                   StopReason.POWER_LOSS, StopReason.UNLOCK_COMMAND, StopReason.OTHER],
    )
    def test_end_transaction_for_an_outside_reason(self, reason: StopReason) -> None:
        sim = charging(tx_id=5)
        assert sim(ev.EndTransaction(reason)) == (stop_tx(5, reason), status(Status.FINISHING))

    def test_end_transaction_carries_its_id_tag(self) -> None:
        sim = charging(tx_id=5)
        effects = sim(ev.EndTransaction(StopReason.LOCAL, "B"))
        assert effects[0] == stop_tx(5, StopReason.LOCAL, "B")

    @pytest.mark.parametrize(
        ("suspension", "before"),
        [((), Status.CHARGING), ((ev.EvSuspend(),), Status.SUSPENDED_EV),
         ((ev.SetPowerLimit(0),), Status.SUSPENDED_EVSE)],
    )
    def test_unplug_while_charging_goes_straight_to_available(
        self, suspension: tuple[ev.Event, ...], before: Status
    ) -> None:
        sim = charging(tx_id=5).run(*suspension)
        assert sim.status == before
        assert sim(ev.Unplug()) == (
            stop_tx(5, StopReason.EV_DISCONNECTED),
            status(Status.AVAILABLE),
        )
        assert sim.state.transaction is None and not sim.state.finishing
        assert not sim.state.ev_suspended

    def test_start_transaction_answered_invalid_is_deauthorized(self) -> None:
        sim = Sim().run(ev.PlugIn(), ev.PresentTag("A"), ev.AuthorizeResult("A", "Accepted"))
        assert sim(ev.TransactionStarted(9, "Invalid")) == (
            stop_tx(9, StopReason.DE_AUTHORIZED),
            status(Status.FINISHING),
        )
        assert sim.state.transaction is None

    @pytest.mark.parametrize("answer", ["Blocked", "Expired", "ConcurrentTx"])
    def test_start_transaction_answered_otherwise_is_deauthorized(self, answer: str) -> None:
        sim = Sim().run(ev.PlugIn(), ev.RemoteStart("A"))
        assert sim(ev.TransactionStarted(9, answer))[0] == stop_tx(9, StopReason.DE_AUTHORIZED)

    def test_local_stop_before_the_transaction_id_is_known(self) -> None:
        sim = Sim().run(ev.PlugIn(), ev.RemoteStart("A"))
        assert sim(ev.PresentTag("A")) == (), "StopTransaction needs the id: wait for it"
        assert sim.state.transaction is not None
        assert sim.state.transaction.stop_reason == StopReason.LOCAL
        assert sim(ev.TransactionStarted(4)) == (
            stop_tx(4, StopReason.LOCAL, "A"),
            status(Status.FINISHING),
        )

    def test_unplug_before_the_transaction_id_is_known(self) -> None:
        sim = Sim().run(ev.PlugIn(), ev.RemoteStart("A"))
        assert sim(ev.Unplug()) == ()
        assert sim.status == Status.PREPARING, "still a transaction until it is stopped"
        assert sim(ev.TransactionStarted(4)) == (
            stop_tx(4, StopReason.EV_DISCONNECTED),
            status(Status.AVAILABLE),
        )

    def test_first_stop_reason_wins_while_the_id_is_unknown(self) -> None:
        sim = Sim().run(ev.PlugIn(), ev.RemoteStart("A"), ev.PresentTag("A"))
        assert sim(ev.EndTransaction(StopReason.SOFT_RESET)) == ()
        assert sim(ev.Unplug()) == ()
        assert sim(ev.TransactionStarted(4))[0] == stop_tx(4, StopReason.LOCAL, "A")

    def test_stop_before_the_id_then_answered_invalid(self) -> None:
        sim = Sim().run(ev.PlugIn(), ev.RemoteStart("A"), ev.EndTransaction(StopReason.OTHER))
        assert sim(ev.TransactionStarted(4, "Invalid"))[0] == stop_tx(4, StopReason.DE_AUTHORIZED)

    def test_start_failed(self) -> None:
        sim = Sim().run(ev.PlugIn(), ev.PresentTag("A"), ev.AuthorizeResult("A", "Accepted"))
        assert sim(ev.StartFailed("timeout")) == (
            fx.AuthorizationEnded(CID, "A", "StartTransaction failed: timeout"),
        )
        assert sim.state.transaction is None and not sim.state.finishing
        assert sim.status == Status.PREPARING
        assert sim(ev.Unplug()) == (status(Status.AVAILABLE),)

    def test_start_failed_after_the_ev_left(self) -> None:
        sim = Sim().run(ev.PlugIn(), ev.RemoteStart("A"), ev.Unplug())
        assert sim(ev.StartFailed("offline")) == (
            fx.AuthorizationEnded(CID, "A", "StartTransaction failed: offline"),
            status(Status.AVAILABLE),
        )


class TestFault:
    def test_faults_are_raised_and_cleared_by_source(self) -> None:
        sim = charging(tx_id=3)
        meter = ev.Fault(ErrorCode.POWER_METER_FAILURE, source=FaultSource.METER)
        assert sim(meter) == (
            stop_tx(3, StopReason.OTHER),
            status(Status.FAULTED, ErrorCode.POWER_METER_FAILURE),
        )
        estop = ev.Fault(ErrorCode.OTHER_ERROR, StopReason.EMERGENCY_STOP, FaultSource.WEB_ESTOP)
        assert sim(estop) == (), "still Faulted, still the first-raised fault's errorCode"
        assert sim.state.faults == (
            (FaultSource.METER, ErrorCode.POWER_METER_FAILURE),
            (FaultSource.WEB_ESTOP, ErrorCode.OTHER_ERROR),
        )
        assert sim(ev.ClearFault(FaultSource.METER)) == (
            status(Status.FAULTED, ErrorCode.OTHER_ERROR),
        ), "the meter's fault went; the e-stop's is reported now"
        assert sim(ev.ClearFault(FaultSource.WEB_ESTOP)) == (status(Status.FINISHING),)

    def test_a_source_clears_only_its_own_fault(self) -> None:
        sim = Sim()
        sim(ev.Fault(ErrorCode.GROUND_FAILURE))  # the operator's
        outcome = sim.connector.handle(ev.ClearFault(FaultSource.PANEL_ESTOP), sim.now)
        assert outcome.refused == "no fault raised by panel-estop"
        assert sim.state.error_code == ErrorCode.GROUND_FAILURE

    def test_a_source_raises_one_fault_at_a_time(self) -> None:
        sim = Sim()
        sim(ev.Fault(ErrorCode.HIGH_TEMPERATURE, source=FaultSource.METER))
        again = ev.Fault(ErrorCode.POWER_METER_FAILURE, source=FaultSource.METER)
        outcome = sim.connector.handle(again, sim.now)
        assert outcome.refused == "already faulted by meter (HighTemperature)"

    def test_a_person_clears_every_fault_but_an_engaged_emergency_stop(self) -> None:
        sim = Sim()
        sim(ev.Fault(ErrorCode.POWER_METER_FAILURE, source=FaultSource.METER))
        sim(ev.Fault(ErrorCode.GROUND_FAILURE))
        sim(ev.Fault(ErrorCode.OTHER_ERROR, source=FaultSource.PANEL_ESTOP))
        assert sim(ev.ClearFault()) == (status(Status.FAULTED, ErrorCode.OTHER_ERROR),)
        assert sim.state.faults == ((FaultSource.PANEL_ESTOP, ErrorCode.OTHER_ERROR),)
        outcome = sim.connector.handle(ev.ClearFault(), sim.now)
        assert outcome.refused == "the emergency stop is engaged (panel-estop): release it to clear"
        assert sim(ev.ClearFault(FaultSource.PANEL_ESTOP)) == (status(Status.AVAILABLE),)

    def test_a_person_clears_every_fault(self) -> None:
        sim = Sim()
        sim(ev.Fault(ErrorCode.POWER_METER_FAILURE, source=FaultSource.METER))
        sim(ev.Fault(ErrorCode.GROUND_FAILURE))
        assert sim(ev.ClearFault()) == (status(Status.AVAILABLE),)
        assert sim.state.faults == ()

    def test_fault_while_charging_stops_with_the_fault_reason(self) -> None:
        sim = charging(tx_id=3)
        fault = ev.Fault(ErrorCode.GROUND_FAILURE, StopReason.EMERGENCY_STOP)
        assert sim(fault) == (
            stop_tx(3, StopReason.EMERGENCY_STOP),
            status(Status.FAULTED, ErrorCode.GROUND_FAILURE),
        )
        assert sim.state.transaction is None
        assert sim(ev.ClearFault()) == (status(Status.FINISHING),), "the EV is still plugged"
        assert sim(ev.Unplug()) == (status(Status.AVAILABLE),)

    def test_fault_cleared_after_unplug(self) -> None:
        sim = charging(tx_id=3)
        sim(ev.Fault(ErrorCode.OVER_CURRENT_FAILURE))
        assert sim(ev.Unplug()) == (), "Faulted stays Faulted"
        assert sim(ev.ClearFault()) == (status(Status.AVAILABLE),)

    def test_fault_default_reason_is_other(self) -> None:
        sim = charging(tx_id=3)
        assert sim(ev.Fault())[0] == stop_tx(3, StopReason.OTHER)

    def test_fault_idle(self) -> None:
        sim = Sim()
        assert sim(ev.Fault(ErrorCode.HIGH_TEMPERATURE)) == (
            status(Status.FAULTED, ErrorCode.HIGH_TEMPERATURE),
        )
        assert sim(ev.ClearFault()) == (status(Status.AVAILABLE),)

    def test_fault_drops_a_waiting_id_tag(self) -> None:
        sim = Sim().run(ev.RemoteStart("A"))
        assert sim(ev.Fault(ErrorCode.READER_FAILURE)) == (
            fx.AuthorizationEnded(CID, "A", "connector faulted"),
            status(Status.FAULTED, ErrorCode.READER_FAILURE),
        )
        assert sim(ev.ClearFault()) == (status(Status.AVAILABLE),)
        assert sim(ev.PlugIn()) == (status(Status.PREPARING),), "the idTag is gone"

    def test_fault_before_the_transaction_id_is_known(self) -> None:
        sim = Sim().run(ev.PlugIn(), ev.RemoteStart("A"))
        fault = ev.Fault(ErrorCode.POWER_SWITCH_FAILURE, StopReason.EMERGENCY_STOP)
        assert sim(fault) == (status(Status.FAULTED, ErrorCode.POWER_SWITCH_FAILURE),)
        assert sim(ev.TransactionStarted(8)) == (stop_tx(8, StopReason.EMERGENCY_STOP),)
        assert sim(ev.ClearFault()) == (status(Status.FINISHING),)

    def test_ev_events_while_faulted_are_facts(self) -> None:
        sim = Sim().run(ev.Fault(ErrorCode.WEAK_SIGNAL))
        assert sim(ev.PlugIn()) == ()
        assert sim(ev.ClearFault()) == (status(Status.PREPARING),)


class TestSuspension:
    def test_power_limit_zero_suspends_evse_and_back(self) -> None:
        sim = charging()
        assert sim(ev.SetPowerLimit(0)) == (status(Status.SUSPENDED_EVSE),)
        assert sim(ev.SetPowerLimit(0)) == (), "same limit again changes nothing"
        assert sim(ev.SetPowerLimit(7_400)) == (status(Status.CHARGING),)
        assert sim(ev.SetPowerLimit(0.0)) == (status(Status.SUSPENDED_EVSE),)
        assert sim(ev.SetPowerLimit(None)) == (status(Status.CHARGING),)

    def test_power_limit_zero_before_the_start(self) -> None:
        sim = Sim().run(ev.SetPowerLimit(0), ev.PlugIn(), ev.RemoteStart("A"))
        assert sim(ev.TransactionStarted(1)) == (status(Status.SUSPENDED_EVSE),)

    def test_ev_suspend_and_resume(self) -> None:
        sim = charging()
        assert sim(ev.EvSuspend()) == (status(Status.SUSPENDED_EV),)
        assert sim(ev.EvResume()) == (status(Status.CHARGING),)

    def test_ev_suspended_outranks_evse_suspended(self) -> None:
        sim = charging()
        assert sim(ev.SetPowerLimit(0)) == (status(Status.SUSPENDED_EVSE),)
        assert sim(ev.EvSuspend()) == (status(Status.SUSPENDED_EV),)
        assert sim(ev.EvResume()) == (status(Status.SUSPENDED_EVSE),)

    def test_ev_suspended_before_confirmation(self) -> None:
        sim = Sim().run(ev.PlugIn(), ev.RemoteStart("A"))
        assert sim(ev.EvSuspend()) == ()
        assert sim(ev.TransactionStarted(1)) == (status(Status.SUSPENDED_EV),)

    def test_suspension_ends_with_the_transaction(self) -> None:
        sim = charging(tx_id=2)
        sim(ev.EvSuspend())
        assert sim(ev.RemoteStop(2)) == (stop_tx(2, StopReason.REMOTE), status(Status.FINISHING))
        assert not sim.state.ev_suspended
        sim.refuse(ev.EvResume())


class TestChangeAvailability:
    def test_inoperative_idle_and_back(self) -> None:
        sim = Sim()
        assert sim(ev.ChangeAvailability(False)) == (status(Status.UNAVAILABLE),)
        assert sim(ev.ChangeAvailability(False)) == ()
        assert sim(ev.PlugIn()) == (), "Unavailable outranks plugged"
        assert sim(ev.ChangeAvailability(True)) == (status(Status.PREPARING),)

    def test_inoperative_during_a_transaction_is_scheduled(self) -> None:
        sim = charging(tx_id=2)
        assert sim(ev.ChangeAvailability(False)) == (), "Scheduled: the transaction goes on"
        assert sim.status == Status.CHARGING and sim.state.scheduled_operative is False
        assert sim(ev.RemoteStop(2)) == (stop_tx(2, StopReason.REMOTE), status(Status.UNAVAILABLE))
        assert sim.state.operative is False and sim.state.scheduled_operative is None
        assert sim(ev.Unplug()) == ()
        assert sim(ev.ChangeAvailability(True)) == (status(Status.AVAILABLE),)

    def test_scheduled_inoperative_applied_when_unplugged(self) -> None:
        sim = charging(tx_id=2).run(ev.ChangeAvailability(False))
        assert sim(ev.Unplug()) == (
            stop_tx(2, StopReason.EV_DISCONNECTED),
            status(Status.UNAVAILABLE),
        )

    def test_scheduled_inoperative_applied_after_a_fault(self) -> None:
        sim = charging(tx_id=2).run(ev.ChangeAvailability(False))
        sim(ev.Fault(ErrorCode.OTHER_ERROR))
        assert sim(ev.ClearFault()) == (status(Status.UNAVAILABLE),)

    def test_scheduled_inoperative_applied_when_start_fails(self) -> None:
        """The transaction that the change waited for ended: nothing is left to wait for."""
        sim = Sim().run(ev.PlugIn(), ev.RemoteStart("A"), ev.ChangeAvailability(False))
        assert sim.state.scheduled_operative is False
        assert sim(ev.StartFailed("timeout")) == (
            fx.AuthorizationEnded(CID, "A", "StartTransaction failed: timeout"),
            status(Status.UNAVAILABLE),
        )
        assert sim.state.scheduled_operative is None
        sim.refuse(ev.PresentTag("A"), because="unavailable")

    def test_scheduled_inoperative_cancelled_by_operative(self) -> None:
        sim = charging(tx_id=2).run(ev.ChangeAvailability(False))
        assert sim(ev.ChangeAvailability(True)) == ()
        assert sim.state.scheduled_operative is None
        assert sim(ev.RemoteStop(2))[-1] == status(Status.FINISHING)

    def test_inoperative_drops_a_waiting_id_tag(self) -> None:
        sim = Sim().run(ev.PresentTag("A"))
        assert sim(ev.ChangeAvailability(False)) == (
            fx.AuthorizationEnded(CID, "A", "connector made unavailable"),
            status(Status.UNAVAILABLE),
        )
        sim.refuse(ev.AuthorizeResult("A", "Accepted"), because="no Authorize pending")

    def test_inoperative_while_finishing(self) -> None:
        sim = charging(tx_id=2).run(ev.RemoteStop(2))
        assert sim(ev.ChangeAvailability(False)) == (status(Status.UNAVAILABLE),)
        assert sim(ev.ChangeAvailability(True)) == (status(Status.FINISHING),)


class TestReservation:
    """ReserveNow / CancelReservation; expiry is the machine's Tick."""

    def test_reserved_tag_starts_with_the_reservation_id(self) -> None:
        sim = Sim()
        assert sim(ev.Reserve(7, "A", RESERVED_UNTIL)) == (status(Status.RESERVED),)
        assert sim.connector.next_deadline() == RESERVED_UNTIL
        sim.refuse(ev.PresentTag("B"), because="reserved for another idTag")
        sim.refuse(ev.RemoteStart("B"), because="reserved for another idTag")
        assert sim(ev.PresentTag("A")) == (authorize("A"), status(Status.PREPARING))
        assert sim(ev.AuthorizeResult("A", "Accepted")) == ()
        assert sim.state.reservation is not None, "held until the transaction starts"
        assert sim(ev.PlugIn()) == (start_tx("A", 7),)
        assert sim.state.reservation is None
        assert sim(ev.TransactionStarted(1)) == (status(Status.CHARGING),)

    def test_reserved_tag_after_the_ev_plugged(self) -> None:
        sim = Sim().run(ev.Reserve(7, "A", RESERVED_UNTIL))
        assert sim(ev.PlugIn()) == (), "the EV is plugged, the connector stays Reserved"
        assert sim.status == Status.RESERVED
        sim.refuse(ev.PresentTag("B"), because="reserved")
        assert sim(ev.PresentTag("A")) == (authorize("A"), status(Status.PREPARING))
        assert sim(ev.AuthorizeResult("A", "Accepted")) == (start_tx("A", 7),)

    def test_remote_start_for_the_reserved_tag(self) -> None:
        sim = Sim().run(ev.Reserve(7, "A", RESERVED_UNTIL), ev.PlugIn())
        assert sim(ev.RemoteStart("A")) == (start_tx("A", 7), status(Status.PREPARING))

    def test_reserved_tag_rejected_by_the_csms_keeps_the_reservation(self) -> None:
        sim = Sim().run(ev.Reserve(7, "A", RESERVED_UNTIL), ev.PresentTag("A"))
        assert sim(ev.AuthorizeResult("A", "Blocked")) == (
            fx.AuthorizationEnded(CID, "A", "CSMS answered Blocked"),
            status(Status.RESERVED),
        )

    def test_parent_id_tag_admits_a_sibling_tag(self) -> None:
        """ReserveNow with parentIdTag: any idTag whose IdTagInfo names that parent may use it."""
        sim = Sim()
        assert sim(ev.Reserve(8, "B", RESERVED_UNTIL, parent_id_tag="P")) == (
            status(Status.RESERVED),
        )
        assert sim(ev.PresentTag("C")) == (authorize("C"), status(Status.PREPARING))
        assert sim(ev.AuthorizeResult("C", "Accepted", parent_id_tag="P")) == ()
        assert sim(ev.PlugIn()) == (start_tx("C", 8),)

    def test_parent_id_tag_of_another_family_is_turned_away(self) -> None:
        sim = Sim().run(ev.Reserve(8, "B", RESERVED_UNTIL, "P"), ev.PlugIn(), ev.PresentTag("C"))
        assert sim(ev.AuthorizeResult("C", "Accepted", parent_id_tag="Q")) == (
            fx.AuthorizationEnded(CID, "C", "reserved for another idTag (reservation 8)"),
            status(Status.RESERVED),
        )
        assert sim.state.reservation == Reservation(8, "B", RESERVED_UNTIL, "P")
        assert sim.state.transaction is None

    def test_parent_id_tag_needs_authorize_even_in_free_vend(self) -> None:
        sim = Sim(Policy(authorize_local=False, authorize_remote=False))
        sim.run(ev.Reserve(8, "B", RESERVED_UNTIL, "P"), ev.PlugIn())
        assert sim(ev.PresentTag("C")) == (authorize("C"), status(Status.PREPARING))
        assert sim(ev.AuthorizeResult("C", "Accepted", "P")) == (start_tx("C", 8),)
        # and a remote start for a sibling likewise
        sim = Sim(Policy(authorize_remote=False))
        sim.run(ev.Reserve(8, "B", RESERVED_UNTIL, "P"), ev.PlugIn())
        assert sim(ev.RemoteStart("C")) == (authorize("C"), status(Status.PREPARING))
        assert sim(ev.AuthorizeResult("C", "Accepted", "P")) == (start_tx("C", 8),)

    def test_reserved_tag_itself_needs_no_parent(self) -> None:
        sim = Sim(Policy(authorize_local=False)).run(ev.Reserve(8, "B", RESERVED_UNTIL, "P"))
        sim(ev.PlugIn())
        assert sim(ev.PresentTag("B")) == (start_tx("B", 8), status(Status.PREPARING))

    def test_expiry_by_tick(self) -> None:
        sim = Sim().run(ev.Reserve(7, "A", RESERVED_UNTIL))
        assert sim(ev.Tick(), at=RESERVED_UNTIL - 0.001) == ()
        assert sim.status == Status.RESERVED
        assert sim(ev.Tick(), at=RESERVED_UNTIL) == (
            fx.ReservationEnded(CID, 7, "expired"),
            status(Status.AVAILABLE),
        )
        assert sim.connector.next_deadline() is None

    def test_expiry_while_plugged(self) -> None:
        sim = Sim().run(ev.Reserve(7, "A", RESERVED_UNTIL), ev.PlugIn())
        assert sim(ev.Tick(), at=LATE) == (
            fx.ReservationEnded(CID, 7, "expired"),
            status(Status.PREPARING),
        )

    def test_expiry_while_the_reserved_tag_waits_for_its_plug(self) -> None:
        sim = Sim().run(ev.Reserve(7, "A", T0 + 10), ev.RemoteStart("A"))
        assert sim(ev.Tick(), at=T0 + 10) == (fx.ReservationEnded(CID, 7, "expired"),)
        assert sim(ev.PlugIn()) == (start_tx("A"),), "no reservation left to name"

    def test_cancel(self) -> None:
        sim = Sim().run(ev.Reserve(7, "A", RESERVED_UNTIL))
        sim.refuse(ev.CancelReservation(8), because="no reservation 8")
        assert sim(ev.CancelReservation(7)) == (
            fx.ReservationEnded(CID, 7, "cancelled"),
            status(Status.AVAILABLE),
        )
        sim.refuse(ev.CancelReservation(7), because="no reservation 7")

    def test_same_reservation_id_replaces(self) -> None:
        sim = Sim().run(ev.Reserve(7, "A", RESERVED_UNTIL))
        assert sim(ev.Reserve(7, "B", RESERVED_UNTIL + 60)) == ()
        assert sim.state.reservation == Reservation(7, "B", RESERVED_UNTIL + 60)
        sim.refuse(ev.Reserve(9, "C", RESERVED_UNTIL), because="already reserved")

    def test_reservation_survives_a_fault(self) -> None:
        sim = Sim().run(ev.Reserve(7, "A", RESERVED_UNTIL))
        assert sim(ev.Fault(ErrorCode.OTHER_ERROR)) == (
            status(Status.FAULTED, ErrorCode.OTHER_ERROR),
        )
        assert sim(ev.ClearFault()) == (status(Status.RESERVED),)


class TestConnectionTimeOut:
    def test_authorised_tag_expires_without_a_plug(self) -> None:
        sim = Sim(Policy(connection_timeout_s=30))
        sim.run(ev.PresentTag("A"), ev.AuthorizeResult("A", "Accepted"))
        deadline = T0 + 30
        assert sim.connector.next_deadline() == deadline
        assert sim(ev.Tick(), at=deadline - 0.5) == ()
        assert sim(ev.Tick(), at=deadline) == (
            fx.AuthorizationEnded(CID, "A", "no EV plugged in within ConnectionTimeOut"),
            status(Status.AVAILABLE),
        )
        assert sim.connector.next_deadline() is None
        assert sim(ev.PlugIn()) == (status(Status.PREPARING),), "too late: nothing starts"

    def test_remote_start_expires_too(self) -> None:
        sim = Sim().run(ev.RemoteStart("A"))
        assert next_deadline(sim.state) == T0 + TIMEOUT
        assert sim(ev.Tick(), at=LATE) == (
            fx.AuthorizationEnded(CID, "A", "no EV plugged in within ConnectionTimeOut"),
            status(Status.AVAILABLE),
        )

    def test_timeout_with_a_reservation_falls_back_to_reserved(self) -> None:
        sim = Sim().run(ev.Reserve(7, "A", RESERVED_UNTIL), ev.RemoteStart("A"))
        assert sim.connector.next_deadline() == T0 + TIMEOUT, "the earliest deadline"
        effects = sim(ev.Tick(), at=T0 + TIMEOUT)
        assert effects[-1] == status(Status.RESERVED)
        assert sim.connector.next_deadline() == RESERVED_UNTIL

    def test_presenting_the_tag_again_cancels(self) -> None:
        sim = Sim().run(ev.PresentTag("A"), ev.AuthorizeResult("A", "Accepted"))
        assert sim(ev.PresentTag("A")) == (
            fx.AuthorizationEnded(CID, "A", "cancelled by presenting the tag again"),
            status(Status.AVAILABLE),
        )

    def test_plug_within_the_timeout_clears_the_deadline(self) -> None:
        sim = Sim().run(ev.RemoteStart("A"))
        sim(ev.PlugIn(), at=T0 + TIMEOUT - 1)
        assert next_deadline(sim.state) is None
        assert sim(ev.Tick(), at=LATE) == ()
        assert sim.state.transaction is not None


def test_next_deadline_is_none_when_nothing_waits() -> None:
    assert next_deadline(ConnectorState(CID)) is None
    assert next_deadline(charging().state) is None
    assert next_deadline(Sim().run(ev.PresentTag("A")).state) is None


def test_connector_wraps_transition() -> None:
    connector = Connector(3)
    assert connector.connector_id == 3 and connector.policy == Policy()
    assert connector.status == Status.AVAILABLE
    outcome = connector.handle(ev.PlugIn(), T0)
    assert outcome == transition(ConnectorState(3), ev.PlugIn(), Policy(), T0)
    assert outcome.effects == (fx.StatusChanged(3, Status.PREPARING),)
    assert connector.state is outcome.state
    refused = connector.handle(ev.PlugIn(), T0)
    assert not refused.accepted and connector.state is outcome.state


# ==============================================================================================
# 3. Refusals: every event against every state
# ==============================================================================================


class Stimulus(NamedTuple):
    event: ev.Event
    at: float = T0


#: One or more concrete events of every type, valid somewhere and invalid elsewhere.
EVENTS: dict[str, Stimulus] = {
    "PlugIn": Stimulus(ev.PlugIn()),
    "Unplug": Stimulus(ev.Unplug()),
    "PresentTag(A)": Stimulus(ev.PresentTag("A")),
    "PresentTag(B)": Stimulus(ev.PresentTag("B")),
    "PresentTag(C)": Stimulus(ev.PresentTag("C")),
    "AuthorizeResult(A,Accepted)": Stimulus(ev.AuthorizeResult("A", "Accepted")),
    "AuthorizeResult(A,Invalid)": Stimulus(ev.AuthorizeResult("A", "Invalid")),
    "AuthorizeResult(B,Accepted)": Stimulus(ev.AuthorizeResult("B", "Accepted")),
    "AuthorizeResult(C,Accepted,parent=P)": Stimulus(ev.AuthorizeResult("C", "Accepted", "P")),
    "RemoteStart(A)": Stimulus(ev.RemoteStart("A")),
    "RemoteStart(B)": Stimulus(ev.RemoteStart("B")),
    "RemoteStop(1)": Stimulus(ev.RemoteStop(1)),
    "RemoteStop(2)": Stimulus(ev.RemoteStop(2)),
    "TransactionStarted(1)": Stimulus(ev.TransactionStarted(1)),
    "TransactionStarted(1,Invalid)": Stimulus(ev.TransactionStarted(1, "Invalid")),
    "StartFailed": Stimulus(ev.StartFailed("timeout")),
    "Fault": Stimulus(ev.Fault(ErrorCode.GROUND_FAILURE, StopReason.EMERGENCY_STOP)),
    "Fault(NoError)": Stimulus(ev.Fault(ErrorCode.NO_ERROR)),
    "ClearFault": Stimulus(ev.ClearFault()),
    "EndTransaction(SoftReset)": Stimulus(ev.EndTransaction(StopReason.SOFT_RESET)),
    "EvSuspend": Stimulus(ev.EvSuspend()),
    "EvResume": Stimulus(ev.EvResume()),
    "SetPowerLimit(0)": Stimulus(ev.SetPowerLimit(0)),
    "SetPowerLimit(11000)": Stimulus(ev.SetPowerLimit(11_000)),
    "SetPowerLimit(None)": Stimulus(ev.SetPowerLimit(None)),
    "SetPowerLimit(-1)": Stimulus(ev.SetPowerLimit(-1)),
    "ChangeAvailability(Inoperative)": Stimulus(ev.ChangeAvailability(False)),
    "ChangeAvailability(Operative)": Stimulus(ev.ChangeAvailability(True)),
    "Reserve(7,A)": Stimulus(ev.Reserve(7, "A", RESERVED_UNTIL)),
    "Reserve(8,B,parent=P)": Stimulus(ev.Reserve(8, "B", RESERVED_UNTIL, "P")),
    "CancelReservation(7)": Stimulus(ev.CancelReservation(7)),
    "Tick": Stimulus(ev.Tick()),
    "Tick(late)": Stimulus(ev.Tick(), LATE),
}

#: Named reachable states (default Policy: Authorize local idTags, not remote ones), each as
#: the events that reach it from Available. Together they show every status.
STATES: dict[str, tuple[str, ...]] = {
    "Available": (),
    "Preparing:plugged": ("PlugIn",),
    "Preparing:authorizing": ("PresentTag(A)",),
    "Preparing:plugged+authorizing": ("PlugIn", "PresentTag(A)"),
    "Preparing:awaiting-plug": ("RemoteStart(A)",),
    "Preparing:starting": ("PlugIn", "RemoteStart(A)"),
    "Preparing:stop-awaiting-id": ("PlugIn", "RemoteStart(A)", "PresentTag(A)"),
    "Preparing:unplugged-stop-awaiting-id": ("PlugIn", "RemoteStart(A)", "Unplug"),
    "Charging": ("PlugIn", "RemoteStart(A)", "TransactionStarted(1)"),
    "Charging:inoperative-scheduled": (
        "PlugIn", "RemoteStart(A)", "TransactionStarted(1)", "ChangeAvailability(Inoperative)",
    ),
    "SuspendedEV": ("PlugIn", "RemoteStart(A)", "TransactionStarted(1)", "EvSuspend"),
    "SuspendedEVSE": ("PlugIn", "RemoteStart(A)", "TransactionStarted(1)", "SetPowerLimit(0)"),
    "Finishing": ("PlugIn", "RemoteStart(A)", "TransactionStarted(1)", "RemoteStop(1)"),
    "Reserved": ("Reserve(7,A)",),
    "Reserved:plugged": ("Reserve(7,A)", "PlugIn"),
    "Reserved:parent": ("Reserve(8,B,parent=P)",),
    "Unavailable": ("ChangeAvailability(Inoperative)",),
    "Unavailable:plugged": ("PlugIn", "ChangeAvailability(Inoperative)"),
    "Faulted": ("Fault",),
    "Faulted:after-charging": ("PlugIn", "RemoteStart(A)", "TransactionStarted(1)", "Fault"),
    "Faulted:stop-awaiting-id": ("PlugIn", "RemoteStart(A)", "Fault"),
}

MATRIX_POLICY = Policy()


@functools.cache
def named_state(name: str) -> ConnectorState:
    sim = Sim(MATRIX_POLICY)
    for step in STATES[name]:
        sim(EVENTS[step].event, at=EVENTS[step].at)
    return sim.state


def render(before: ConnectorState, o: Outcome) -> str:
    """An outcome in a line: 'refused', or the status after, then the effects other than the
    StatusNotification (which ``check_outcome`` verifies), '(no change)' when nothing changed."""
    if not o.accepted:
        return "refused"
    words = [str(o.state.status)]
    for e in o.effects:
        match e:
            case fx.StatusChanged():
                pass
            case fx.SendAuthorize(id_tag=tag):
                words.append(f"Authorize({tag})")
            case fx.SendStartTransaction(id_tag=tag, reservation_id=None):
                words.append(f"Start({tag})")
            case fx.SendStartTransaction(id_tag=tag, reservation_id=rid):
                words.append(f"Start({tag},reservation={rid})")
            case fx.SendStopTransaction(local_id=tx, reason=reason, id_tag=None):
                words.append(f"Stop({tx},{reason})")
            case fx.SendStopTransaction(local_id=tx, reason=reason, id_tag=tag):
                words.append(f"Stop({tx},{reason},{tag})")
            case fx.AuthorizationEnded(id_tag=tag):
                words.append(f"AuthorizationEnded({tag})")
            case fx.ReservationEnded(reservation_id=rid, why=why):
                words.append(f"ReservationEnded({rid},{why})")
            case _:
                raise AssertionError(f"unknown effect {e}")
    if o.state == before:
        words.append("(no change)")
    return " ".join(words)


#: The documented outcome of every (state, event) pair that is accepted, as ``render`` spells it.
MATRIX: dict[str, dict[str, str]] = {
    # Any event not listed for a state must be refused, state and effects untouched.
    "Available": {
        "PlugIn": "Preparing",
        "PresentTag(A)": "Preparing Authorize(A)",
        "PresentTag(B)": "Preparing Authorize(B)",
        "PresentTag(C)": "Preparing Authorize(C)",
        "RemoteStart(A)": "Preparing",
        "RemoteStart(B)": "Preparing",
        "Fault": "Faulted",
        "SetPowerLimit(0)": "Available",
        "SetPowerLimit(11000)": "Available",
        "SetPowerLimit(None)": "Available (no change)",
        "ChangeAvailability(Inoperative)": "Unavailable",
        "ChangeAvailability(Operative)": "Available (no change)",
        "Reserve(7,A)": "Reserved",
        "Reserve(8,B,parent=P)": "Reserved",
        "Tick": "Available (no change)",
        "Tick(late)": "Available (no change)",
    },
    "Preparing:plugged": {
        "Unplug": "Available",
        "PresentTag(A)": "Preparing Authorize(A)",
        "PresentTag(B)": "Preparing Authorize(B)",
        "PresentTag(C)": "Preparing Authorize(C)",
        "RemoteStart(A)": "Preparing Start(A)",
        "RemoteStart(B)": "Preparing Start(B)",
        "Fault": "Faulted",
        "SetPowerLimit(0)": "Preparing",
        "SetPowerLimit(11000)": "Preparing",
        "SetPowerLimit(None)": "Preparing (no change)",
        "ChangeAvailability(Inoperative)": "Unavailable",
        "ChangeAvailability(Operative)": "Preparing (no change)",
        "Tick": "Preparing (no change)",
        "Tick(late)": "Preparing (no change)",
    },
    # ConnectionTimeOut only runs once the idTag is authorised; Authorize itself pends.
    "Preparing:authorizing": {
        "PlugIn": "Preparing",
        "AuthorizeResult(A,Accepted)": "Preparing",
        "AuthorizeResult(A,Invalid)": "Available AuthorizationEnded(A)",
        "Fault": "Faulted AuthorizationEnded(A)",
        "SetPowerLimit(0)": "Preparing",
        "SetPowerLimit(11000)": "Preparing",
        "SetPowerLimit(None)": "Preparing (no change)",
        "ChangeAvailability(Inoperative)": "Unavailable AuthorizationEnded(A)",
        "ChangeAvailability(Operative)": "Preparing (no change)",
        "Tick": "Preparing (no change)",
        "Tick(late)": "Preparing (no change)",
    },
    "Preparing:plugged+authorizing": {
        "Unplug": "Preparing",
        "AuthorizeResult(A,Accepted)": "Preparing Start(A)",
        "AuthorizeResult(A,Invalid)": "Preparing AuthorizationEnded(A)",
        "Fault": "Faulted AuthorizationEnded(A)",
        "SetPowerLimit(0)": "Preparing",
        "SetPowerLimit(11000)": "Preparing",
        "SetPowerLimit(None)": "Preparing (no change)",
        "ChangeAvailability(Inoperative)": "Unavailable AuthorizationEnded(A)",
        "ChangeAvailability(Operative)": "Preparing (no change)",
        "Tick": "Preparing (no change)",
        "Tick(late)": "Preparing (no change)",
    },
    # Authorised and waiting for the cable: the same idTag again cancels, others wait.
    "Preparing:awaiting-plug": {
        "PlugIn": "Preparing Start(A)",
        "PresentTag(A)": "Available AuthorizationEnded(A)",
        "Fault": "Faulted AuthorizationEnded(A)",
        "SetPowerLimit(0)": "Preparing",
        "SetPowerLimit(11000)": "Preparing",
        "SetPowerLimit(None)": "Preparing (no change)",
        "ChangeAvailability(Inoperative)": "Unavailable AuthorizationEnded(A)",
        "ChangeAvailability(Operative)": "Preparing (no change)",
        "Tick": "Preparing (no change)",
        "Tick(late)": "Available AuthorizationEnded(A)",
    },
    # StartTransaction sent, no transactionId yet: a stop waits for the id; RemoteStop
    # cannot name it; ChangeAvailability Inoperative is Scheduled.
    "Preparing:starting": {
        "Unplug": "Preparing",
        "PresentTag(A)": "Preparing",
        "TransactionStarted(1)": "Charging",
        "TransactionStarted(1,Invalid)": "Finishing Stop(1,DeAuthorized)",
        "StartFailed": "Preparing AuthorizationEnded(A)",
        "Fault": "Faulted",
        "EndTransaction(SoftReset)": "Preparing",
        "EvSuspend": "Preparing",
        "SetPowerLimit(0)": "Preparing",
        "SetPowerLimit(11000)": "Preparing",
        "SetPowerLimit(None)": "Preparing (no change)",
        "ChangeAvailability(Inoperative)": "Preparing",
        "ChangeAvailability(Operative)": "Preparing (no change)",
        "Tick": "Preparing (no change)",
        "Tick(late)": "Preparing (no change)",
    },
    # A stop is already waiting for the id: asking again keeps the first reason.
    "Preparing:stop-awaiting-id": {
        "Unplug": "Preparing",
        "PresentTag(A)": "Preparing (no change)",
        "TransactionStarted(1)": "Finishing Stop(1,Local,A)",
        "TransactionStarted(1,Invalid)": "Finishing Stop(1,DeAuthorized)",
        "StartFailed": "Preparing AuthorizationEnded(A)",
        "Fault": "Faulted",
        "EndTransaction(SoftReset)": "Preparing (no change)",
        "EvSuspend": "Preparing",
        "SetPowerLimit(0)": "Preparing",
        "SetPowerLimit(11000)": "Preparing",
        "SetPowerLimit(None)": "Preparing (no change)",
        "ChangeAvailability(Inoperative)": "Preparing",
        "ChangeAvailability(Operative)": "Preparing (no change)",
        "Tick": "Preparing (no change)",
        "Tick(late)": "Preparing (no change)",
    },
    # The EV left before the id came: EVDisconnected is sent with it; nothing can suspend.
    "Preparing:unplugged-stop-awaiting-id": {
        "PlugIn": "Preparing",
        "PresentTag(A)": "Preparing (no change)",
        "TransactionStarted(1)": "Available Stop(1,EVDisconnected)",
        "TransactionStarted(1,Invalid)": "Available Stop(1,DeAuthorized)",
        "StartFailed": "Available AuthorizationEnded(A)",
        "Fault": "Faulted",
        "EndTransaction(SoftReset)": "Preparing (no change)",
        "SetPowerLimit(0)": "Preparing",
        "SetPowerLimit(11000)": "Preparing",
        "SetPowerLimit(None)": "Preparing (no change)",
        "ChangeAvailability(Inoperative)": "Preparing",
        "ChangeAvailability(Operative)": "Preparing (no change)",
        "Tick": "Preparing (no change)",
        "Tick(late)": "Preparing (no change)",
    },
    # Only the idTag that started it stops it locally; RemoteStop needs its id.
    "Charging": {
        "Unplug": "Available Stop(1,EVDisconnected)",
        "PresentTag(A)": "Finishing Stop(1,Local,A)",
        "RemoteStop(1)": "Finishing Stop(1,Remote)",
        "Fault": "Faulted Stop(1,EmergencyStop)",
        "EndTransaction(SoftReset)": "Finishing Stop(1,SoftReset)",
        "EvSuspend": "SuspendedEV",
        "SetPowerLimit(0)": "SuspendedEVSE",
        "SetPowerLimit(11000)": "Charging",
        "SetPowerLimit(None)": "Charging (no change)",
        "ChangeAvailability(Inoperative)": "Charging",
        "ChangeAvailability(Operative)": "Charging (no change)",
        "Tick": "Charging (no change)",
        "Tick(late)": "Charging (no change)",
    },
    "Charging:inoperative-scheduled": {
        "Unplug": "Unavailable Stop(1,EVDisconnected)",
        "PresentTag(A)": "Unavailable Stop(1,Local,A)",
        "RemoteStop(1)": "Unavailable Stop(1,Remote)",
        "Fault": "Faulted Stop(1,EmergencyStop)",
        "EndTransaction(SoftReset)": "Unavailable Stop(1,SoftReset)",
        "EvSuspend": "SuspendedEV",
        "SetPowerLimit(0)": "SuspendedEVSE",
        "SetPowerLimit(11000)": "Charging",
        "SetPowerLimit(None)": "Charging (no change)",
        "ChangeAvailability(Inoperative)": "Charging (no change)",
        "ChangeAvailability(Operative)": "Charging",
        "Tick": "Charging (no change)",
        "Tick(late)": "Charging (no change)",
    },
    "SuspendedEV": {
        "Unplug": "Available Stop(1,EVDisconnected)",
        "PresentTag(A)": "Finishing Stop(1,Local,A)",
        "RemoteStop(1)": "Finishing Stop(1,Remote)",
        "Fault": "Faulted Stop(1,EmergencyStop)",
        "EndTransaction(SoftReset)": "Finishing Stop(1,SoftReset)",
        "EvResume": "Charging",
        "SetPowerLimit(0)": "SuspendedEV",
        "SetPowerLimit(11000)": "SuspendedEV",
        "SetPowerLimit(None)": "SuspendedEV (no change)",
        "ChangeAvailability(Inoperative)": "SuspendedEV",
        "ChangeAvailability(Operative)": "SuspendedEV (no change)",
        "Tick": "SuspendedEV (no change)",
        "Tick(late)": "SuspendedEV (no change)",
    },
    "SuspendedEVSE": {
        "Unplug": "Available Stop(1,EVDisconnected)",
        "PresentTag(A)": "Finishing Stop(1,Local,A)",
        "RemoteStop(1)": "Finishing Stop(1,Remote)",
        "Fault": "Faulted Stop(1,EmergencyStop)",
        "EndTransaction(SoftReset)": "Finishing Stop(1,SoftReset)",
        "EvSuspend": "SuspendedEV",
        "SetPowerLimit(0)": "SuspendedEVSE (no change)",
        "SetPowerLimit(11000)": "Charging",
        "SetPowerLimit(None)": "Charging",
        "ChangeAvailability(Inoperative)": "SuspendedEVSE",
        "ChangeAvailability(Operative)": "SuspendedEVSE (no change)",
        "Tick": "SuspendedEVSE (no change)",
        "Tick(late)": "SuspendedEVSE (no change)",
    },
    # F2: a new idTag or RemoteStart starts again; ReserveNow answers Occupied.
    "Finishing": {
        "Unplug": "Available",
        "PresentTag(A)": "Finishing Authorize(A)",
        "PresentTag(B)": "Finishing Authorize(B)",
        "PresentTag(C)": "Finishing Authorize(C)",
        "RemoteStart(A)": "Preparing Start(A)",
        "RemoteStart(B)": "Preparing Start(B)",
        "Fault": "Faulted",
        "SetPowerLimit(0)": "Finishing",
        "SetPowerLimit(11000)": "Finishing",
        "SetPowerLimit(None)": "Finishing (no change)",
        "ChangeAvailability(Inoperative)": "Unavailable",
        "ChangeAvailability(Operative)": "Finishing (no change)",
        "Tick": "Finishing (no change)",
        "Tick(late)": "Finishing (no change)",
    },
    # Only the reserved idTag (or, with parentIdTag, its family) may start.
    "Reserved": {
        "PlugIn": "Reserved",
        "PresentTag(A)": "Preparing Authorize(A)",
        "RemoteStart(A)": "Preparing",
        "Fault": "Faulted",
        "SetPowerLimit(0)": "Reserved",
        "SetPowerLimit(11000)": "Reserved",
        "SetPowerLimit(None)": "Reserved (no change)",
        "ChangeAvailability(Inoperative)": "Unavailable",
        "ChangeAvailability(Operative)": "Reserved (no change)",
        "Reserve(7,A)": "Reserved (no change)",
        "CancelReservation(7)": "Available ReservationEnded(7,cancelled)",
        "Tick": "Reserved (no change)",
        "Tick(late)": "Available ReservationEnded(7,expired)",
    },
    # An EV plugged into a Reserved connector waits for the reserved idTag; the same
    # reservationId is replaced (5.13), another one is refused.
    "Reserved:plugged": {
        "Unplug": "Reserved",
        "PresentTag(A)": "Preparing Authorize(A)",
        "RemoteStart(A)": "Preparing Start(A,reservation=7)",
        "Fault": "Faulted",
        "SetPowerLimit(0)": "Reserved",
        "SetPowerLimit(11000)": "Reserved",
        "SetPowerLimit(None)": "Reserved (no change)",
        "ChangeAvailability(Inoperative)": "Unavailable",
        "ChangeAvailability(Operative)": "Reserved (no change)",
        "Reserve(7,A)": "Reserved (no change)",
        "CancelReservation(7)": "Preparing ReservationEnded(7,cancelled)",
        "Tick": "Reserved (no change)",
        "Tick(late)": "Preparing ReservationEnded(7,expired)",
    },
    # Any idTag may be Authorized to learn its parentIdTag, whatever the policy.
    "Reserved:parent": {
        "PlugIn": "Reserved",
        "PresentTag(A)": "Preparing Authorize(A)",
        "PresentTag(B)": "Preparing Authorize(B)",
        "PresentTag(C)": "Preparing Authorize(C)",
        "RemoteStart(A)": "Preparing Authorize(A)",
        "RemoteStart(B)": "Preparing",
        "Fault": "Faulted",
        "SetPowerLimit(0)": "Reserved",
        "SetPowerLimit(11000)": "Reserved",
        "SetPowerLimit(None)": "Reserved (no change)",
        "ChangeAvailability(Inoperative)": "Unavailable",
        "ChangeAvailability(Operative)": "Reserved (no change)",
        "Reserve(8,B,parent=P)": "Reserved (no change)",
        "Tick": "Reserved (no change)",
        "Tick(late)": "Available ReservationEnded(8,expired)",
    },
    # Unavailable: no Authorize, no start, no reservation; physical events still happen.
    "Unavailable": {
        "PlugIn": "Unavailable",
        "Fault": "Faulted",
        "SetPowerLimit(0)": "Unavailable",
        "SetPowerLimit(11000)": "Unavailable",
        "SetPowerLimit(None)": "Unavailable (no change)",
        "ChangeAvailability(Inoperative)": "Unavailable (no change)",
        "ChangeAvailability(Operative)": "Available",
        "Tick": "Unavailable (no change)",
        "Tick(late)": "Unavailable (no change)",
    },
    "Unavailable:plugged": {
        "Unplug": "Unavailable",
        "Fault": "Faulted",
        "SetPowerLimit(0)": "Unavailable",
        "SetPowerLimit(11000)": "Unavailable",
        "SetPowerLimit(None)": "Unavailable (no change)",
        "ChangeAvailability(Inoperative)": "Unavailable (no change)",
        "ChangeAvailability(Operative)": "Preparing",
        "Tick": "Unavailable (no change)",
        "Tick(late)": "Unavailable (no change)",
    },
    # Faulted: likewise; ClearFault returns to what the inputs say.
    "Faulted": {
        "PlugIn": "Faulted",
        "ClearFault": "Available",
        "SetPowerLimit(0)": "Faulted",
        "SetPowerLimit(11000)": "Faulted",
        "SetPowerLimit(None)": "Faulted (no change)",
        "ChangeAvailability(Inoperative)": "Faulted",
        "ChangeAvailability(Operative)": "Faulted (no change)",
        "Tick": "Faulted (no change)",
        "Tick(late)": "Faulted (no change)",
    },
    "Faulted:after-charging": {
        "Unplug": "Faulted",
        "ClearFault": "Finishing",
        "SetPowerLimit(0)": "Faulted",
        "SetPowerLimit(11000)": "Faulted",
        "SetPowerLimit(None)": "Faulted (no change)",
        "ChangeAvailability(Inoperative)": "Faulted",
        "ChangeAvailability(Operative)": "Faulted (no change)",
        "Tick": "Faulted (no change)",
        "Tick(late)": "Faulted (no change)",
    },
    # The fault's stop reason waits for the transactionId like any other stop.
    "Faulted:stop-awaiting-id": {
        "Unplug": "Faulted",
        "PresentTag(A)": "Faulted (no change)",
        "TransactionStarted(1)": "Faulted Stop(1,EmergencyStop)",
        "TransactionStarted(1,Invalid)": "Faulted Stop(1,DeAuthorized)",
        "StartFailed": "Faulted AuthorizationEnded(A)",
        "ClearFault": "Preparing",
        "EndTransaction(SoftReset)": "Faulted (no change)",
        "EvSuspend": "Faulted",
        "SetPowerLimit(0)": "Faulted",
        "SetPowerLimit(11000)": "Faulted",
        "SetPowerLimit(None)": "Faulted (no change)",
        "ChangeAvailability(Inoperative)": "Faulted",
        "ChangeAvailability(Operative)": "Faulted (no change)",
        "Tick": "Faulted (no change)",
        "Tick(late)": "Faulted (no change)",
    },
}


def test_matrix_covers_every_event_type_and_every_status() -> None:
    assert {type(s.event) for s in EVENTS.values()} == ALL_EVENT_TYPES
    assert {named_state(name).status for name in STATES} == set(Status)
    for name in STATES:  # the name says the status
        assert named_state(name).status == name.split(":")[0]
    assert MATRIX.keys() == STATES.keys()
    for row in MATRIX.values():
        assert row.keys() <= EVENTS.keys()


def test_matrix_every_event_type_is_accepted_somewhere_and_refused_elsewhere() -> None:
    accepted, refused = set(), set()
    for state_name in STATES:
        for event_name, stim in EVENTS.items():
            (accepted if event_name in MATRIX[state_name] else refused).add(type(stim.event))
    assert accepted == ALL_EVENT_TYPES
    # time always passes; ChangeAvailability is always Accepted or Scheduled
    assert refused == ALL_EVENT_TYPES - {ev.Tick, ev.ChangeAvailability}


@pytest.mark.parametrize(
    ("state_name", "event_name"),
    [pytest.param(s, e, id=f"{s}--{e}") for s in STATES for e in EVENTS],
)
def test_matrix(state_name: str, event_name: str) -> None:
    before = named_state(state_name)
    stim = EVENTS[event_name]
    outcome = transition(before, stim.event, MATRIX_POLICY, stim.at)
    check_outcome(before, stim.event, outcome)
    assert render(before, outcome) == MATRIX[state_name].get(event_name, "refused")


# -- every state reachable within a few events, against every event ----------------------------

POLICIES: dict[str, Policy] = {
    "authorize-local": Policy(authorize_local=True, authorize_remote=False),
    "free-vend+authorize-remote": Policy(authorize_local=False, authorize_remote=True),
}
MAX_STATES = 5_000  # the closure is about a thousand states; more means a runaway counter
#: Wrong whatever the state: no transaction 2 is ever started, NoError is no fault, no limit < 0.
ALWAYS_REFUSED = frozenset({"RemoteStop(2)", "Fault(NoError)", "SetPowerLimit(-1)"})


@functools.cache
def reachable(policy_name: str) -> tuple[ConnectorState, ...]:
    """Breadth-first from Available over the concrete ``EVENTS`` until no new state appears:
    every state those events can reach, whatever the number of steps."""
    policy = POLICIES[policy_name]
    initial = ConnectorState(CID)
    seen = {initial}
    order = [initial]
    frontier = [initial]
    while frontier:
        assert len(order) < MAX_STATES
        following = []
        for state in frontier:
            for stim in EVENTS.values():
                outcome = transition(state, stim.event, policy, stim.at)
                if outcome.accepted and outcome.state not in seen:
                    seen.add(outcome.state)
                    order.append(outcome.state)
                    following.append(outcome.state)
        frontier = following
    return tuple(order)


@pytest.mark.parametrize("policy_name", POLICIES)
def test_walk_reaches_every_status_and_corner(policy_name: str) -> None:
    states = reachable(policy_name)
    assert 500 < len(states) < MAX_STATES
    assert {s.status for s in states} == set(Status)
    corners = {
        "stop awaiting the id": lambda s: s.transaction is not None
        and s.transaction.stop_reason is not None,
        "scheduled inoperative": lambda s: s.scheduled_operative is False,
        "faulted while plugged": lambda s: s.error_code is not None and s.plugged,
        "reserved and plugged": lambda s: s.reservation is not None and s.plugged,
        "authorised, awaiting plug": lambda s: s.authorization is not None
        and not s.authorization.pending,
    }
    for corner, holds in corners.items():
        assert any(holds(s) for s in states), corner


@pytest.mark.parametrize("policy_name", POLICIES)
@pytest.mark.parametrize("event_name", EVENTS)
def test_walk_every_event_keeps_the_contract(policy_name: str, event_name: str) -> None:
    """Refused: same state object, no effects, a reason. Accepted: see ``check_outcome``."""
    policy, stim = POLICIES[policy_name], EVENTS[event_name]
    outcomes = {"accepted": 0, "refused": 0}
    for state in reachable(policy_name):
        outcome = transition(state, stim.event, policy, stim.at)
        check_outcome(state, stim.event, outcome)
        outcomes["accepted" if outcome.accepted else "refused"] += 1
    # the alphabet holds no dead events, only the ones that are wrong everywhere
    assert bool(outcomes["accepted"]) == (event_name not in ALWAYS_REFUSED)


# -- the refusals, one by one ------------------------------------------------------------------

#: (what is refused, setup: a name in STATES or a tuple of names in EVENTS, event, reason part)
REFUSALS: list[tuple[str, str | tuple[str, ...], object, str]] = [
    # the cable
    ("double plug", "Preparing:plugged", ev.PlugIn(), "already plugged"),
    ("double plug while charging", "Charging", ev.PlugIn(), "already plugged"),
    ("unplug when unplugged", "Available", ev.Unplug(), "not plugged"),
    ("unplug twice", "Preparing:unplugged-stop-awaiting-id", ev.Unplug(), "not plugged"),
    # idTags at the reader
    ("another idTag during a transaction", "Charging", ev.PresentTag("B"), "idTag A"),
    ("another idTag before the id is known", "Preparing:starting", ev.PresentTag("B"), "idTag A"),
    ("another idTag while one is authorizing", "Preparing:authorizing", ev.PresentTag("B"),
     "already waiting"),
    ("the same idTag while its Authorize pends", "Preparing:authorizing", ev.PresentTag("A"),
     "already waiting"),
    ("another idTag while one awaits the plug", "Preparing:awaiting-plug", ev.PresentTag("B"),
     "already waiting"),
    ("an idTag when faulted", "Faulted", ev.PresentTag("A"), "faulted"),
    ("an idTag when unavailable", "Unavailable:plugged", ev.PresentTag("A"), "unavailable"),
    ("another idTag on a reserved connector", "Reserved", ev.PresentTag("B"),
     "reserved for another idTag"),
    # Authorize answers
    ("AuthorizeResult with nothing pending", "Available", ev.AuthorizeResult("A", "Accepted"),
     "no Authorize pending"),
    ("AuthorizeResult for another idTag", "Preparing:authorizing",
     ev.AuthorizeResult("B", "Accepted"), "no Authorize pending for idTag B"),
    ("AuthorizeResult twice", ("PresentTag(A)", "AuthorizeResult(A,Accepted)"),
     ev.AuthorizeResult("A", "Accepted"), "no Authorize pending"),
    ("AuthorizeResult once started", "Preparing:starting", ev.AuthorizeResult("A", "Accepted"),
     "no Authorize pending"),
    ("AuthorizeResult for a remote start without Authorize", "Preparing:awaiting-plug",
     ev.AuthorizeResult("A", "Accepted"), "no Authorize pending"),
    # RemoteStartTransaction
    ("remote start when faulted", "Faulted", ev.RemoteStart("A"), "faulted"),
    ("remote start when unavailable", "Unavailable", ev.RemoteStart("A"), "unavailable"),
    ("remote start when charging", "Charging", ev.RemoteStart("B"), "already running"),
    ("remote start of the running idTag", "Charging", ev.RemoteStart("A"), "already running"),
    ("remote start during a start", "Preparing:starting", ev.RemoteStart("B"),
     "already running"),
    ("remote start while an idTag authorizes", "Preparing:authorizing", ev.RemoteStart("B"),
     "already waiting"),
    ("remote start while an idTag awaits the plug", "Preparing:awaiting-plug",
     ev.RemoteStart("A"), "already waiting"),
    ("remote start for another idTag when reserved", "Reserved:plugged", ev.RemoteStart("B"),
     "reserved for another idTag"),
    # RemoteStopTransaction
    ("RemoteStop with a wrong id", "Charging", ev.RemoteStop(2), "no transaction 2"),
    ("RemoteStop before the id is known", "Preparing:starting", ev.RemoteStop(1),
     "no transaction 1"),
    ("RemoteStop after the stop", "Finishing", ev.RemoteStop(1), "no transaction 1"),
    ("RemoteStop when idle", "Available", ev.RemoteStop(1), "no transaction 1"),
    # StartTransaction answers
    ("TransactionStarted twice", "Charging", ev.TransactionStarted(2),
     "no StartTransaction pending"),
    ("TransactionStarted without a start", "Preparing:plugged", ev.TransactionStarted(1),
     "no StartTransaction pending"),
    ("TransactionStarted after the stop", "Finishing", ev.TransactionStarted(1),
     "no StartTransaction pending"),
    ("StartFailed after confirmation", "Charging", ev.StartFailed("late"),
     "no StartTransaction pending"),
    ("StartFailed without a start", "Preparing:plugged", ev.StartFailed("?"),
     "no StartTransaction pending"),
    # faults
    ("clear when not faulted", "Available", ev.ClearFault(), "not faulted"),
    ("clear when charging", "Charging", ev.ClearFault(), "not faulted"),
    ("fault twice", "Faulted", ev.Fault(ErrorCode.OVER_VOLTAGE), "already faulted"),
    ("fault twice after charging", "Faulted:after-charging", ev.Fault(), "already faulted"),
    ("fault with NoError", "Charging", ev.Fault(ErrorCode.NO_ERROR), "NoError"),
    # transactions ended from outside
    ("EndTransaction when idle", "Preparing:plugged", ev.EndTransaction(StopReason.HARD_RESET),
     "no transaction"),
    ("EndTransaction after the stop", "Finishing", ev.EndTransaction(StopReason.REBOOT),
     "no transaction"),
    # the EV's own suspension
    ("EvSuspend without a transaction", "Preparing:plugged", ev.EvSuspend(), "not drawing"),
    ("EvSuspend twice", "SuspendedEV", ev.EvSuspend(), "not drawing"),
    ("EvSuspend with the EV gone", "Preparing:unplugged-stop-awaiting-id", ev.EvSuspend(),
     "not drawing"),
    ("EvResume when not suspended", "Charging", ev.EvResume(), "not suspended"),
    ("EvResume after the transaction", "Finishing", ev.EvResume(), "not suspended"),
    # smart charging
    ("negative power limit", "Charging", ev.SetPowerLimit(-0.5), "0 or more"),
    ("NaN power limit", "Charging", ev.SetPowerLimit(math.nan), "finite"),
    ("infinite power limit", "Charging", ev.SetPowerLimit(math.inf), "finite"),
    # ReserveNow / CancelReservation
    ("reserve when plugged", "Preparing:plugged", ev.Reserve(7, "A", RESERVED_UNTIL),
     "occupied"),
    ("reserve while an idTag authorizes", "Preparing:authorizing",
     ev.Reserve(7, "A", RESERVED_UNTIL), "occupied"),
    ("reserve while an idTag awaits the plug", "Preparing:awaiting-plug",
     ev.Reserve(7, "A", RESERVED_UNTIL), "occupied"),
    ("reserve during a start", "Preparing:unplugged-stop-awaiting-id",
     ev.Reserve(7, "A", RESERVED_UNTIL), "occupied"),
    ("reserve when charging", "Charging", ev.Reserve(7, "A", RESERVED_UNTIL), "occupied"),
    ("reserve when finishing", "Finishing", ev.Reserve(7, "A", RESERVED_UNTIL), "occupied"),
    ("reserve when faulted", "Faulted", ev.Reserve(7, "A", RESERVED_UNTIL), "faulted"),
    ("reserve when unavailable", "Unavailable", ev.Reserve(7, "A", RESERVED_UNTIL),
     "unavailable"),
    ("reserve under another id", "Reserved", ev.Reserve(9, "A", RESERVED_UNTIL),
     "already reserved"),
    ("replace a reservation its idTag is using", ("Reserve(7,A)", "PresentTag(A)"),
     ev.Reserve(7, "B", RESERVED_UNTIL), "occupied"),
    ("cancel a reservation that is not there", "Available", ev.CancelReservation(7),
     "no reservation 7"),
    ("cancel another reservation", "Reserved", ev.CancelReservation(8), "no reservation 8"),
    ("cancel a consumed reservation", ("Reserve(7,A)", "PlugIn", "RemoteStart(A)"),
     ev.CancelReservation(7), "no reservation 7"),
    # not an event at all
    ("something that is not an event", "Charging", object(), "unknown event"),
]


@pytest.mark.parametrize(
    ("setup", "event", "because"),
    [pytest.param(setup, event, because, id=name) for name, setup, event, because in REFUSALS],
)
def test_refused(setup: str | tuple[str, ...], event: object, because: str) -> None:
    sim = Sim(MATRIX_POLICY)
    for step in STATES[setup] if isinstance(setup, str) else setup:
        sim(EVENTS[step].event, at=EVENTS[step].at)
    sim.refuse(event, because=because)


def test_refusals_cover_every_event_type_that_can_be_refused() -> None:
    refused = {type(event) for _, _, event, _ in REFUSALS}
    assert refused >= ALL_EVENT_TYPES - {ev.Tick, ev.ChangeAvailability}


def test_a_refusal_under_any_policy_leaves_the_connector_alone() -> None:
    for policy in POLICIES.values():
        sim = charging(policy)
        before = sim.state
        for event in (ev.PlugIn(), ev.PresentTag("Z"), ev.RemoteStart("Z"), ev.RemoteStop(99)):
            outcome = sim.connector.handle(event, LATE)
            assert outcome == Outcome(before, (), outcome.refused) and outcome.refused
            assert sim.state is before


# ==============================================================================================
# 4. Random event sequences
# ==============================================================================================

_TAGS = st.sampled_from(["A", "B", "C", "P"])
_ID_TAG_STATUSES = st.sampled_from(["Accepted", "Invalid", "Blocked", "Expired", "ConcurrentTx"])
_TX_IDS = st.integers(min_value=0, max_value=4)

#: Every event type, with arguments from small alphabets so that they collide and matter.
EVENT_STRATEGIES: dict[type, st.SearchStrategy] = {
    ev.PlugIn: st.just(ev.PlugIn()),
    ev.Unplug: st.just(ev.Unplug()),
    ev.PresentTag: st.builds(ev.PresentTag, _TAGS),
    ev.AuthorizeResult: st.builds(ev.AuthorizeResult, _TAGS, _ID_TAG_STATUSES, st.none() | _TAGS),
    ev.RemoteStart: st.builds(ev.RemoteStart, _TAGS),
    ev.RemoteStop: st.builds(ev.RemoteStop, _TX_IDS),
    ev.TransactionStarted: st.builds(ev.TransactionStarted, _TX_IDS, _ID_TAG_STATUSES),
    ev.StartFailed: st.builds(ev.StartFailed, st.sampled_from(["timeout", "offline", ""])),
    ev.Fault: st.builds(ev.Fault, st.sampled_from(ErrorCode), st.sampled_from(StopReason),
                        st.sampled_from(FaultSource)),
    ev.ClearFault: st.builds(ev.ClearFault, st.none() | st.sampled_from(FaultSource)),
    ev.EndTransaction: st.builds(ev.EndTransaction, st.sampled_from(StopReason),
                                 st.none() | _TAGS),
    ev.EvSuspend: st.just(ev.EvSuspend()),
    ev.EvResume: st.just(ev.EvResume()),
    ev.SetPowerLimit: st.builds(
        ev.SetPowerLimit,
        st.none() | st.sampled_from([0.0, -1.0]) | st.floats(-100, 22_000, allow_nan=False),
    ),
    ev.ChangeAvailability: st.builds(ev.ChangeAvailability, st.booleans()),
    ev.Reserve: st.builds(ev.Reserve, st.integers(1, 3), _TAGS,
                          st.floats(T0 - 10, T0 + 500), st.none() | _TAGS),
    ev.CancelReservation: st.builds(ev.CancelReservation, st.integers(1, 3)),
    ev.Tick: st.just(ev.Tick()),
}
ANY_EVENT = st.one_of(*EVENT_STRATEGIES.values())
ANY_POLICY = st.builds(
    Policy, st.booleans(), st.booleans(), st.sampled_from([0.0, 30.0, 60.0]), st.booleans(),
    st.booleans(),
)


def test_random_events_cover_every_event_type() -> None:
    assert EVENT_STRATEGIES.keys() == ALL_EVENT_TYPES


class ConnectorRun(RuleBasedStateMachine):
    """One connector, a clock, and a CSMS that answers sensibly or at random."""

    connector: Connector

    @initialize(policy=ANY_POLICY)
    def setup(self, policy: Policy) -> None:
        self.connector = Connector(CID, policy)
        self.now = T0
        self.reported = (Status.AVAILABLE, ErrorCode.NO_ERROR)
        self.starts = self.stops = self.start_failures = 0
        self.confirmed: set[int] = set()
        self.stopped: set[int] = set()
        self.next_tx_id = 100

    def apply(self, event: ev.Event) -> Outcome:
        before = self.connector.state
        outcome = self.connector.handle(event, self.now)
        check_outcome(before, event, outcome)
        assert self.connector.state is outcome.state
        # the machine is a function: the same event in the same state gives the same outcome
        assert transition(before, event, self.connector.policy, self.now) == outcome
        for effect in outcome.effects:
            match effect:
                case fx.StatusChanged(status=s, error_code=e):
                    assert (s, e) != self.reported, "StatusNotification only on a change"
                    self.reported = (s, e)
                case fx.SendStartTransaction():
                    self.starts += 1
                case fx.SendStopTransaction(local_id=tx_id):
                    self.stops += 1
                    if tx_id >= 100:
                        assert tx_id not in self.stopped, f"transaction {tx_id} stopped twice"
                        self.stopped.add(tx_id)
        if outcome.accepted and isinstance(event, ev.StartFailed):
            self.start_failures += 1
        if outcome.accepted and isinstance(event, ev.TransactionStarted):
            self.confirmed.add(event.local_id)
        return outcome

    @rule(event=ANY_EVENT)
    def anything_happens(self, event: ev.Event) -> None:
        self.apply(event)

    @rule(accepted=st.booleans())
    def csms_confirms_the_start(self, accepted: bool) -> None:
        self.next_tx_id += 1
        self.apply(ev.TransactionStarted(self.next_tx_id, "Accepted" if accepted else "Invalid"))

    @rule(status=_ID_TAG_STATUSES, parent=st.none() | _TAGS)
    def csms_answers_authorize(self, status: str, parent: str | None) -> None:
        auth = self.connector.state.authorization
        if auth is not None and auth.pending:
            outcome = self.apply(ev.AuthorizeResult(auth.id_tag, status, parent))
            assert outcome.accepted

    @rule()
    def csms_stops_the_transaction(self) -> None:
        tx_id = self.connector.state.local_id
        if tx_id is not None:
            outcome = self.apply(ev.RemoteStop(tx_id))
            assert outcome.effects[0] == stop_tx(tx_id, StopReason.REMOTE)

    @rule(dt=st.floats(0, 120))
    def time_passes(self, dt: float) -> None:
        due = self.connector.next_deadline()
        self.now += dt
        before = self.connector.state
        outcome = self.apply(ev.Tick())
        if due is None or self.now < due:
            assert outcome.state == before and outcome.effects == (), "nothing was due"
        after = self.connector.next_deadline()
        assert after is None or after > self.now, "a Tick leaves nothing overdue"

    @invariant()
    def reported_status_is_the_status(self) -> None:
        state = self.connector.state
        assert self.reported == (state.status, _error(state))

    @invariant()
    def every_start_ends_once(self) -> None:
        running = 1 if self.connector.state.transaction is not None else 0
        assert self.starts == self.stops + self.start_failures + running

    @invariant()
    def stops_name_confirmed_transactions(self) -> None:
        assert self.stopped <= self.confirmed

    @invariant()
    def state_is_consistent(self) -> None:
        check_state(self.connector.state)


ConnectorRun.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_random_connector_runs = ConnectorRun.TestCase


@settings(max_examples=300, deadline=None)
@given(policy=ANY_POLICY, steps=st.lists(st.tuples(ANY_EVENT, st.floats(0, 100)), max_size=40))
def test_random_sequences_never_raise_and_keep_the_contract(
    policy: Policy, steps: list[tuple[ev.Event, float]]
) -> None:
    state, now = ConnectorState(CID), T0
    for event, dt in steps:
        now += dt
        outcome = transition(state, event, policy, now)
        check_outcome(state, event, outcome)
        state = outcome.state


@settings(max_examples=200, deadline=None)
@given(state_index=st.integers(min_value=0), event=ANY_EVENT, now=st.floats(T0, LATE))
def test_random_events_in_every_reachable_state(state_index: int, event: ev.Event,
                                                now: float) -> None:
    states = reachable("authorize-local")
    state = states[state_index % len(states)]
    check_outcome(state, event, transition(state, event, POLICIES["authorize-local"], now))


# ==============================================================================================
# 5. Standard library only
# ==============================================================================================


def _imports(tree: ast.AST) -> list[tuple[int, str | None, int]]:
    """(line, module, relative level) of every import statement."""
    found: list[tuple[int, str | None, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, node.module, node.level))
    return found


def _dynamic_imports(tree: ast.AST) -> list[int]:
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Name) and node.func.id == "__import__")
            or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
        )
    ]


def test_evse_imports_only_the_standard_library() -> None:
    package_dir = Path(hilsim.evse.__file__).parent
    sources = sorted(package_dir.rglob("*.py"))
    assert {p.name for p in sources} >= {
        "__init__.py", "types.py", "events.py", "effects.py", "machine.py",
    }
    offenders = []
    for path in sources:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, module, level in _imports(tree):
            where = f"{path.relative_to(package_dir)}:{line}"
            if level:  # relative: inside hilsim.evse by construction
                continue
            assert module is not None
            if module == "hilsim.evse" or module.startswith("hilsim.evse."):
                continue
            if module.split(".")[0] in sys.stdlib_module_names:
                continue
            offenders.append(f"{where}: import {module}")
        offenders += [f"{path.name}:{line}: dynamic import" for line in _dynamic_imports(tree)]
    assert offenders == []


def test_the_import_check_catches_what_it_should() -> None:
    bad = ast.parse(
        "import asyncio\nimport websockets\nfrom hilsim import errors\n"
        "from hilsim.ocpp.messages import x\nfrom . import types\n"
        "from hilsim.evse.types import Status\nm = importlib.import_module('ocpp')\n"
    )
    imports = _imports(bad)
    outside = [
        m for _, m, level in imports
        if not level and m and not (m == "hilsim.evse" or m.startswith("hilsim.evse."))
        and m.split(".")[0] not in sys.stdlib_module_names
    ]
    assert outside == ["websockets", "hilsim", "hilsim.ocpp.messages"]
    assert _dynamic_imports(bad) == [7]
