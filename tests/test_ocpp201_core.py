"""OCPP 2.0.1 foundation: a real `hilsim run`-style service with ``ocpp_version = "2.0.1"``
against a scripted 2.0.1 CSMS on a real websockets server (tests/scripted_csms201.py).

Covers the subprotocol, BootNotification Pending then Accepted, Heartbeat, StatusNotification,
the provisioning handlers, SecurityEventNotification, and malformed or invalid CALLs; every
frame either side sends is checked against the official 2.0.1 schemas, strictly.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from scripted_csms201 import CALLERROR, CALLRESULT, ScriptedCsms201, now

from hilsim.control import request
from hilsim.errors import CsmsError
from hilsim.evse import events
from hilsim.service import Service

from conftest import CP_ID, TAG, make_settings, start_service, stop_service

VERSION = 'ocpp_version = "2.0.1"'


class Running:
    """The service under test, its CSMS and a `hilsim ctl` shortcut."""

    def __init__(self, service: Service, task: asyncio.Task[None], csms: ScriptedCsms201,
                 socket: Path) -> None:  # fmt: skip
        self.service, self.task, self.csms, self.socket = service, task, csms, socket

    async def ctl(self, cmd: str, connector: int | None = None, **extra: Any) -> dict[str, Any]:
        payload: dict[str, Any] = {"cmd": cmd, **extra}
        if connector is not None:
            payload["connector"] = connector
        return await request(self.socket, payload)


@pytest.fixture
async def csms() -> AsyncIterator[ScriptedCsms201]:  # type: ignore[override]
    async with ScriptedCsms201() as central:
        yield central
        assert central.violations() == []


async def _run(csms: ScriptedCsms201, short_dir: Path) -> AsyncIterator[Running]:
    settings = make_settings(short_dir, csms.url, extra_charge_point=VERSION)
    service, task = await start_service(settings)
    try:
        yield Running(service, task, csms, settings.control.socket)
    finally:
        await stop_service(service, task)


@pytest.fixture
async def cp(csms: ScriptedCsms201, short_dir: Path) -> AsyncIterator[Running]:
    async for running in _run(csms, short_dir):
        await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 2)
        yield running


async def test_boot_pending_then_accepted_after_the_interval(
    csms: ScriptedCsms201, short_dir: Path
) -> None:
    csms.queued["BootNotification"] = [{"currentTime": now(), "interval": 1, "status": "Pending"}]
    async for _cp in _run(csms, short_dir):
        boots = await csms.wait_for("BootNotification", count=2)
        assert csms.subprotocols == ["ocpp2.0.1"]
        assert csms.paths == [f"/{CP_ID}"]
        assert boots[0] == {
            "reason": "PowerUp",
            "chargingStation": {"model": "bench", "vendorName": "hilsim",
                                "firmwareVersion": "9.9.9"},
        }  # fmt: skip
        statuses = await csms.wait_for("StatusNotification", count=2)
        # one per EVSE, connector 1 of each; none for "connector 0"
        assert sorted((s["evseId"], s["connectorId"], s["connectorStatus"]) for s in statuses) == [
            (1, 1, "Available"),
            (2, 1, "Available"),
        ]
        [event] = await csms.wait_for("SecurityEventNotification")
        assert event["type"] == "StartupOfTheDevice"
        # Nothing was sent while the boot was Pending: the first StatusNotification comes after
        # the second BootNotification.
        order = [m[2] for sent, m in csms.frames if not sent and m[0] == 2]
        assert order[:2] == ["BootNotification", "BootNotification"]


async def test_heartbeat_and_a_status_on_plug(cp: Running) -> None:
    csms = cp.csms
    status = (await cp.ctl("status"))["result"]
    assert status["csms"]["ocpp_version"] == "2.0.1"
    assert (await csms.result("TriggerMessage", {"requestedMessage": "Heartbeat"})) == {
        "status": "Accepted"
    }
    await csms.wait_for("Heartbeat")
    mark = csms.mark()
    assert (await cp.ctl("plug", 1))["ok"]
    [status] = await csms.wait_for("StatusNotification", since=mark)
    assert (status["evseId"], status["connectorId"]) == (1, 1)
    assert status["connectorStatus"] == "Occupied"


async def test_a_faulted_connector_is_a_problem_until_cleared(cp: Running) -> None:
    csms = cp.csms
    mark = csms.mark()
    assert (await cp.ctl("fault", 2, error_code="HighTemperature"))["ok"]
    [status] = await csms.wait_for("StatusNotification", since=mark)
    assert status["connectorStatus"] == "Faulted"
    [raised] = await csms.wait_for("NotifyEvent", since=mark)
    [data] = raised["eventData"]
    assert data["component"] == {"name": "Connector", "evse": {"id": 2, "connectorId": 1}}
    assert data["techInfo"] == "HighTemperature"
    assert (data["variable"], data["actualValue"], data["trigger"]) == (
        {"name": "Problem"}, "true", "Delta"
    )  # fmt: skip
    mark = csms.mark()
    assert (await cp.ctl("clear", 2))["ok"]
    [cleared] = await csms.wait_for("NotifyEvent", since=mark)
    assert cleared["eventData"][0]["actualValue"] == "false"
    assert cleared["eventData"][0]["cleared"] is True


async def test_change_availability(cp: Running) -> None:
    csms = cp.csms
    mark = csms.mark()
    answer = await csms.result(
        "ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 2}}
    )
    assert answer == {"status": "Accepted"}
    [status] = await csms.wait_for("StatusNotification", since=mark)
    assert (status["evseId"], status["connectorStatus"]) == (2, "Unavailable")
    mark = csms.mark()
    operative = {"operationalStatus": "Operative", "evse": {"id": 2, "connectorId": 1}}
    answer = await csms.result("ChangeAvailability", operative)
    assert answer == {"status": "Accepted"}
    [status] = await csms.wait_for("StatusNotification", since=mark)
    assert (status["evseId"], status["connectorStatus"]) == (2, "Available")
    unknown = await csms.result(
        "ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 7}}
    )
    assert unknown == {"status": "Rejected"}
    mark = csms.mark()
    whole = await csms.result("ChangeAvailability", {"operationalStatus": "Inoperative"})
    assert whole == {"status": "Accepted"}
    await csms.wait_for("StatusNotification", lambda p: p["connectorStatus"] == "Unavailable",
                        since=mark, count=2)  # fmt: skip


async def test_unlock_connector(cp: Running) -> None:
    csms = cp.csms
    assert await csms.result("UnlockConnector", {"evseId": 1, "connectorId": 1}) == {
        "status": "Unlocked"
    }
    for evse, connector in ((9, 1), (1, 2)):
        answer = await csms.result("UnlockConnector", {"evseId": evse, "connectorId": connector})
        assert answer == {"status": "UnknownConnector"}


@pytest.mark.parametrize(
    ("requested", "evse", "expected"),
    [
        ("StatusNotification", {"id": 1, "connectorId": 1}, "StatusNotification"),
        ("MeterValues", {"id": 1}, "MeterValues"),
        ("BootNotification", None, "BootNotification"),
        ("FirmwareStatusNotification", None, "FirmwareStatusNotification"),
        ("LogStatusNotification", None, "LogStatusNotification"),
    ],
)
async def test_trigger_message(cp: Running, requested: str, evse: Any, expected: str) -> None:
    csms = cp.csms
    mark = csms.mark()
    payload: dict[str, Any] = {"requestedMessage": requested}
    if evse is not None:
        payload["evse"] = evse
    assert await csms.result("TriggerMessage", payload) == {"status": "Accepted"}
    [sent] = await csms.wait_for(expected, since=mark)
    if expected == "BootNotification":
        assert sent["reason"] == "Triggered"
    if expected == "MeterValues":
        assert sent["evseId"] == 1
        sample = sent["meterValue"][0]["sampledValue"][0]
        assert isinstance(sample["value"], int | float)
    if expected == "StatusNotification":
        assert sent["evseId"] == 1


async def test_trigger_message_not_implemented(cp: Running) -> None:
    for requested in ("TransactionEvent", "SignChargingStationCertificate"):
        answer = await cp.csms.result("TriggerMessage", {"requestedMessage": requested})
        assert answer == {"status": "NotImplemented"}


async def test_clear_cache_and_the_local_list(cp: Running) -> None:
    csms = cp.csms
    charger = cp.service.charger
    assert charger is not None
    assert await csms.result("ClearCache", {}) == {"status": "Accepted"}
    full = {
        "versionNumber": 3,
        "updateType": "Full",
        "localAuthorizationList": [
            {
                "idToken": {"idToken": TAG, "type": "ISO14443"},
                "idTokenInfo": {
                    "status": "Accepted",
                    "groupIdToken": {"idToken": "GROUP", "type": "Central"},
                },
            },
            {
                "idToken": {"idToken": "BLOCKED1", "type": "ISO14443"},
                "idTokenInfo": {"status": "NotAtThisTime"},
            },
        ],
    }
    # No local list in use: 2.0.1 has no NotSupported, the update Failed.
    assert await csms.result("SendLocalList", full) == {"status": "Failed"}
    assert await charger.configuration.change_configuration("LocalAuthListEnabled", "true") == (
        "Accepted"
    )
    assert await csms.result("SendLocalList", full) == {"status": "Accepted"}
    assert await csms.result("GetLocalListVersion", {}) == {"versionNumber": 3}
    version, entries = await charger.store.local_list()
    assert version == 3
    listed = {entry.id_tag: entry for entry in entries}
    assert listed[TAG].status == "Accepted" and listed[TAG].parent_id_tag == "GROUP"
    assert listed["BLOCKED1"].status == "Invalid"  # NotAtThisTime is no 1.6 status


async def test_data_transfer_takes_any_json(cp: Running) -> None:
    csms = cp.csms
    data = {"someKey": [1, {"nestedKey": "x"}]}
    echo = await csms.result(
        "DataTransfer", {"vendorId": "hilsim", "messageId": "Echo", "data": data}
    )
    assert echo == {"status": "Accepted", "data": data}
    text = await csms.result("DataTransfer", {"vendorId": "hilsim", "messageId": "Echo",
                                              "data": "plain"})  # fmt: skip
    assert text == {"status": "Accepted", "data": "plain"}
    other = await csms.result("DataTransfer", {"vendorId": "acme"})
    assert other == {"status": "UnknownVendorId"}


async def test_authorize_translates_id_token_info(cp: Running) -> None:
    csms = cp.csms
    charger = cp.service.charger
    assert charger is not None
    csms.answers["Authorize"] = lambda p: {"idTokenInfo": {"status": "NoCredit"}}
    assert (await cp.ctl("plug", 1))["ok"]
    decided: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def listener(cid: int, event: Any, outcome: Any) -> None:
        if isinstance(event, events.AuthorizeResult) and not decided.done():
            decided.set_result(event)

    charger.event_listeners.append(listener)
    mark = csms.mark()
    assert (await cp.ctl("tag", 1, id_tag="CAFE0001"))["ok"]
    [sent] = await csms.wait_for("Authorize", since=mark)
    assert sent == {"idToken": {"idToken": "CAFE0001", "type": "ISO14443"}}
    result = await asyncio.wait_for(decided, 5)
    # NoCredit is no 1.6 status: Invalid to the services, so no transaction starts.
    assert result.status == "Invalid"
    assert charger.connectors[1].machine.state.transaction is None


async def test_reset_immediate_reports_then_restarts(cp: Running) -> None:
    csms = cp.csms
    rejected = await csms.result("Reset", {"type": "Immediate", "evseId": 1})
    assert rejected == {"status": "Rejected"}
    mark = csms.mark()
    assert await csms.result("Reset", {"type": "Immediate"}) == {"status": "Accepted"}
    [event] = await csms.wait_for("SecurityEventNotification", since=mark)
    assert event["type"] == "ResetOrReboot"
    async with asyncio.timeout(10):
        await asyncio.shield(cp.task)
    assert cp.service.restart_requested


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ('[2, "bad-1", "Reset", {"type": "Sometimes"}]', "PropertyConstraintViolation"),
        ('[2, "bad-2", "Reset", {"type": "Immediate", "extra": 1}]', "FormatViolation"),
        ('[2, "bad-3", "Reset", {}]', "OccurrenceConstraintViolation"),
        ('[2, "bad-4", "Reset", {"type": 5}]', "TypeConstraintViolation"),
        ('[2, "bad-5", "FlyToTheMoon", {}]', "NotImplemented"),
        ('[2, "bad-6", "Reset"]', "ProtocolError"),
        ('[2, "bad-7", 17, {}]', "FormatViolation"),
        ('[2, "bad-8", "CostUpdated", {"totalCost": 1.5, "transactionId": "t"}]', "NotSupported"),
    ],
)
async def test_bad_calls_get_the_2_0_1_callerror(cp: Running, frame: str, code: str) -> None:
    csms = cp.csms
    await csms.send_raw(frame)
    uid = frame.split('"')[1]
    answer = await csms.answer_to(uid)
    assert answer[0] == CALLERROR and answer[2] == code, answer
    await csms.send_raw("this is not JSON")
    # ... and the charge point carries on.
    answer = await csms.call("TriggerMessage", {"requestedMessage": "Heartbeat"})
    assert answer[0] == CALLRESULT and answer[2] == {"status": "Accepted"}


def test_a_1_6_charge_point_never_imports_the_2_0_1_package() -> None:
    code = (
        "import sys, hilsim.cli, hilsim.service, hilsim.wiring\n"
        "assert hilsim.wiring.protocol_options('1.6') == {}\n"
        "assert not [m for m in sys.modules if m.startswith('hilsim.ocpp201')], sys.modules\n"
        "assert hilsim.wiring.protocol_options('2.0.1')['subprotocol'] == 'ocpp2.0.1'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


async def test_reset_on_idle_without_a_transaction_is_at_once(cp: Running) -> None:
    csms = cp.csms
    mark = csms.mark()
    assert await csms.result("Reset", {"type": "OnIdle"}) == {"status": "Accepted"}
    [event] = await csms.wait_for("SecurityEventNotification", since=mark)
    assert event["type"] == "ResetOrReboot"
    async with asyncio.timeout(10):
        await asyncio.shield(cp.task)
    assert cp.service.restart_requested


async def test_1_6_messages_the_services_hand_over_are_translated_or_refused(
    cp: Running,
) -> None:
    charger = cp.service.charger
    assert charger is not None
    link = charger.link
    stamp = now()
    stored = {
        "connectorId": 1,
        "transactionId": 5,
        "meterValue": [
            {
                "timestamp": stamp,
                "sampledValue": [
                    {"value": "1234", "context": "Sample.Periodic", "format": "Raw",
                     "measurand": "Energy.Active.Import.Register", "location": "Outlet",
                     "unit": "Wh"},
                    {"value": "7.5", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
                ],
            }
        ],
    }  # fmt: skip
    mark = cp.csms.mark()
    await link.submit(lambda c: c.call("MeterValues", stored), "MeterValues")
    [sent] = await cp.csms.wait_for("MeterValues", since=mark)
    assert sent == {
        "evseId": 1,
        "meterValue": [
            {
                "timestamp": stamp,
                "sampledValue": [
                    {"value": 1234, "context": "Sample.Periodic",
                     "measurand": "Energy.Active.Import.Register", "location": "Outlet",
                     "unitOfMeasure": {"unit": "Wh"}},
                    {"value": 7.5, "measurand": "Current.Import", "phase": "L1",
                     "unitOfMeasure": {"unit": "A"}},
                ],
            }
        ],
    }  # fmt: skip
    with pytest.raises(CsmsError, match=r"not an OCPP 2\.0\.1 message"):
        await link.submit(lambda c: c.call("StartTransaction", {}), "StartTransaction")


CUSTOM = {"vendorId": "acme", "someVendorKey": {"deepKey": 1}}


@pytest.mark.parametrize(
    ("action", "payload"),
    [
        ("Reset", {"type": "OnIdle", "evseId": 5}),
        ("ChangeAvailability", {"operationalStatus": "Operative", "evse": {"id": 1,
                                                                       "customData": CUSTOM}}),
        ("UnlockConnector", {"evseId": 9, "connectorId": 1}),
        ("TriggerMessage", {"requestedMessage": "Heartbeat"}),
        ("ClearCache", {}),
        ("SendLocalList", {"versionNumber": 1, "updateType": "Full"}),
        ("GetLocalListVersion", {}),
        ("DataTransfer", {"vendorId": "acme"}),
    ],
)  # fmt: skip
async def test_every_handler_takes_custom_data(
    cp: Running, action: str, payload: dict[str, Any]
) -> None:
    """Any 2.0.1 payload may carry customData: valid, so it is answered, never an error."""
    answer = await cp.csms.call(action, {**payload, "customData": CUSTOM})
    assert answer[0] == CALLRESULT, answer


async def test_a_new_security_profile_is_reported(cp: Running) -> None:
    charger = cp.service.charger
    assert charger is not None
    mark = cp.csms.mark()
    configure = charger.configuration.change_configuration
    assert await configure("AuthorizationKey", "31" * 16) == "Accepted"
    assert await configure("SecurityProfile", "1") == "Accepted"
    [event] = await cp.csms.wait_for("SecurityEventNotification", since=mark)
    assert event["type"] == "ReconfigurationOfSecurityParameters"
    assert event["techInfo"] == "SecurityProfile set to 1"


async def test_a_differential_local_list_removes_an_entry(cp: Running) -> None:
    charger = cp.service.charger
    assert charger is not None
    assert await charger.configuration.change_configuration("LocalAuthListEnabled", "true") == (
        "Accepted"
    )
    token = {"idToken": "CAFE0002", "type": "ISO14443"}
    full = {
        "versionNumber": 1,
        "updateType": "Full",
        "localAuthorizationList": [{"idToken": token, "idTokenInfo": {"status": "Accepted"}}],
    }
    assert await cp.csms.result("SendLocalList", full) == {"status": "Accepted"}
    removal = {"versionNumber": 2, "updateType": "Differential",
               "localAuthorizationList": [{"idToken": token}]}  # fmt: skip
    assert await cp.csms.result("SendLocalList", removal) == {"status": "Accepted"}
    _version, entries = await charger.store.local_list()
    assert entries == []
    # An empty list is reported as version 0, as in 1.6 (hilsim.local_list).
    assert await cp.csms.result("GetLocalListVersion", {}) == {"versionNumber": 0}
