"""OCPP 2.0.1's dialect of the outbox, on a real SQLite database and the real EVSE machine.

The machine is driven as the charger drives it and its outcomes are fed to the dialect as the
charger's event listener does; the services' calls (start, sample, stop) are made as
`hilsim.transactions` and `hilsim.metering` make them. What leaves is judged by the official
TransactionEventRequest schema (additionalProperties false) and by the seqNo rules.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft6Validator, FormatChecker

from hilsim.clock import Clock
from hilsim.evse import Connector, Policy, events
from hilsim.keys import ConfigurationKeys
from hilsim.ocpp.session import LinkState
from hilsim.ocpp201.transaction_events import TransactionEvents
from hilsim.ocpp201.tx_tracker import TxPoints, parse_points
from hilsim.ocpp201.tx_wire import ended_meter_values, meter_value_201, register_value
from hilsim.outbox import Outbox
from hilsim.store import Store
from hilsim.tasks import TaskSet

TAG = "TAG1"
STAMP = "2026-01-01T00:00:00.000Z"


def schema_validator(name: str) -> Draft6Validator:
    text = resources.files("ocpp.v201.schemas").joinpath(f"{name}.json").read_text()
    return Draft6Validator(json.loads(text), format_checker=FormatChecker())


REQUEST = schema_validator("TransactionEventRequest")


def violations(payload: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in REQUEST.iter_errors(payload)]


class FakeLink:
    """The CsmsLink as the outbox uses it, with a CSMS that answers every TransactionEvent."""

    def __init__(self, connected: bool = True) -> None:
        self.state = LinkState.CONNECTED if connected else LinkState.DISCONNECTED
        self.connected = asyncio.Event()
        self.disconnected = asyncio.Event()
        if connected:
            self.connected.set()
        self.response_timeout = 5.0
        self.sent: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self.id_token_status = "Accepted"

    def go_online(self) -> None:
        self.state = LinkState.CONNECTED
        self.connected.set()

    async def submit(self, job: Any, name: str, *, quiet: bool = False) -> Any:
        return await job(self)

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        assert action == "TransactionEvent"
        self.sent.append(payload)
        self.arrived.set()
        if "idToken" in payload:
            return {"idTokenInfo": {"status": self.id_token_status}}
        return {}

    async def wait_sent(self, count: int) -> list[dict[str, Any]]:
        async with asyncio.timeout(5):
            while len(self.sent) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.sent


class Rig:
    """One EVSE: the machine, the outbox in its 2.0.1 dialect, over one database."""

    def __init__(self, store: Store, link: FakeLink, points: TxPoints) -> None:
        self.store, self.link, self.points = store, link, points
        self.energy = 1000.0
        self.machine = Connector(1, Policy())
        self.tasks = TaskSet("test")
        self.now = 0.0
        self.outbox = Outbox(
            store, link, ConfigurationKeys(),  # type: ignore[arg-type]
            lambda outbox: TransactionEvents(
                outbox, store, link, Clock(), self.tasks,  # type: ignore[arg-type]
                energy_Wh=lambda _: self.energy, points=lambda: self.points,
            ),
        )  # fmt: skip
        self.events: TransactionEvents = self.outbox.messages  # type: ignore[assignment]
        self.runner: asyncio.Task[None] | None = None

    def feed(self, event: events.Event) -> list[Any]:
        self.now += 1
        outcome = self.machine.handle(event, self.now)
        self.events.on_event(1, event, outcome)
        return list(outcome.effects)

    async def settle(self) -> None:
        while pending := self.tasks.pending():
            await asyncio.gather(*pending)

    async def local_start(self) -> int:
        """What `hilsim.transactions` does for SendStartTransaction."""
        await self.settle()
        local_id = await self.outbox.start(1, TAG, int(self.energy), STAMP, None)
        answer = await self.outbox.wait_confirmed(local_id, 5 if self.online else 0.01)
        status = "Accepted" if answer is None else answer[1]["status"]
        self.feed(events.TransactionStarted(local_id, status))
        return local_id

    async def plug_tag_start(self) -> int:
        """Plugged in, tag presented and accepted, the transaction started: its local id."""
        self.feed(events.PlugIn())
        self.feed(events.PresentTag(TAG))
        self.feed(events.AuthorizeResult(TAG, "Accepted"))
        return await self.local_start()

    @property
    def online(self) -> bool:
        return self.link.state == LinkState.CONNECTED

    async def sample(self, context: str = "Sample.Periodic") -> None:
        local_id = self.machine.state.local_id
        self.energy += 500
        value = [{"timestamp": STAMP, "sampledValue": [
            {"value": f"{self.energy:.0f}", "context": context,
             "measurand": "Energy.Active.Import.Register", "location": "Outlet", "unit": "Wh"},
            {"value": "49.98", "context": context, "measurand": "Frequency",
             "location": "Outlet"},
        ]}]  # fmt: skip
        kept = {"timestamp": STAMP, "sampledValue": [{"value": f"{self.energy:.0f}",
                "context": context, "measurand": "Energy.Active.Import.Register",
                "location": "Outlet", "unit": "Wh"}]}  # fmt: skip
        await self.outbox.sample(1, self.energy, STAMP, local_id, value, kept)

    async def local_stop(self, effect: Any) -> None:
        """What `hilsim.transactions` does for SendStopTransaction."""
        await self.settle()
        await self.outbox.stop(
            effect.local_id, 1, int(self.energy), self.energy, STAMP, effect.reason,
            effect.id_tag, None,
        )  # fmt: skip

    def run(self) -> None:
        self.runner = asyncio.create_task(self.outbox.run())

    async def close(self) -> None:
        await self.settle()
        if self.runner is not None:
            self.runner.cancel()
            await asyncio.gather(self.runner, return_exceptions=True)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(tmp_path / "hilsim.db")
    yield store
    await store.close()


def stop_effect(effects: list[Any]) -> Any:
    (stop,) = [e for e in effects if type(e).__name__ == "SendStopTransaction"]
    return stop


def check_sequence(sent: list[dict[str, Any]]) -> None:
    for payload in sent:
        assert violations(payload) == [], payload
    by_tx: dict[str, list[int]] = {}
    for payload in sent:
        by_tx.setdefault(payload["transactionInfo"]["transactionId"], []).append(payload["seqNo"])
    for seq in by_tx.values():
        assert seq == list(range(len(seq)))


async def test_a_session_with_the_defaults_is_started_updated_ended(store: Store) -> None:
    link = FakeLink()
    rig = Rig(store, link, TxPoints())
    rig.run()
    local_id = await rig.plug_tag_start()
    assert rig.outbox.transaction_id(local_id) == local_id
    tx_id = rig.events.tx_id(local_id)
    assert tx_id is not None and len(tx_id) == 36
    assert rig.events.local_id_of(tx_id) == local_id
    await rig.sample()
    await rig.sample("Sample.Clock")
    rig.feed(events.EvSuspend())
    effects = rig.feed(events.PresentTag(TAG))
    await rig.local_stop(stop_effect(effects))
    sent = await link.wait_sent(5)
    check_sequence(sent)
    types = [(p["eventType"], p["triggerReason"]) for p in sent]
    assert types == [
        ("Started", "Authorized"),
        ("Updated", "MeterValuePeriodic"),
        ("Updated", "MeterValueClock"),
        ("Updated", "ChargingStateChanged"),
        ("Ended", "StopAuthorized"),
    ]
    started, periodic, _, suspended, end = sent
    assert started["idToken"] == {"idToken": TAG, "type": "ISO14443"}
    assert started["evse"] == {"id": 1, "connectorId": 1}
    assert started["transactionInfo"]["chargingState"] == "Charging"
    assert started["meterValue"][0]["sampledValue"][0]["context"] == "Transaction.Begin"
    assert "offline" not in started
    frequency = periodic["meterValue"][0]["sampledValue"][1]
    assert frequency == {"value": 49.98, "context": "Sample.Periodic", "measurand": "Frequency",
                         "location": "Outlet", "unitOfMeasure": {"unit": "Hz"}}  # fmt: skip
    assert suspended["transactionInfo"]["chargingState"] == "SuspendedEV"
    assert end["transactionInfo"]["stoppedReason"] == "Local"
    contexts = [mv["sampledValue"][0]["context"] for mv in end["meterValue"]]
    assert contexts == ["Sample.Periodic", "Sample.Clock", "Transaction.End"]
    await rig.outbox.drained()
    assert await store.transactions() == []  # forgotten once every event was confirmed
    await rig.close()


async def test_a_sample_2_0_1_cannot_say_is_no_updated(store: Store) -> None:
    """A sample of only 1.6 measurands (Temperature, RPM): no Updated without a meterValue, and
    the next sample's Updated keeps its seqNo consecutive."""
    link = FakeLink()
    rig = Rig(store, link, TxPoints())
    rig.run()
    local_id = await rig.plug_tag_start()
    only_16 = [{"timestamp": STAMP, "sampledValue": [
        {"value": "21.5", "context": "Sample.Periodic", "measurand": "Temperature",
         "location": "Body", "unit": "Celcius"},
        {"value": "1200", "context": "Sample.Periodic", "measurand": "RPM", "location": "Body"},
    ]}]  # fmt: skip
    await rig.outbox.sample(1, rig.energy, STAMP, local_id, only_16, None)
    await rig.sample()
    effects = rig.feed(events.PresentTag(TAG))
    await rig.local_stop(stop_effect(effects))
    sent = await link.wait_sent(3)
    check_sequence(sent)
    assert [(p["eventType"], p["triggerReason"]) for p in sent] == [
        ("Started", "Authorized"), ("Updated", "MeterValuePeriodic"), ("Ended", "StopAuthorized"),
    ]  # fmt: skip
    measured = {v["measurand"] for p in sent for mv in p["meterValue"] for v in mv["sampledValue"]}
    assert measured == {"Energy.Active.Import.Register", "Frequency"}
    await rig.close()


async def test_ev_connected_start_point_starts_at_plug_in(store: Store) -> None:
    link = FakeLink()
    rig = Rig(store, link, TxPoints(parse_points("EVConnected"), parse_points("EVConnected")))
    rig.run()
    rig.feed(events.PlugIn())
    await rig.settle()
    rig.feed(events.PresentTag(TAG))
    rig.feed(events.AuthorizeResult(TAG, "Accepted"))
    local_id = await rig.local_start()
    tx_id = rig.events.tx_id(local_id)
    effects = rig.feed(events.Unplug())
    await rig.local_stop(stop_effect(effects))
    sent = await link.wait_sent(4)
    check_sequence(sent)
    assert [(p["eventType"], p["triggerReason"]) for p in sent] == [
        ("Started", "CablePluggedIn"),
        ("Updated", "Authorized"),
        ("Updated", "ChargingStateChanged"),
        ("Ended", "EVCommunicationLost"),
    ]
    assert sent[0]["transactionInfo"]["chargingState"] == "EVConnected"
    assert "idToken" not in sent[0] and sent[1]["idToken"]["idToken"] == TAG
    assert tx_id == sent[0]["transactionInfo"]["transactionId"]
    await rig.outbox.drained()
    assert rig.events.tx_id(local_id) is None  # forgotten once its Ended was confirmed
    await rig.close()


async def test_authorized_start_point_starts_before_plug_in(store: Store) -> None:
    link = FakeLink()
    rig = Rig(store, link, TxPoints(parse_points("Authorized")))
    rig.run()
    rig.feed(events.PresentTag(TAG))
    rig.feed(events.AuthorizeResult(TAG, "Accepted"))
    rig.feed(events.PlugIn())
    await rig.local_start()
    effects = rig.feed(events.RemoteStop(rig.machine.state.local_id or 0))
    await rig.local_stop(stop_effect(effects))
    sent = await link.wait_sent(4)
    check_sequence(sent)
    assert [(p["eventType"], p["triggerReason"]) for p in sent] == [
        ("Started", "Authorized"),
        ("Updated", "CablePluggedIn"),
        ("Updated", "ChargingStateChanged"),
        ("Ended", "RemoteStop"),
    ]
    assert sent[0]["transactionInfo"]["chargingState"] == "Idle"
    assert sent[-1]["transactionInfo"]["stoppedReason"] == "Remote"
    await rig.close()


async def test_an_invalid_id_token_deauthorizes_the_transaction(store: Store) -> None:
    link = FakeLink()
    link.id_token_status = "Blocked"
    rig = Rig(store, link, TxPoints())
    rig.run()
    await rig.plug_tag_start()  # the Started's idTokenInfo says Blocked: StopTxOnInvalidId
    assert rig.machine.state.transaction is None
    await rig.close()


async def test_offline_session_and_power_loss_keep_seq_no_across_a_restart(
    tmp_path: Path,
) -> None:
    """Offline from plug-in to power cut; at the next start the transaction ends (PowerLoss)
    with the next seqNo, and everything reaches the CSMS marked offline, numbered 0, 1, 2..."""
    path = tmp_path / "hilsim.db"
    store = await Store.open(path)
    link = FakeLink(connected=False)
    rig = Rig(store, link, TxPoints())
    local_id = await rig.plug_tag_start()
    await rig.sample()
    await rig.sample()
    await rig.close()
    await store.close()  # the power cut

    store = await Store.open(path)
    try:
        (row,) = await store.transactions()
        assert (row.local_id, row.next_seq_no, row.stopped) == (local_id, 3, False)
        link = FakeLink(connected=False)
        rig = Rig(store, link, TxPoints())
        await rig.outbox.recover()
        link.go_online()
        rig.run()
        sent = await link.wait_sent(4)
        check_sequence(sent)
        assert [p["seqNo"] for p in sent] == [0, 1, 2, 3]
        assert all(p["offline"] is True for p in sent)
        end = sent[-1]
        assert (end["eventType"], end["triggerReason"]) == ("Ended", "AbnormalCondition")
        assert end["transactionInfo"]["stoppedReason"] == "PowerLoss"
        assert end["transactionInfo"]["transactionId"] == row.tx_id
        await rig.outbox.drained()
        assert await store.transactions() == []
        await rig.close()
    finally:
        await store.close()


async def test_a_16_row_left_in_the_outbox_is_set_aside(store: Store) -> None:
    await store.begin_transaction(1, TAG, 0, STAMP, json.dumps({"connectorId": 1}))
    link = FakeLink()
    rig = Rig(store, link, TxPoints())
    rig.run()
    await rig.outbox.drained()
    (dead,) = await store.outbox_dead()
    assert dead.action == "StartTransaction" and "2.0.1" in dead.reason
    await rig.close()


async def test_trigger_message_sends_an_updated_with_the_charging_state(store: Store) -> None:
    link = FakeLink()
    rig = Rig(store, link, TxPoints())
    rig.run()
    assert rig.events.triggered(1) is False
    local_id = await rig.plug_tag_start()
    assert rig.events.triggered(1) is True
    sent = await link.wait_sent(2)
    check_sequence(sent)
    assert sent[1]["triggerReason"] == "Trigger"
    assert sent[1]["transactionInfo"]["chargingState"] == "Charging"
    await rig.outbox.drained()
    assert await rig.events.messages_queued(local_id) == 0
    await rig.close()


def test_an_ended_states_the_end_register_once() -> None:
    end_16 = {"timestamp": STAMP, "sampledValue": [
        {"value": "1500", "context": "Transaction.End", "measurand":
         "Energy.Active.Import.Register", "location": "Outlet", "unit": "Wh"}]}  # fmt: skip
    register = [register_value(1500.0, STAMP, "Transaction.End")]
    assert ended_meter_values([end_16], register) == [meter_value_201(end_16)]
    assert ended_meter_values([], register) == register
    assert violations({"eventType": "Ended", "timestamp": STAMP, "triggerReason": "Trigger",
                       "seqNo": 0, "transactionInfo": {"transactionId": "t"},
                       "meterValue": ended_meter_values([end_16], register)}) == []  # fmt: skip


@pytest.mark.parametrize("start_point", ["PowerPathClosed", "EVConnected"])
async def test_a_plug_in_before_the_stop_arrives_belongs_to_the_next_session(
    store: Store, start_point: str
) -> None:
    """Found by a soak: unplugged, plugged in again before the machine's stop reached the
    outbox, and the old transaction got an Updated (CablePluggedIn) after its Ended."""
    link = FakeLink()
    rig = Rig(store, link, TxPoints(parse_points(start_point)))
    rig.run()
    local_id = await rig.plug_tag_start()
    old = rig.events.tx_id(local_id)
    effects = rig.feed(events.Unplug())  # the machine's transaction ends here ...
    rig.feed(events.PlugIn())  # ... and the next EV arrives before its stop is written
    await rig.local_stop(stop_effect(effects))
    await rig.settle()
    # Old: Started, Ended (PowerPathClosed); Started, Updated x2, Ended, then the new Started.
    sent = await link.wait_sent(5 if start_point == "EVConnected" else 2)
    check_sequence(sent)
    of_old = [(p["eventType"], p["triggerReason"]) for p in sent
              if p["transactionInfo"]["transactionId"] == old]  # fmt: skip
    assert of_old[-1] == ("Ended", "EVCommunicationLost")
    assert ("Updated", "CablePluggedIn") not in of_old
    if start_point == "EVConnected":  # the plug-in starts the next one
        new = [p for p in sent if p["transactionInfo"]["transactionId"] != old]
        assert [(p["eventType"], p["triggerReason"]) for p in new] == [
            ("Started", "CablePluggedIn")
        ]
    await rig.close()


async def test_an_event_drafted_before_the_stop_is_written_before_the_ended(store: Store) -> None:
    """Found by a soak with sessions of 50 ms: an Updated (ChargingStateChanged) drafted just
    before the stop waited for the outbox's lock, the stop took it first, and the Updated went
    out after the Ended."""
    link = FakeLink()
    rig = Rig(store, link, TxPoints())
    rig.run()
    local_id = await rig.plug_tag_start()
    await rig.settle()
    old = rig.events.tx_id(local_id)
    rig.feed(events.EvSuspend())  # an Updated is drafted; its write waits for the lock ...
    stop = stop_effect(rig.feed(events.PresentTag(TAG)))
    await rig.outbox.stop(  # ... which the stop takes at once, as `hilsim.transactions` does
        stop.local_id, 1, int(rig.energy), rig.energy, STAMP, stop.reason, stop.id_tag, None
    )  # fmt: skip
    await rig.settle()
    sent = await link.wait_sent(3)
    check_sequence(sent)
    assert [(p["eventType"], p["triggerReason"]) for p in sent] == [
        ("Started", "Authorized"),
        ("Updated", "ChargingStateChanged"),
        ("Ended", "StopAuthorized"),
    ]
    assert {p["transactionInfo"]["transactionId"] for p in sent} == {old}
    await rig.close()


async def test_the_next_start_waits_for_the_last_stop(store: Store) -> None:
    """Found by the same soak: unplugged, plugged in and tagged again before the first stop was
    written; the new start was an Updated of the old transaction, after its Ended, and the
    new transaction never had a Started."""
    link = FakeLink()
    rig = Rig(store, link, TxPoints())
    rig.run()
    first = await rig.plug_tag_start()
    await rig.settle()
    old = rig.events.tx_id(first)
    stop = stop_effect(rig.feed(events.Unplug()))  # the stop is on its way ...
    rig.feed(events.PlugIn())
    rig.feed(events.PresentTag(TAG))
    rig.feed(events.AuthorizeResult(TAG, "Accepted"))
    # ... and the machine's next transaction starts before it is written.
    start = asyncio.create_task(rig.outbox.start(1, TAG, int(rig.energy), STAMP, None))
    await rig.outbox.stop(
        stop.local_id, 1, int(rig.energy), rig.energy, STAMP, stop.reason, stop.id_tag, None
    )  # fmt: skip
    second = await asyncio.wait_for(start, 5)
    await rig.settle()
    sent = await link.wait_sent(3)
    check_sequence(sent)
    assert [(p["eventType"], p["transactionInfo"]["transactionId"] == old) for p in sent] == [
        ("Started", True),
        ("Ended", True),
        ("Started", False),
    ]
    assert rig.events.tx_id(second) == sent[2]["transactionInfo"]["transactionId"]
    await rig.close()
