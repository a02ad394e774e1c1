"""OCPP 2.0.1's dialect of the outbox: TransactionEvents, numbered and kept until confirmed.

The outbox (`hilsim.outbox`) is the same for both protocols; this is what its rows say in 2.0.1.
A TransactionEvent is written to SQLite with its seqNo in the commit that moves the
transaction's next_seq_no on (so a seqNo is never given twice, even across a power cut), as the
exact payload that goes on the wire; the CSMS never learns a local id. The transactionId is the
charge point's own (a UUID4, in charging_transaction.tx_id), so inside the services a 2.0.1
transaction is known by its local id alone: ``transaction_id(local_id) == local_id``, and the
2.0.1 handlers translate with `tx_id` and `local_id_of`.

When the events happen is the tracker's (`hilsim.ocpp201.tx_tracker`), fed from two sides: the
charger's machines (`on_event`, a `Charger.event_listeners` entry: plug-in, authorization,
status) and the services that call the outbox (`start`, `sample`, `stop`: the machine's
transaction and its meter values). How it is put on a charger: `hilsim.ocpp201.tx_dialect`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from hilsim.clock import Clock
from hilsim.evse import Outcome, events
from hilsim.ocpp.session import CsmsLink, LinkState
from hilsim.ocpp201.tx_tracker import Draft, EvseTracker, TxPoints, ended
from hilsim.ocpp201.tx_wire import (
    EndedSampling,
    ended_meter_values,
    id_tag_info,
    id_token,
    meter_values_201,
    register_value,
    sampled_value_201,
)
from hilsim.store import OutboxEntry, Store, TransactionRow
from hilsim.tasks import TaskSet
from hilsim.transaction_messages import OutboxPort

log = logging.getLogger(__name__)

#: The most machine events held for one EVSE while its transaction's stop is on the way (a
#: stop is a few milliseconds away; more means it is stuck, and the rest are only logged).
HELD_EVENTS = 64
#: How long a start waits for the stop of the EVSE's last transaction to be written.
STOP_DUE_S = 10.0


class TransactionEvents:
    """The 2.0.1 `TransactionMessages`: trackers per EVSE, TransactionEvent rows, answers."""

    def __init__(
        self,
        outbox: OutboxPort,
        store: Store,
        link: CsmsLink,
        wall: Clock,
        tasks: TaskSet,
        *,
        energy_Wh: Callable[[int], float],
        points: Callable[[], TxPoints] = TxPoints,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        begun: Callable[[int], list[dict[str, Any]]] = lambda _: [],
        ended_sampling: EndedSampling | None = None,
        limit_significance: Callable[[], float] = lambda: 0.1,
    ) -> None:
        """``energy_Wh``: a connector's register now; ``points``: TxStartPoint/TxStopPoint
        now (the device model's); ``tasks``: where events from the machines are written;
        ``begun``: what a Started says beside the register (TxStartedMeasurands, 1.6-shaped);
        ``ended_sampling``: which samples kept for an Ended it says (TxEndedInterval);
        ``limit_significance``: SmartChargingCtrlr.LimitChangeSignificance now."""
        self.store = store
        self.link = link
        self.wall = wall
        self.tasks = tasks
        self.energy_Wh = energy_Wh
        self.points = points
        self.new_id = new_id
        self.begun = begun
        self.ended_sampling = ended_sampling or EndedSampling()
        self.limit_significance = limit_significance
        self.outbox = outbox  # the outbox this dialect speaks for
        self._trackers: dict[int, EvseTracker] = {}
        self._local: dict[str, int] = {}  # tx_id -> local id
        self._tx: dict[int, str] = {}  # local id -> tx_id
        self._seen_tag: dict[int, str | None] = {}  # the machine's authorized idTag, last seen
        #: RequestStartTransaction's (remoteStartId, idToken), until an EVSE's machine takes it
        self._remote_start: tuple[int, dict[str, Any]] | None = None
        #: the EVSE that took the last remote start
        self.remote_started_on: int | None = None
        #: EVSE -> what its machine did after its transaction ended and before that stop reached
        #: `stop` (the Ended is drafted there): observed once the Ended is, so a plug-in that
        #: quick is a new session's, never an Updated of the transaction that just ended
        self._held: dict[int, list[tuple[events.Event, Outcome]]] = {}
        #: EVSE -> done once the stop it waits for is observed: the machine's next transaction
        #: may start first (a quick plug and tag), and its Started must follow that Ended
        self._stop_due: dict[int, asyncio.Future[None]] = {}
        #: EVSE -> events drafted from its machine and not yet written, in the order drafted:
        #: their writes wait for the outbox's lock, which a start, sample or stop may take
        #: first; those write what is before them first, so seqNo follows the drafts' order
        #: (never an Updated after its transaction's Ended)
        self._unwritten: dict[int, list[tuple[Draft, dict[str, Any]]]] = {}

    # -- ids -----------------------------------------------------------------------------------

    def transaction_id(self, local_id: int) -> int | None:
        return local_id  # in 2.0.1 the services know a transaction by its local id

    def local_id(self, transaction_id: int) -> int | None:
        return transaction_id

    def tx_id(self, local_id: int) -> str | None:
        """The transactionId the CSMS knows a local transaction by."""
        return self._tx.get(local_id)

    def local_id_of(self, tx_id: str) -> int | None:
        return self._local.get(tx_id)

    def known_as(self, connector_id: int, local_id: int | None) -> str | None:
        """The transactionId the CSMS knows: the open one, or (ending) the machine's."""
        open_tx = self.open_tx_id(connector_id)
        return open_tx if open_tx is not None or local_id is None else self.tx_id(local_id)

    def open_tx_id(self, evse_id: int) -> str | None:
        """The EVSE's open 2.0.1 transaction (it may have begun before the machine's)."""
        tracker = self._trackers.get(evse_id)
        return None if tracker is None else tracker.tx_id

    def tracker(self, evse_id: int) -> EvseTracker:
        if evse_id not in self._trackers:
            self._trackers[evse_id] = EvseTracker(evse_id, self.new_id)
        return self._trackers[evse_id]

    def adopt(self, row: TransactionRow) -> None:
        if row.tx_id is not None:
            self._local[row.tx_id] = row.local_id
            self._tx[row.local_id] = row.tx_id

    async def messages_queued(self, local_id: int) -> int:
        return await self.store.transaction_log.outbox_count(local_id)

    # -- the machines (a Charger.event_listeners entry) ----------------------------------------

    def on_event(self, evse_id: int, event: events.Event, outcome: Outcome) -> None:
        """Translate what a machine did into the tracker's terms; write what it answers."""
        if not outcome.accepted:
            return
        held = self._held.get(evse_id)
        if held is not None:
            if len(held) < HELD_EVENTS:
                held.append((event, outcome))
            else:
                log.warning("E%d: %s not followed: its transaction's stop is overdue", evse_id,
                            type(event).__name__)  # fmt: skip
            return
        tracker, points, state = self.tracker(evse_id), self.points(), outcome.state
        drafts: list[Draft] = []
        if isinstance(event, events.PlugIn):
            drafts += tracker.ev_connected(points)
        elif isinstance(event, events.Unplug):
            drafts += tracker.ev_disconnected(points)
        elif isinstance(event, events.SetPowerLimit):
            charging = state.transaction is not None and not state.finishing
            drafts += tracker.rate_changed(event.limit_W, self.limit_significance(),
                                           charging=charging)  # fmt: skip
        # The idTag cleared to charge: that of the machine's transaction, or a granted one.
        auth = state.authorization
        tag, remote = None, False
        if state.transaction is not None:
            tag, remote = state.transaction.id_tag, state.transaction.remote
        elif auth is not None and not auth.pending:
            tag, remote = auth.id_tag, auth.remote
        seen = self._seen_tag.get(evse_id)
        self._seen_tag[evse_id] = tag
        if tag is not None and tag != seen:
            pending = self._remote_start
            if remote and pending is not None and pending[1].get("idToken") == tag:
                tracker.remote_start(*pending)
                self._remote_start, self.remote_started_on = None, evse_id
            drafts += tracker.authorized(self._token_for(tracker, tag), points, remote)
        elif tag is None and seen is not None and tracker.machine_state is None:
            if state.finishing or isinstance(event, (events.EndTransaction, events.RemoteStop)):
                pass  # the machine's transaction ended: its stop says what follows
            else:
                drafts += tracker.deauthorized(isinstance(event, events.Tick), points)
        drafts += tracker.machine_status(str(state.status))
        for draft in drafts:
            self._spawn(evse_id, draft)
        if tracker.machine_state is not None and state.transaction is None:
            self._held[evse_id] = []  # the machine's transaction ended: `stop` comes next
            self._stop_due[evse_id] = asyncio.get_running_loop().create_future()

    def expect_remote_start(self, remote_start_id: int | None, token: dict[str, Any]) -> None:
        """RequestStartTransaction is about to reach a machine: the EVSE whose machine takes
        its idToken sends the remoteStartId and the idToken as given with its next event.
        None: the request was not taken."""
        self.remote_started_on = None
        self._remote_start = None if remote_start_id is None else (remote_start_id, token)

    def stop_open(self, evse_id: int, reason_16: str) -> bool:
        """End the EVSE's open transaction that has no machine transaction (yet)."""
        drafts = self.tracker(evse_id).ended_by(reason_16)
        for draft in drafts:
            self._spawn(evse_id, draft)
        return bool(drafts)

    def evse_of(self, tx_id: str) -> int | None:
        """The EVSE whose open transaction this is."""
        for evse_id, tracker in self._trackers.items():
            if tracker.tx_id == tx_id:
                return evse_id
        return None

    def triggered(self, evse_id: int) -> bool:
        """TriggerMessage TransactionEvent: an Updated (Trigger), if a transaction is open."""
        drafts = self.tracker(evse_id).triggered()
        for draft in drafts:
            self._spawn(evse_id, draft)
        return bool(drafts)

    @staticmethod
    def _token_for(tracker: EvseTracker, tag: str) -> dict[str, Any]:
        if tracker.token is not None and tracker.token.get("idToken") == tag:
            return tracker.token  # RequestStartTransaction's, as the CSMS gave it
        return id_token(tag)

    def _spawn(self, evse_id: int, draft: Draft) -> None:
        self._unwritten.setdefault(evse_id, []).append((draft, self._payload(evse_id, draft)))
        self.tasks.spawn(self._write(evse_id), f"transaction-event-E{evse_id}")

    async def _write(self, evse_id: int) -> None:
        outbox = self.outbox
        async with outbox.writes:
            await self._write_drafted(evse_id)
        outbox.recorded("TransactionEvent")

    async def _write_drafted(self, evse_id: int) -> None:
        """Write what was drafted for the EVSE and is not written yet, in order (the outbox's
        lock held). One that cannot be written is lost, logged by its task, as before."""
        queue = self._unwritten.get(evse_id, [])
        while queue:
            draft, payload = queue.pop(0)
            if draft.event_type == "Ended":
                local_id = self._local.get(draft.tx_id)
                if local_id is not None:
                    data = [json.loads(t) for t in await self.store.transaction_data(local_id)]
                    payload["meterValue"] = ended_meter_values(data, payload["meterValue"])
            await self._record(evse_id, draft, payload)

    # -- the services (TransactionMessages) ----------------------------------------------------

    async def start(
        self,
        outbox: OutboxPort,
        connector_id: int,
        id_tag: str,
        meter_start: int,
        timestamp: str,
        reservation_id: int | None,
    ) -> int:
        due = self._stop_due.get(connector_id)
        if due is not None:  # the last transaction's stop first: its Ended, then this Started
            try:
                async with asyncio.timeout(STOP_DUE_S):
                    await asyncio.shield(due)
            except TimeoutError:
                log.warning("E%d: the last transaction's stop is overdue; starting anyway",
                            connector_id)  # fmt: skip
        tracker = self.tracker(connector_id)
        self._seen_tag[connector_id] = id_tag
        drafts = tracker.local_started(self._token_for(tracker, id_tag))
        tx_id = tracker.tx_id
        assert tx_id is not None
        local_id = None
        token_sent = False
        async with outbox.writes:
            await self._write_drafted(connector_id)
            for draft in drafts:
                payload = self._payload(
                    connector_id, draft, stamp=timestamp, energy_Wh=float(meter_start)
                )
                if reservation_id is not None and draft.event_type == "Started":
                    payload["reservationId"] = reservation_id
                token_sent = token_sent or draft.id_token is not None
                local_id = await self._record(connector_id, draft, payload, id_tag=id_tag)
            if local_id is None:
                local_id = self._local[tx_id]
        # Offline nobody waits (`hilsim.transactions`): a verdict arriving later goes to the late
        # listeners, which stop a transaction whose idToken the CSMS refuses.
        if self.link.state == LinkState.CONNECTED:
            outbox.expect(local_id)
            if not token_sent:  # the CSMS heard of the idToken before: nothing to wait for
                outbox.confirm(local_id, local_id, {"status": "Accepted"})
        if drafts:
            outbox.recorded("TransactionEvent")
        return local_id

    async def sample(
        self,
        outbox: OutboxPort,
        connector_id: int,
        energy_Wh: float,
        timestamp: str,
        local_id: int | None,
        meter_value: list[dict[str, Any]] | None,
        kept: dict[str, Any] | None,
    ) -> str | None:
        keep = False  # for the Ended: as often as its TxEndedInterval says
        if local_id is not None and kept is not None:
            keep = self.ended_sampling.keep(connector_id, local_id, kept, timestamp)
        kept_json = json.dumps(kept) if keep else None
        tracker = self.tracker(connector_id)
        drafts: list[Draft] = []
        # What 2.0.1 can say of it (no Updated for a sample of only 1.6 measurands: nothing new).
        values = meter_values_201(meter_value or [])
        if local_id is not None and values:
            drafts = tracker.sample(values[0]["sampledValue"][0].get("context") == "Sample.Clock")
        async with outbox.writes:
            await self._write_drafted(connector_id)
            await self.store.record_sample(
                connector_id, energy_Wh, timestamp, local_id, None, kept_json
            )
            for draft in drafts:
                payload = self._payload(connector_id, draft, stamp=timestamp)
                payload["meterValue"] = values
                await self._record(connector_id, draft, payload)
        return "TransactionEvent" if drafts else None

    async def stop(
        self,
        outbox: OutboxPort,
        local_id: int,
        connector_id: int,
        meter_stop: int,
        energy_Wh: float,
        timestamp: str,
        reason: str,
        id_tag: str | None,
        data: list[dict[str, Any]],
    ) -> str | None:
        """The machine's transaction stopped (the caller holds the write lock)."""
        await self._write_drafted(connector_id)
        tracker = self.tracker(connector_id)
        tx_id = self._tx.get(local_id)
        if tx_id is None:  # recorded in 1.6 mode: it has no 2.0.1 id yet
            tx_id = self.new_id()
            self._local[tx_id], self._tx[local_id] = local_id, tx_id
        if tracker.tx_id == tx_id:
            token = None if id_tag is None else self._token_for(tracker, id_tag)
            drafts = tracker.local_stopped(reason, token, self.points())
        else:  # no tracker follows it: one a power cut left open
            drafts = [ended(tx_id, reason)]
        self._seen_tag[connector_id] = None
        for draft in drafts:
            payload = self._payload(connector_id, draft, stamp=timestamp, energy_Wh=energy_Wh)
            if draft.event_type == "Ended":
                payload["meterValue"] = ended_meter_values(data, payload["meterValue"])
            await self._record(connector_id, draft, payload, energy_Wh=energy_Wh)
        for event, outcome in self._held.pop(connector_id, []):
            self.on_event(connector_id, event, outcome)
        due = self._stop_due.pop(connector_id, None)
        if due is not None and not due.done():
            due.set_result(None)
        return "TransactionEvent" if drafts else None

    # -- rows ----------------------------------------------------------------------------------

    def _payload(
        self,
        evse_id: int,
        draft: Draft,
        *,
        stamp: str | None = None,
        energy_Wh: float | None = None,
    ) -> dict[str, Any]:
        """The event as it goes on the wire, without seqNo (given as it is written)."""
        stamp = stamp or self.wall.iso()
        info: dict[str, Any] = {"transactionId": draft.tx_id}
        if draft.charging_state is not None:
            info["chargingState"] = draft.charging_state
        if draft.stopped_reason is not None:
            info["stoppedReason"] = draft.stopped_reason
        if draft.remote_start_id is not None:
            info["remoteStartId"] = draft.remote_start_id
        payload: dict[str, Any] = {
            "eventType": draft.event_type,
            "timestamp": stamp,
            "triggerReason": draft.trigger_reason,
            "transactionInfo": info,
        }
        if self.link.state != LinkState.CONNECTED:
            payload["offline"] = True
        if draft.id_token is not None:
            payload["idToken"] = draft.id_token
        if draft.evse_id is not None:
            payload["evse"] = {"id": draft.evse_id, "connectorId": 1}
        if draft.meter in ("Transaction.Begin", "Transaction.End"):
            if energy_Wh is None:
                energy_Wh = self.energy_Wh(evse_id)
            value = register_value(energy_Wh, stamp, draft.meter)  # first: it is meterStart
            if draft.meter == "Transaction.Begin":
                begun = map(sampled_value_201, self.begun(evse_id))
                value["sampledValue"] += [sv for sv in begun if sv is not None]
            payload["meterValue"] = [value]
        return payload

    async def _record(
        self,
        evse_id: int,
        draft: Draft,
        payload: dict[str, Any],
        *,
        id_tag: str | None = None,
        energy_Wh: float | None = None,
    ) -> int | None:
        """Write one event (the write lock held); returns the transaction's local id.

        ``energy_Wh``: the register an Ended leaves (else the meter's now)."""

        def build(seq_no: int) -> str:
            return json.dumps({**payload, "seqNo": seq_no})

        log_ = self.store.transaction_log
        if draft.event_type == "Started":
            tag = id_tag or (draft.id_token or {}).get("idToken", "")
            meter = payload.get("meterValue", [{}])[0].get("sampledValue", [{}])[0]
            local_id = await log_.begin_transaction_event(
                evse_id, tag, int(meter.get("value", 0)), payload["timestamp"], draft.tx_id, build
            )
            self._local[draft.tx_id], self._tx[local_id] = local_id, draft.tx_id
            log.info("E%d transaction %s started (%s)", evse_id, draft.tx_id, draft.trigger_reason)
            return local_id
        local_id = self._local.get(draft.tx_id)
        if local_id is None:
            log.error("E%d %s of transaction %s not recorded: its start was not",
                      evse_id, draft.event_type, draft.tx_id)  # fmt: skip
            return None
        stop = None
        if draft.event_type == "Ended":
            energy = self.energy_Wh(evse_id) if energy_Wh is None else energy_Wh
            stop = (evse_id, energy, payload["timestamp"])
            log.info("E%d transaction %s ended (%s)", evse_id, draft.tx_id, draft.stopped_reason)
        await log_.transaction_event(local_id, build, id_tag=id_tag, stop=stop)
        return local_id

    # -- delivery ------------------------------------------------------------------------------

    def prepare(self, entry: OutboxEntry, payload: dict[str, Any]) -> str | None:
        if entry.action != "TransactionEvent":
            return f"an OCPP 2.0.1 charge point cannot send {entry.action} (queued under 1.6)"
        return None

    def check(self, entry: OutboxEntry, result: dict[str, Any]) -> str | None:
        return None

    def announce(
        self,
        outbox: OutboxPort,
        entry: OutboxEntry,
        payload: dict[str, Any],
        result: dict[str, Any],
    ) -> None:
        """An answer's idTokenInfo feeds the cache and tells the start (or the running
        transaction, StopTxOnInvalidId) what the CSMS thinks of the idToken."""
        if payload.get("eventType") == "Ended":  # its last message: the ids are not needed now
            tx_id = self._tx.pop(entry.local_id, None)
            if tx_id is not None:
                self._local.pop(tx_id, None)
        token = payload.get("idToken")
        if not isinstance(token, dict):
            return
        answer = result.get("idTokenInfo")
        if isinstance(answer, dict):
            info = id_tag_info(answer)
            outbox.tell_id_tag_info(str(token.get("idToken", "")), info)
        else:  # required with an idToken; a CSMS that says nothing refuses nothing
            log.warning("TransactionEvent with idToken %s answered without idTokenInfo",
                        token.get("idToken"))  # fmt: skip
            info = {"status": "Accepted"}
        if payload.get("eventType") != "Ended":
            outbox.confirm(entry.local_id, entry.local_id, info)

    def learnt_id(self, entry: OutboxEntry, result: dict[str, Any]) -> int | None:
        return None
