"""OCPP 2.0.1 transactions end to end: a real service with ``ocpp_version = "2.0.1"`` against a
scripted 2.0.1 CSMS on a real websockets server (tests/scripted_csms201.py).

Plug, tag, charge with meter values, RequestStopTransaction, unplug; a remote start; a session
while the CSMS is down, delivered later with ``offline: true`` and consecutive seqNo; a power
cut (a real `hilsim run`, SIGKILLed) ending the transaction with PowerLoss at the next start.
Every frame either side sends is checked against the official 2.0.1 schemas, strictly.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from scripted_csms201 import SUBPROTOCOL, ScriptedCsms201
from test_offline import preset_keys
from test_reconnect import free_port
from websockets.asyncio.server import serve

from hilsim.config import Settings
from hilsim.control import request
from hilsim.csms import CentralSystem
from hilsim.service import Service
from hilsim.web.view import connector_view

from conftest import CP_ID, TAG, make_settings, start_service, stop_service

VERSION = 'ocpp_version = "2.0.1"'


def answer_transaction_event(payload: dict[str, Any]) -> dict[str, Any]:
    """A CSMS that accepts every idToken (idTokenInfo is required when an idToken was sent)."""
    if "idToken" in payload:
        return {"idTokenInfo": {"status": "Accepted"}}
    return {}


class Csms201(ScriptedCsms201):
    """The scripted CSMS on a given port (0: any), so it can come up after the charge point."""

    def __init__(self, port: int = 0) -> None:
        super().__init__()
        self.port = port
        self.answers["TransactionEvent"] = answer_transaction_event

    async def __aenter__(self) -> Csms201:
        self._server = await serve(
            self._serve, "127.0.0.1", self.port, subprotocols=[SUBPROTOCOL]  # type: ignore[list-item]
        )
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        return self


@pytest.fixture
async def csms() -> AsyncIterator[Csms201]:  # type: ignore[override]
    async with Csms201() as central:
        yield central
        assert central.violations() == []


async def ctl(settings: Settings, cmd: str, connector: int | None = None, **extra: Any) -> None:
    payload: dict[str, Any] = {"cmd": cmd, **extra}
    if connector is not None:
        payload["connector"] = connector
    answer = await request(settings.control.socket, payload)
    assert answer["ok"], answer


def settings_201(directory: Path, url: str) -> Settings:
    return make_settings(directory, url, extra_charge_point=VERSION)


async def running(
    csms: Csms201, short_dir: Path, **keys: str
) -> AsyncIterator[tuple[Service, Settings]]:
    settings = settings_201(short_dir, csms.url)
    await preset_keys(settings, **keys)
    service, task = await start_service(settings)
    try:
        await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 2)
        yield service, settings
    finally:
        await stop_service(service, task)


def events_of(csms: ScriptedCsms201, tx_id: str) -> list[dict[str, Any]]:
    return [
        p for p in csms.calls("TransactionEvent")
        if p["transactionInfo"]["transactionId"] == tx_id
    ]  # fmt: skip


def assert_numbered(sent: list[dict[str, Any]]) -> None:
    """seqNo 0, 1, 2...; a message sent again (its confirmation lost in a power cut) is the
    same message, never a new one under an old number."""
    by_seq: dict[int, dict[str, Any]] = {}
    for payload in sent:
        assert by_seq.setdefault(payload["seqNo"], payload) == payload
    sent = [by_seq[seq] for seq in sorted(by_seq)]
    assert sorted(by_seq) == list(range(len(sent)))
    assert sent[0]["eventType"] == "Started" and sent[-1]["eventType"] == "Ended"
    assert all(p["eventType"] == "Updated" for p in sent[1:-1])


async def test_plug_tag_charge_remote_stop_unplug(csms: Csms201, short_dir: Path) -> None:
    async for service, settings in running(csms, short_dir, MeterValueSampleInterval="1"):
        nothing = await csms.result("TriggerMessage", {"requestedMessage": "TransactionEvent"})
        assert nothing == {"status": "Rejected"}  # no transaction to report
        await ctl(settings, "plug", 1)
        await csms.wait_for("StatusNotification", lambda p: p["connectorStatus"] == "Occupied")
        await ctl(settings, "tag", 1, id_tag=TAG)
        (started,) = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Started")
        assert started["triggerReason"] == "Authorized"
        assert started["idToken"] == {"idToken": TAG, "type": "ISO14443"}
        assert started["evse"] == {"id": 1, "connectorId": 1}
        assert started["transactionInfo"]["chargingState"] == "Charging"
        assert started["seqNo"] == 0 and "offline" not in started
        tx_id = started["transactionInfo"]["transactionId"]
        samples = await csms.wait_for(
            "TransactionEvent", lambda p: p["triggerReason"] == "MeterValuePeriodic", count=2
        )
        energy = [
            v["value"] for s in samples for mv in s["meterValue"] for v in mv["sampledValue"]
            if v.get("measurand") == "Energy.Active.Import.Register"
        ]  # fmt: skip
        assert energy == sorted(energy) and energy[-1] > 0
        limited = {**tx_profile(5000.0), "transactionId": tx_id}
        answer = await csms.result("SetChargingProfile", {"evseId": 1, "chargingProfile": limited})
        assert answer == {"status": "Accepted"}  # smart charging knows the transactionId
        status = await csms.result("GetTransactionStatus", {"transactionId": tx_id})
        assert status["ongoingIndicator"] is True  # a sample may be on its way: messagesInQueue
        triggered = await csms.result(
            "TriggerMessage", {"requestedMessage": "TransactionEvent", "evse": {"id": 1}}
        )
        assert triggered == {"status": "Accepted"}
        await csms.wait_for("TransactionEvent", lambda p: p["triggerReason"] == "Trigger")
        assert await csms.result("RequestStopTransaction", {"transactionId": "nope"}) == {
            "status": "Rejected"
        }  # fmt: skip
        stopped = await csms.result("RequestStopTransaction", {"transactionId": tx_id})
        assert stopped == {"status": "Accepted"}
        (ended,) = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended")
        assert ended["triggerReason"] == "RemoteStop"
        assert ended["transactionInfo"]["stoppedReason"] == "Remote"
        contexts = {v["context"] for mv in ended["meterValue"] for v in mv["sampledValue"]}
        assert "Transaction.End" in contexts
        await ctl(settings, "unplug", 1)
        await csms.wait_for(
            "StatusNotification",
            lambda p: p["evseId"] == 1 and p["connectorStatus"] == "Available",
        )
        sent = events_of(csms, tx_id)
        assert_numbered(sent)
        await asyncio.wait_for(service.charger.outbox.drained(), 5)
        assert service.charger.outbox.messages.local_id_of(tx_id) is None  # type: ignore[attr-defined]
        assert await csms.result("GetTransactionStatus", {"transactionId": tx_id}) == {
            "ongoingIndicator": False, "messagesInQueue": False
        }  # fmt: skip
        assert await csms.result("GetTransactionStatus", {}) == {"messagesInQueue": False}


async def test_tx_start_point_ev_connected_starts_at_plug_in(
    csms: Csms201, short_dir: Path
) -> None:
    """TxStartPoint EVConnected (SetVariables): Started at plug-in, the idToken in an Updated
    (Authorized), clock-aligned values in Updated (MeterValueClock)."""
    async for _service, settings in running(csms, short_dir, ClockAlignedDataInterval="1"):
        answer = await csms.result("SetVariables", {"setVariableData": [{
            "component": {"name": "TxCtrlr"}, "variable": {"name": "TxStartPoint"},
            "attributeValue": "EVConnected"}]})  # fmt: skip
        assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"
        await ctl(settings, "plug", 1)
        (started,) = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Started")
        assert started["triggerReason"] == "CablePluggedIn" and "idToken" not in started
        assert started["transactionInfo"]["chargingState"] == "EVConnected"
        await ctl(settings, "tag", 1, id_tag=TAG)
        (authorized,) = await csms.wait_for(
            "TransactionEvent", lambda p: p["triggerReason"] == "Authorized"
        )
        assert authorized["eventType"] == "Updated" and authorized["idToken"]["idToken"] == TAG
        (clock,) = await csms.wait_for(
            "TransactionEvent", lambda p: p["triggerReason"] == "MeterValueClock", timeout=5
        )
        assert clock["meterValue"][0]["sampledValue"][0]["context"] == "Sample.Clock"
        await ctl(settings, "unplug", 1)
        (ended,) = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended")
        assert ended["transactionInfo"]["stoppedReason"] == "EVDisconnected"
        assert_numbered(events_of(csms, started["transactionInfo"]["transactionId"]))


async def shown(settings: Settings) -> dict[str, Any]:
    """Connector 1 as `hilsim ctl status` (the real control socket) and the page show it."""
    answer = await request(settings.control.socket, {"cmd": "status"})
    assert answer["ok"], answer
    c1, c2 = answer["result"]["connectors"]
    assert c2["transaction_id"] is None
    assert connector_view(c1, online=True)["transaction_id"] == c1["transaction_id"]
    return c1  # type: ignore[no-any-return]


async def test_ctl_status_and_the_page_show_the_transaction_id_the_csms_knows(
    csms: Csms201, short_dir: Path
) -> None:
    """2.0.1: the charge point's UUID transactionId, from the Started on (TxStartPoint
    EVConnected: before the machine's transaction exists), not the local integer."""
    async for _service, settings in running(csms, short_dir):
        answer = await csms.result("SetVariables", {"setVariableData": [{
            "component": {"name": "TxCtrlr"}, "variable": {"name": "TxStartPoint"},
            "attributeValue": "EVConnected"}]})  # fmt: skip
        assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"

        assert (await shown(settings))["transaction_id"] is None
        await ctl(settings, "plug", 1)
        (started,) = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Started")
        tx_id = started["transactionInfo"]["transactionId"]
        c1 = await shown(settings)
        assert (c1["transaction_id"], c1["local_transaction_id"]) == (tx_id, None)
        await ctl(settings, "tag", 1, id_tag=TAG)
        await csms.wait_for("TransactionEvent", lambda p: p["triggerReason"] == "Authorized")
        c1 = await shown(settings)
        assert c1["transaction_id"] == tx_id and isinstance(c1["local_transaction_id"], int)
        await ctl(settings, "unplug", 1)
        await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended")
        assert (await shown(settings))["transaction_id"] is None


def tx_profile(limit_W: float) -> dict[str, Any]:
    period = {"startPeriod": 0, "limit": limit_W}
    schedule = {"id": 1, "chargingRateUnit": "W", "chargingSchedulePeriod": [period]}
    return {"id": 1, "stackLevel": 0, "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative", "chargingSchedule": [schedule]}  # fmt: skip


async def test_request_start_with_a_charging_profile_limits_the_power(
    csms: Csms201, short_dir: Path
) -> None:
    async for _service, settings in running(csms, short_dir, MeterValueSampleInterval="1"):
        await ctl(settings, "plug", 1)
        token = {"idToken": "APP-2", "type": "Central"}
        request = {"idToken": token, "remoteStartId": 5, "evseId": 1}
        answer = await csms.result(
            "RequestStartTransaction", {**request, "chargingProfile": tx_profile(3000)}
        )
        assert answer == {"status": "Accepted"}
        (sample,) = await csms.wait_for(
            "TransactionEvent", lambda p: p["triggerReason"] == "MeterValuePeriodic"
        )
        power = [
            v["value"] for mv in sample["meterValue"] for v in mv["sampledValue"]
            if v.get("measurand") == "Power.Active.Import" and "phase" not in v
        ]  # fmt: skip
        assert power and 0 < power[0] <= 3000.0  # 11 kW connector, 3 kW profile
        started = csms.calls("TransactionEvent")[0]
        assert started["transactionInfo"]["remoteStartId"] == 5
        tx_id = started["transactionInfo"]["transactionId"]
        assert await csms.result("RequestStopTransaction", {"transactionId": tx_id}) == {
            "status": "Accepted"
        }  # fmt: skip
        await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended")


async def test_request_start_transaction_sends_remote_start_id(
    csms: Csms201, short_dir: Path
) -> None:
    async for _service, settings in running(csms, short_dir):
        await ctl(settings, "plug", 2)
        token = {"idToken": "APP-1", "type": "Central"}
        answer = await csms.result(
            "RequestStartTransaction", {"idToken": token, "remoteStartId": 42, "evseId": 2}
        )
        assert answer == {"status": "Accepted"}
        (started,) = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Started")
        assert started["triggerReason"] == "RemoteStart"
        assert started["transactionInfo"]["remoteStartId"] == 42
        assert started["idToken"] == token and started["evse"]["id"] == 2
        profile = tx_profile(3000.0)
        profile["chargingProfilePurpose"] = "ChargingStationMaxProfile"
        refused = await csms.result(
            "RequestStartTransaction",
            {"idToken": token, "remoteStartId": 43, "evseId": 1, "chargingProfile": profile},
        )
        assert refused["status"] == "Rejected"
        assert refused["statusInfo"]["reasonCode"] == "InvalidValue"
        busy = await csms.result(
            "RequestStartTransaction", {"idToken": token, "remoteStartId": 44, "evseId": 2}
        )
        assert busy["status"] == "Rejected"
        assert busy["transactionId"] == started["transactionInfo"]["transactionId"]
        await ctl(settings, "unplug", 2)
        (ended,) = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended")
        assert ended["transactionInfo"]["stoppedReason"] == "EVDisconnected"
        assert ended["triggerReason"] == "EVCommunicationLost"


async def test_a_blocked_id_token_ends_the_transaction(csms: Csms201, short_dir: Path) -> None:
    """The Started's idTokenInfo is the verdict 1.6's StartTransaction answer was:
    StopTxOnInvalidId ends the transaction (DeAuthorized)."""

    def blocked(payload: dict[str, Any]) -> dict[str, Any]:
        return {"idTokenInfo": {"status": "Blocked"}} if "idToken" in payload else {}

    csms.answers["TransactionEvent"] = blocked
    async for _service, settings in running(csms, short_dir):
        await ctl(settings, "plug", 1)
        await ctl(settings, "tag", 1, id_tag=TAG)
        (ended,) = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended")
        assert ended["triggerReason"] == "Deauthorized"
        assert ended["transactionInfo"]["stoppedReason"] == "DeAuthorized"
        assert_numbered(events_of(csms, ended["transactionInfo"]["transactionId"]))


async def test_a_session_while_the_csms_is_down_arrives_later_marked_offline(
    short_dir: Path,
) -> None:
    port = free_port()
    settings = settings_201(short_dir, f"ws://127.0.0.1:{port}")
    await preset_keys(settings, AllowOfflineTxForUnknownId="true", MeterValueSampleInterval="1")
    service, task = await start_service(settings)
    try:
        recorded = asyncio.Queue[str]()
        service.charger.outbox.recorded_listeners.append(recorded.put_nowait)
        await ctl(settings, "plug", 1)
        await ctl(settings, "tag", 1, id_tag=TAG)
        for _ in range(3):  # Started and two samples, safely in the database
            await asyncio.wait_for(recorded.get(), 5)
        await ctl(settings, "unplug", 1)
        await asyncio.wait_for(recorded.get(), 5)
        async with Csms201(port) as csms:
            (ended,) = await csms.wait_for(
                "TransactionEvent", lambda p: p["eventType"] == "Ended", timeout=15
            )
            sent = events_of(csms, ended["transactionInfo"]["transactionId"])
            assert_numbered(sent)
            assert all(p["offline"] is True for p in sent)
            assert sent[0]["idToken"]["idToken"] == TAG
            assert ended["transactionInfo"]["stoppedReason"] == "EVDisconnected"
            await asyncio.wait_for(service.charger.outbox.drained(), 5)
            assert csms.violations() == []
    finally:
        await stop_service(service, task)


async def test_an_offline_start_the_csms_refuses_later_is_stopped(short_dir: Path) -> None:
    port = free_port()
    settings = settings_201(short_dir, f"ws://127.0.0.1:{port}")
    await preset_keys(settings, AllowOfflineTxForUnknownId="true")
    service, task = await start_service(settings)
    try:
        recorded = asyncio.Queue[str]()
        service.charger.outbox.recorded_listeners.append(recorded.put_nowait)
        await ctl(settings, "plug", 1)
        await ctl(settings, "tag", 1, id_tag=TAG)
        await asyncio.wait_for(recorded.get(), 5)  # the Started, offline
        async with Csms201(port) as csms:
            csms.answers["TransactionEvent"] = lambda p: (
                {"idTokenInfo": {"status": "Invalid"}} if "idToken" in p else {}
            )
            (ended,) = await csms.wait_for(
                "TransactionEvent", lambda p: p["eventType"] == "Ended", timeout=15
            )
            assert ended["transactionInfo"]["stoppedReason"] == "DeAuthorized"
            assert "offline" not in ended  # it happened once the CSMS was back
            sent = events_of(csms, ended["transactionInfo"]["transactionId"])
            assert_numbered(sent)
            assert sent[0]["offline"] is True
            assert csms.violations() == []
    finally:
        await stop_service(service, task)


async def run_hilsim(config: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hilsim", "--log-level", "WARNING", "run", "--config", config,
        stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def test_a_power_cut_ends_the_transaction_with_power_loss_and_seq_no_going_on(
    csms: Csms201, short_dir: Path
) -> None:
    settings = settings_201(short_dir, csms.url)
    await preset_keys(settings, MeterValueSampleInterval="1")
    proc = await run_hilsim(settings.source)
    try:
        await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 2, timeout=15)
        await ctl(settings, "plug", 1)
        await ctl(settings, "tag", 1, id_tag=TAG)
        await csms.wait_for(
            "TransactionEvent", lambda p: p["triggerReason"] == "MeterValuePeriodic", count=2
        )
        os.kill(proc.pid, signal.SIGKILL)  # the plug pulled
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    before = len({p["seqNo"] for p in csms.calls("TransactionEvent")})
    proc = await run_hilsim(settings.source)
    try:
        (ended,) = await csms.wait_for(
            "TransactionEvent", lambda p: p["eventType"] == "Ended", timeout=15
        )
        assert ended["triggerReason"] == "AbnormalCondition"
        assert ended["transactionInfo"]["stoppedReason"] == "PowerLoss"
        assert ended["seqNo"] >= before  # after every number given before the cut
        assert_numbered(events_of(csms, ended["transactionInfo"]["transactionId"]))
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)


async def test_a_session_against_the_built_in_csms(short_dir: Path) -> None:
    """The same session with `hilsim csms` as the CSMS: its ledger finds nothing wrong (no seqNo
    missing or repeated, Started first, Ended last) and neither side breaks a schema."""
    async with CentralSystem("127.0.0.1", 0) as central:
        settings = settings_201(short_dir, central.url)
        await preset_keys(settings, MeterValueSampleInterval="1")
        service, task = await start_service(settings)
        try:
            session = await central.wait_for_charge_point(CP_ID, timeout=5)
            await session.wait_for("StatusNotification", lambda p: p["evseId"] == 2)
            await ctl(settings, "plug", 1)
            await ctl(settings, "tag", 1, id_tag=TAG)
            started = await session.wait_for(
                "TransactionEvent", lambda p: p["eventType"] == "Started"
            )
            tx_id = started["transactionInfo"]["transactionId"]
            await session.wait_for(
                "TransactionEvent", lambda p: p["triggerReason"] == "MeterValuePeriodic"
            )
            assert (await session.get_transaction_status(tx_id))["ongoingIndicator"] is True
            assert await session.request_stop(tx_id) == "Accepted"
            await session.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended")
            await ctl(settings, "unplug", 1)
            await session.wait_for(
                "StatusNotification",
                lambda p: p["evseId"] == 1 and p["connectorStatus"] == "Available",
            )
            record = central.ledger201[tx_id]
            assert record.problems == [] and not record.active
            assert record.id_token == {"idToken": TAG, "type": "ISO14443"}
            assert record.stopped_reason == "Remote" and record.evse_id == 1
            assert session.violations == []
        finally:
            await stop_service(service, task)
