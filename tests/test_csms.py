"""The built-in central system, driven by a raw OCPP-J client over real websockets."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from ocpp.messages import Call, _validate_payload
from strict_schemas import assert_strictly_valid, frame_violations
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from hilsim.csms import (
    CallTimeout,
    CentralSystem,
    ChargePointCallError,
    ChargePointDisconnected,
    ChargePointSession,
    strict,
)
from hilsim.csms.server import charge_point_id_from_path, serve
from hilsim.errors import CsmsError
from hilsim.ocpp.wire import Frame

NOW = "2024-05-01T12:00:00Z"
BOOT = {"chargePointVendor": "hilsim", "chargePointModel": "bench-1"}
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
WAIT = 5  # seconds: every wait in these tests has this timeout unless it tests a timeout


def status_notification(connector: int, status: str) -> dict[str, Any]:
    return {"connectorId": connector, "errorCode": "NoError", "status": status, "timestamp": NOW}


def meter_values(transaction_id: int, wh: int, unit: str = "Wh") -> dict[str, Any]:
    return {
        "connectorId": 1,
        "transactionId": transaction_id,
        "meterValue": [
            {
                "timestamp": NOW,
                "sampledValue": [
                    {"value": str(wh), "measurand": "Energy.Active.Import.Register", "unit": unit},
                    {"value": "7360", "measurand": "Power.Active.Import", "unit": "W"},
                ],
            }
        ],
    }


@dataclass
class Refuse:
    """Have the test client answer a CALL with this CALLERROR."""

    code: str
    description: str = ""


Answer = dict[str, Any] | Refuse | Callable[[dict[str, Any]], "dict[str, Any] | Refuse"]


class Client:
    """A charge point made of raw OCPP-J frames: sends CALLs, answers the central system's CALLs.

    ``answers[action]`` is the CALLRESULT payload (or a :class:`Refuse`, or a function of the
    request payload returning either); CALLs without an answer wait in ``unanswered``.
    """

    def __init__(self, websocket: ClientConnection) -> None:
        self.ws = websocket
        self.answers: dict[str, Answer] = {}
        self.requests: list[list[Any]] = []  # every CALL received from the central system
        self.unanswered: asyncio.Queue[list[Any]] = asyncio.Queue()
        self._pending: dict[str, asyncio.Future[list[Any]]] = {}

    async def read(self) -> None:
        async for text in self.ws:
            msg = json.loads(text)
            if msg[0] in (3, 4):
                waiter = self._pending.pop(msg[1], None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(msg)
                continue
            self.requests.append(msg)
            answer = self.answers.get(msg[2])
            if callable(answer):
                answer = answer(msg[3])
            if answer is None:
                await self.unanswered.put(msg)
            elif isinstance(answer, Refuse):
                await self.ws.send(json.dumps([4, msg[1], answer.code, answer.description, {}]))
            else:
                await self.ws.send(json.dumps([3, msg[1], answer]))

    async def send(self, text: str, unique_id: str) -> list[Any]:
        """Send a frame and return the reply with this unique id."""
        waiter = asyncio.get_running_loop().create_future()
        self._pending[unique_id] = waiter
        await self.ws.send(text)
        async with asyncio.timeout(WAIT):
            return await waiter

    async def call(self, action: str, payload: Any) -> list[Any]:
        unique_id = str(uuid.uuid4())
        return await self.send(json.dumps([2, unique_id, action, payload]), unique_id)

    async def ok(self, action: str, payload: Any) -> dict[str, Any]:
        """Send a CALL that must be answered with a CALLRESULT; return its payload."""
        reply = await self.call(action, payload)
        assert reply[0] == 3, f"{action} answered with {reply}"
        result: dict[str, Any] = reply[2]
        return result


@asynccontextmanager
async def charge_point(
    csms: CentralSystem, charge_point_id: str = "CP1", *, boot: bool = True
) -> AsyncIterator[tuple[Client, ChargePointSession]]:
    async with connect(f"{csms.url}/ocpp/{charge_point_id}", subprotocols=["ocpp1.6"]) as ws:
        client = Client(ws)
        reader = asyncio.create_task(client.read())
        try:
            session = await csms.wait_for_charge_point(charge_point_id, timeout=WAIT)
            if boot:
                await client.ok("BootNotification", BOOT)
            yield client, session
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


@pytest.fixture
async def csms() -> AsyncIterator[CentralSystem]:
    async with CentralSystem() as central:
        yield central


# --------------------------------------------------------------------------- boot and basics


async def test_boot_notification_is_accepted_with_time_and_interval(csms: CentralSystem) -> None:
    async with charge_point(csms, boot=False) as (client, session):
        reply = await client.ok("BootNotification", BOOT)

        assert reply["status"] == "Accepted"
        assert reply["interval"] == 120
        assert RFC3339_UTC.match(reply["currentTime"])
        assert await session.wait_for("BootNotification", timeout=WAIT) == BOOT
        assert session.boot == BOOT
        assert csms.registration_status("CP1") == "Accepted"
        assert session.violations == []


async def test_boot_pending_then_accepted_on_the_next_boot(csms: CentralSystem) -> None:
    csms.boot_status = "Pending"
    csms.heartbeat_interval = 7
    async with charge_point(csms, boot=False) as (client, session):
        pending = await client.ok("BootNotification", BOOT)
        assert (pending["status"], pending["interval"]) == ("Pending", 7)
        assert sorted(pending) == ["currentTime", "interval", "status"]
        assert csms.registration_status("CP1") == "Pending"

        csms.boot_status = "Accepted"
        accepted = await client.ok("BootNotification", BOOT)
        assert (accepted["status"], accepted["interval"]) == ("Accepted", 7)
        assert csms.registration_status("CP1") == "Accepted"
        assert session.violations == []


async def test_requests_while_pending_or_rejected_are_violations(csms: CentralSystem) -> None:
    csms.boot_status = "Rejected"
    async with charge_point(csms) as (client, session):
        assert (await client.ok("Heartbeat", {}))["currentTime"]
        assert session.violations == [
            "Heartbeat.req sent while the registration status is Rejected "
            "(OCPP 1.6 4.2: nothing but BootNotification until Accepted)"
        ]
    csms.boot_status = "Pending"
    async with charge_point(csms) as (client, session):
        client.answers["TriggerMessage"] = {"status": "Accepted"}
        assert await session.trigger_message("StatusNotification", 1) == "Accepted"
        await client.ok("StatusNotification", status_notification(1, "Available"))
        assert session.violations == []  # asked for with TriggerMessage
        await client.ok("Authorize", {"idTag": "04A2B3C4"})
        assert len(session.violations) == 1
        assert session.violations[0].startswith("Authorize.req sent while")


def test_boot_status_and_heartbeat_interval_are_checked() -> None:
    central = CentralSystem()
    with pytest.raises(ValueError, match="Accepted, Pending, Rejected"):
        central.boot_status = "Maybe"
    with pytest.raises(ValueError, match="whole seconds"):
        central.heartbeat_interval = 1.5  # type: ignore[assignment]
    with pytest.raises(ValueError):
        CentralSystem(boot_status="accepted")


async def test_heartbeat_status_diagnostics_firmware_and_data_transfer(
    csms: CentralSystem,
) -> None:
    frames: list[Frame] = []
    csms.on_frame = lambda _cp, frame: frames.append(frame)
    async with charge_point(csms) as (client, session):
        assert RFC3339_UTC.match((await client.ok("Heartbeat", {}))["currentTime"])
        assert await client.ok("StatusNotification", status_notification(1, "Preparing")) == {}
        assert session.statuses[1]["status"] == "Preparing"
        assert await client.ok("DiagnosticsStatusNotification", {"status": "Idle"}) == {}
        assert await client.ok("FirmwareStatusNotification", {"status": "Installed"}) == {}
        assert (session.diagnostics_status, session.firmware_status) == ("Idle", "Installed")
        hilsim = await client.ok("DataTransfer", {"vendorId": "hilsim", "data": "x"})
        other = await client.ok("DataTransfer", {"vendorId": "com.example", "messageId": "m"})
        assert (hilsim["status"], other["status"]) == ("Accepted", "UnknownVendorId")
        assert session.violations == []
    assert_strictly_valid(frames, sent=True)  # what the central system answered


async def test_authorize_accepts_configured_id_tags_only(csms: CentralSystem) -> None:
    async with charge_point(csms) as (client, _session):
        accepted = await client.ok("Authorize", {"idTag": "04A2B3C4"})
        any_case = await client.ok("Authorize", {"idTag": "deadbeef"})  # CiString: case-insensitive
        invalid = await client.ok("Authorize", {"idTag": "CAFEBABE"})

        assert accepted == {"idTagInfo": {"status": "Accepted"}}
        assert any_case == {"idTagInfo": {"status": "Accepted"}}
        assert invalid == {"idTagInfo": {"status": "Invalid"}}
        csms.id_tags.add("CAFEBABE")
        assert (await client.ok("Authorize", {"idTag": "CAFEBABE"}))["idTagInfo"] == {
            "status": "Accepted"
        }


# --------------------------------------------------------------------------- transactions


def start(connector: int = 1, id_tag: str = "04A2B3C4", meter: int = 1000) -> dict[str, Any]:
    return {"connectorId": connector, "idTag": id_tag, "meterStart": meter, "timestamp": NOW}


async def test_start_and_stop_transaction_fill_the_ledger(csms: CentralSystem) -> None:
    frames: list[Frame] = []
    csms.on_frame = lambda _cp, frame: frames.append(frame)
    async with charge_point(csms) as (client, _session):
        first = await client.ok("StartTransaction", start(1))
        second = await client.ok("StartTransaction", start(2, id_tag="UNKNOWN1", meter=50))
        stopped = await client.ok(
            "StopTransaction",
            {
                "transactionId": first["transactionId"],
                "meterStop": 4500,
                "timestamp": "2024-05-01T13:00:00Z",
                "reason": "Remote",
                "idTag": "04A2B3C4",
            },
        )

    assert first == {"transactionId": 1, "idTagInfo": {"status": "Accepted"}}
    assert second == {"transactionId": 2, "idTagInfo": {"status": "Invalid"}}
    assert stopped == {"idTagInfo": {"status": "Accepted"}}
    one, two = csms.ledger[1], csms.ledger[2]
    assert (one.charge_point_id, one.connector_id, one.id_tag) == ("CP1", 1, "04A2B3C4")
    assert (one.meter_start, one.start_timestamp) == (1000, NOW)
    assert (one.meter_stop, one.stop_timestamp, one.reason) == (
        4500,
        "2024-05-01T13:00:00Z",
        "Remote",
    )
    assert (one.active, one.energy_wh, one.stopped_at is not None) == (False, 3500, True)
    assert (two.connector_id, two.id_tag_status, two.active) == (2, "Invalid", True)
    assert_strictly_valid(frames)


async def test_ledger_and_transaction_ids_survive_a_reconnect(csms: CentralSystem) -> None:
    async with charge_point(csms) as (client, _session):
        assert (await client.ok("StartTransaction", start()))["transactionId"] == 1
    async with charge_point(csms) as (client, session):
        reply = await client.ok(
            "StopTransaction", {"transactionId": 1, "meterStop": 1200, "timestamp": NOW}
        )
        assert reply == {}  # no idTag, no idTagInfo
        assert (await client.ok("StartTransaction", start(meter=1200)))["transactionId"] == 2
        assert session.violations == []
    assert csms.ledger.repeated_starts == 0
    assert csms.ledger[1].reason == "Local"  # left out: Local, as OCPP 1.6 says
    assert csms.ledger[1].energy_wh == 200


async def test_a_repeated_start_is_the_same_transaction(csms: CentralSystem) -> None:
    """A charge point resending StartTransaction from its outbox must not open a second one."""
    async with charge_point(csms) as (client, _session):
        first = (await client.ok("StartTransaction", start()))["transactionId"]
    async with charge_point(csms) as (client, _session):
        again = (await client.ok("StartTransaction", start()))["transactionId"]
    assert again == first and len(csms.ledger) == 1
    assert csms.ledger.repeated_starts == 1


async def test_meter_values_are_recorded_per_transaction(csms: CentralSystem) -> None:
    async with charge_point(csms) as (client, session):
        tx = (await client.ok("StartTransaction", start()))["transactionId"]
        assert await client.ok("MeterValues", meter_values(tx, 1100)) == {}
        assert await client.ok("MeterValues", meter_values(tx, 1250)) == {}
        data = meter_values(tx, 1300)["meterValue"]
        await client.ok(
            "StopTransaction",
            {"transactionId": tx, "meterStop": 1300, "timestamp": NOW, "transactionData": data},
        )
        assert session.violations == []

    record = csms.ledger[tx]
    assert len(record.meter_values) == 2
    assert record.samples() == [(NOW, "1100"), (NOW, "1250")]
    assert record.samples("Power.Active.Import") == [(NOW, "7360"), (NOW, "7360")]
    assert record.transaction_data == data


# --------------------------------------------------------------------------- wait_for


async def test_wait_for_returns_each_message_once_in_arrival_order(csms: CentralSystem) -> None:
    async with charge_point(csms) as (client, session):
        for status in ("Available", "Preparing", "Charging"):
            await client.ok("StatusNotification", status_notification(1, status))

        first = await session.wait_for("StatusNotification", timeout=WAIT)
        charging = await session.wait_for(
            "StatusNotification", lambda p: p["status"] == "Charging", timeout=WAIT
        )
        second = await session.wait_for("StatusNotification", timeout=WAIT)

        assert [first["status"], charging["status"], second["status"]] == [
            "Available",
            "Charging",
            "Preparing",
        ]
        assert [m.action for m in session.received] == ["BootNotification"] + [
            "StatusNotification"
        ] * 3
        assert all(m.at > 0 for m in session.received)


async def test_wait_for_a_message_that_arrives_later(csms: CentralSystem) -> None:
    async with charge_point(csms) as (client, session):
        waiting = asyncio.create_task(
            session.wait_for(
                "StatusNotification", lambda p: p["status"] == "Finishing", timeout=WAIT
            )
        )
        await client.ok("StatusNotification", status_notification(1, "Charging"))
        assert not waiting.done()
        await client.ok("StatusNotification", status_notification(1, "Finishing"))
        assert (await waiting)["status"] == "Finishing"


async def test_wait_for_times_out_listing_what_was_received(csms: CentralSystem) -> None:
    async with charge_point(csms) as (client, session):
        await client.ok("Heartbeat", {})
        await session.wait_for("Heartbeat", timeout=WAIT)

        with pytest.raises(TimeoutError) as caught:
            await session.wait_for("StartTransaction", timeout=0.05)

    text = str(caught.value)
    assert "CP1: no StartTransaction within 0.05 s; received 2 CALL(s)" in text
    assert '#0 BootNotification {"chargePointVendor": "hilsim"' in text
    assert "#1 Heartbeat {} (already returned)" in text


async def test_wait_for_gives_up_when_the_charge_point_disconnects(csms: CentralSystem) -> None:
    async with charge_point(csms) as (client, session):
        waiting = asyncio.create_task(session.wait_for("StartTransaction", timeout=WAIT))
        await client.ws.close()
        with pytest.raises(ChargePointDisconnected, match="before it disconnected"):
            await waiting


async def test_wait_for_charge_point_hands_out_each_connection_once(csms: CentralSystem) -> None:
    async with charge_point(csms, "CP7") as (_client, first):
        assert csms.sessions == {"CP7": first}
    async with charge_point(csms, "CP7") as (_client, second):
        assert second is not first and first.closed
        assert csms.sessions == {"CP7": second}
    with pytest.raises(TimeoutError, match=r"no charge point 'CP7' connected within 0\.05 s"):
        await csms.wait_for_charge_point("CP7", timeout=0.05)


async def test_a_second_connection_of_the_same_charge_point_replaces_the_first(
    csms: CentralSystem,
) -> None:
    async with (
        charge_point(csms, "CP2") as (first_client, first),
        charge_point(csms, "CP2") as (_client, second),
    ):
        with pytest.raises(ChargePointDisconnected):
            await first.wait_for("Heartbeat", timeout=WAIT)
        assert csms.sessions["CP2"] is second
        await first_client.ws.wait_closed()
        assert first_client.ws.close_code == 1000


def test_charge_point_id_is_the_last_path_segment() -> None:
    assert charge_point_id_from_path("/ocpp/CP%201/?token=x") == "CP 1"
    assert charge_point_id_from_path("/CP1") == "CP1"
    assert charge_point_id_from_path("/") == ""


# --------------------------------------------------------------------------- calls to the CP


async def test_calls_return_what_the_charge_point_answers(csms: CentralSystem) -> None:
    frames: list[Frame] = []
    csms.on_frame = lambda _cp, frame: frames.append(frame)
    config = {
        "configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "120"}],
        "unknownKey": ["Nope"],
    }
    async with charge_point(csms) as (client, session):
        client.answers.update(
            {
                "RemoteStartTransaction": {"status": "Accepted"},
                "RemoteStopTransaction": {"status": "Rejected"},
                "SetChargingProfile": {"status": "Accepted"},
                "GetConfiguration": config,
                "ChangeConfiguration": {"status": "RebootRequired"},
            }
        )

        assert await session.remote_start("04A2B3C4", connector_id=1) == "Accepted"
        assert await session.remote_stop(1) == "Rejected"
        assert await session.set_charging_profile(1, 3680.04, "W", stack_level=2) == "Accepted"
        assert await session.get_configuration(["HeartbeatInterval", "Nope"]) == config
        assert await session.change_configuration("HeartbeatInterval", "60") == "RebootRequired"
        assert session.violations == []

    requests = {msg[2]: msg[3] for msg in client.requests}
    assert requests["RemoteStartTransaction"] == {"idTag": "04A2B3C4", "connectorId": 1}
    assert requests["RemoteStopTransaction"] == {"transactionId": 1}
    profile = requests["SetChargingProfile"]["csChargingProfiles"]
    assert requests["SetChargingProfile"]["connectorId"] == 1
    assert (profile["chargingProfileId"], profile["stackLevel"]) == (1, 2)
    assert (profile["chargingProfilePurpose"], profile["chargingProfileKind"]) == (
        "TxDefaultProfile",
        "Absolute",
    )
    assert profile["chargingSchedule"]["chargingRateUnit"] == "W"
    assert profile["chargingSchedule"]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 3680.0}
    ]
    assert requests["GetConfiguration"] == {"key": ["HeartbeatInterval", "Nope"]}
    assert requests["ChangeConfiguration"] == {"key": "HeartbeatInterval", "value": "60"}
    assert_strictly_valid(frames)  # both directions, by the official schemas


async def test_remote_start_with_a_charging_profile_and_a_tx_profile(csms: CentralSystem) -> None:
    profile = {
        "chargingProfileId": 9,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.1}],
        },
    }
    async with charge_point(csms) as (client, session):
        client.answers["RemoteStartTransaction"] = {"status": "Accepted"}
        client.answers["SetChargingProfile"] = {"status": "Rejected"}
        assert await session.remote_start("04A2B3C4", charging_profile=profile) == "Accepted"
        assert (
            await session.set_charging_profile(
                1, 10, "A", purpose="TxProfile", profile_id=3, transaction_id=5
            )
            == "Rejected"
        )

    sent = {msg[2]: msg[3] for msg in client.requests}
    assert sent["RemoteStartTransaction"] == {"idTag": "04A2B3C4", "chargingProfile": profile}
    tx_profile = sent["SetChargingProfile"]["csChargingProfiles"]
    assert (tx_profile["transactionId"], tx_profile["chargingProfileId"]) == (5, 3)


async def test_a_request_the_official_schema_forbids_is_not_sent(csms: CentralSystem) -> None:
    async with charge_point(csms) as (client, session):
        with pytest.raises(ValueError, match="is not one of: ChargePointMaxProfile"):
            await session.set_charging_profile(1, 10, purpose="MaxProfile")
        with pytest.raises(ValueError, match="is too long"):
            await session.change_configuration("K" * 51, "1")
    assert client.requests == []


async def test_a_callerror_from_the_charge_point_raises(csms: CentralSystem) -> None:
    async with charge_point(csms) as (client, session):
        client.answers["RemoteStartTransaction"] = Refuse("NotSupported", "no remote start here")
        client.answers["ChangeConfiguration"] = Refuse("WhoKnows")  # not an OCPP error code

        with pytest.raises(ChargePointCallError) as caught:
            await session.remote_start("04A2B3C4")
        with pytest.raises(ChargePointCallError) as odd:
            await session.change_configuration("HeartbeatInterval", "60")

    error = caught.value
    assert isinstance(error, CsmsError)
    assert (error.error_code, error.action, error.charge_point_id) == (
        "NotSupported",
        "RemoteStartTransaction",
        "CP1",
    )
    assert error.description == "no remote start here"
    assert "CP1 answered RemoteStartTransaction with CALLERROR NotSupported" in str(error)
    assert odd.value.error_code == "WhoKnows"


async def test_a_call_that_is_never_answered_times_out() -> None:
    async with CentralSystem(response_timeout=0.1) as csms, charge_point(csms) as (client, session):
        with pytest.raises(CallTimeout, match="did not answer RemoteStopTransaction"):
            await session.remote_stop(3)
        assert (await client.unanswered.get())[2] == "RemoteStopTransaction"
        # a late answer is a violation and does not disturb the next call
        late = client.requests[-1]
        await client.ws.send(json.dumps([3, late[1], {"status": "Accepted"}]))
        client.answers["RemoteStopTransaction"] = {"status": "Accepted"}
        assert await session.remote_stop(4) == "Accepted"
        assert session.violations == [
            f"CALLRESULT for unique id {late[1]!r}, which no CALL is waiting for"
        ]


async def test_a_call_fails_fast_when_the_charge_point_disconnects(csms: CentralSystem) -> None:
    async with charge_point(csms) as (client, session):
        calling = asyncio.create_task(session.remote_stop(1))
        await client.unanswered.get()
        await client.ws.close()
        with pytest.raises(ChargePointDisconnected):
            await calling
        with pytest.raises(ChargePointDisconnected):
            await session.remote_stop(1)


async def test_call_raw_returns_the_reply_with_the_same_unique_id(csms: CentralSystem) -> None:
    async with charge_point(csms) as (client, session):
        client.answers["Reset"] = Refuse("PropertyConstraintViolation", "type")
        client.answers["ChangeConfiguration"] = {"status": "Accepted"}

        reply = await session.call_raw('[2,"raw-1","Reset",{"type":"Sideways"}]')
        assert reply == [4, "raw-1", "PropertyConstraintViolation", "type", {}]
        # the normal flow still works, and the raw reply was nobody's violation
        assert await session.change_configuration("HeartbeatInterval", "30") == "Accepted"
        assert session.violations == []

        with pytest.raises(CallTimeout, match="'raw-2'"):
            await session.call_raw('[2,"raw-2","UnlockConnector",{"connectorId":1}]', timeout=0.05)
        with pytest.raises(ValueError, match="string unique id"):
            await session.call_raw("not json at all")


async def test_close_ends_the_session(csms: CentralSystem) -> None:
    async with charge_point(csms) as (client, session):
        await session.close()
        assert session.closed and "CP1" not in csms.sessions
        await client.ws.wait_closed()
        assert client.ws.close_code == 1000


# --------------------------------------------------------------------------- strict mode


async def test_strict_mode_refuses_an_extra_property(csms: CentralSystem) -> None:
    async with charge_point(csms) as (client, session):
        reply = await client.call("Heartbeat", {"uptime": 5})
        assert reply[:3] == [4, reply[1], "FormationViolation"]
        assert "Additional properties are not allowed ('uptime' was unexpected)" in reply[3]
        assert session.violations == [
            "Heartbeat.req: payload: Additional properties are not allowed "
            "('uptime' was unexpected)"
        ]
        # recorded as received all the same
        assert await session.wait_for("Heartbeat", timeout=WAIT) == {"uptime": 5}


async def test_strict_mode_refuses_a_unit_the_ocpp_library_accepts(csms: CentralSystem) -> None:
    hertz = meter_values(1, 1100)
    hertz["meterValue"][0]["sampledValue"].append(
        {"value": "50", "measurand": "Frequency", "unit": "Hertz"}
    )
    _validate_payload(Call("1", "MeterValues", hertz), "1.6")  # the library's copy: fine

    async with charge_point(csms) as (client, session):
        tx = (await client.ok("StartTransaction", start()))["transactionId"]
        assert tx == 1
        reply = await client.call("MeterValues", hertz)
        assert reply[2] == "PropertyConstraintViolation"
        assert reply[4]["violations"] == [
            "MeterValues.req: meterValue/0/sampledValue/2/unit: 'Hertz' is not one of: Wh, kWh, "
            "varh, kvarh, W, kW, VA, kVA, var, kvar, A, V, K, Celcius, Celsius, Fahrenheit, Percent"
        ]
        assert session.violations == reply[4]["violations"]
    assert csms.ledger[1].meter_values == []  # refused, so not recorded


async def test_strict_mode_answers_each_kind_of_violation_with_its_code(
    csms: CentralSystem,
) -> None:
    celsius = meter_values(1, 1)["meterValue"]
    celsius[0]["sampledValue"] = [{"value": "21", "measurand": "Temperature", "unit": "Celsius"}]
    cases = [
        ("StartTransaction", {"connectorId": 1, "idTag": "X", "meterStart": 0}, "Occurence"),
        ("Authorize", {"idTag": 42}, "TypeConstraintViolation"),
        ("Authorize", {"idTag": "X" * 21}, "TypeConstraintViolation"),
        ("StartTransaction", start() | {"timestamp": "2024-05-01 12:00"}, "TypeConstraint"),
        ("StatusNotification", status_notification(1, "Plugged"), "PropertyConstraintViolation"),
        ("BootNotification", [], "FormationViolation"),
        # Official StopTransaction.json spells only "Celcius"; the ocpp library also has "Celsius"
        (
            "StopTransaction",
            {"transactionId": 1, "meterStop": 1, "timestamp": NOW, "transactionData": celsius},
            "PropertyConstraintViolation",
        ),
    ]
    async with charge_point(csms) as (client, session):
        for action, payload, code in cases:
            reply = await client.call(action, payload)
            assert reply[0] == 4 and reply[2].startswith(code), (action, payload, reply)
        assert len(session.violations) == len(cases)
        assert session.violations[0] == (
            "StartTransaction.req: payload: 'timestamp' is a required property"
        )


async def test_strict_mode_records_a_bad_callresult(csms: CentralSystem) -> None:
    async with charge_point(csms) as (client, session):
        client.answers["RemoteStartTransaction"] = {"status": "Maybe", "reason": "busy"}
        assert await session.remote_start("04A2B3C4") == "Maybe"
    assert session.violations == [
        "RemoteStartTransaction.conf: status: 'Maybe' is not one of: Accepted, Rejected",
        "RemoteStartTransaction.conf: payload: Additional properties are not allowed "
        "('reason' was unexpected)",
    ]


async def test_without_strict_mode_the_library_schemas_apply() -> None:
    hertz = meter_values(1, 1100)
    hertz["meterValue"][0]["sampledValue"][0]["unit"] = "Hertz"
    async with CentralSystem(strict=False) as csms, charge_point(csms) as (client, session):
        assert await client.ok("MeterValues", hertz) == {}
        extra = await client.call("Heartbeat", {"uptime": 5})
        assert extra[0] == 4  # the library refuses it too, with its own (2.0) error code
        assert len(session.violations) == 1


async def test_unknown_actions_and_malformed_frames(csms: CentralSystem) -> None:
    async with charge_point(csms) as (client, session):
        assert (await client.call("Teleport", {}))[2:4] == [
            "NotImplemented",
            "Unknown action 'Teleport'",
        ]
        assert (await client.call("Reset", {"type": "Hard"}))[2] == "NotSupported"
        missing = await client.send('[2,"m-1","Heartbeat"]', "m-1")
        assert missing[:3] == [4, "m-1", "ProtocolError"]
        await client.ws.send("this is not json")
        await client.ok("Heartbeat", {})  # still talking
        assert session.violations == [
            "'Teleport' is not an OCPP 1.6 action",
            "Reset.req is sent by a central system, not a charge point",
            'CALL must be [2, uniqueId, action, payload]: [2,"m-1","Heartbeat"]',
            "frame is not a JSON array: 'this is not json'",
        ]


async def test_a_connection_without_the_ocpp_subprotocol_is_refused(csms: CentralSystem) -> None:
    with pytest.raises(InvalidStatus) as caught:
        async with connect(f"{csms.url}/CP1"):
            pass
    assert caught.value.response.status_code == 400
    with pytest.raises(InvalidStatus):  # 2.0.1 is served (tests/test_csms201.py), 2.1 not
        async with connect(f"{csms.url}/CP1", subprotocols=["ocpp2.1", "ocpp2.0"]):
            pass
    assert csms.sessions == {}


def test_strict_validate_knows_the_official_schemas() -> None:
    assert strict.validate("Heartbeat", {}, response=False) == []
    assert strict.validate("BootNotification", BOOT, response=False) == []
    assert strict.validate("MeterValues", meter_values(1, 5), response=False) == []
    assert (
        strict.validate(
            "GetConfiguration",
            {"configurationKey": [{"key": "K", "readonly": True}]},
            response=True,
        )
        == []
    )
    assert strict.validate("Heartbeat", {}, response=True) == [
        "Heartbeat.conf: payload: 'currentTime' is a required property"
    ]
    assert strict.validate("Teleport", {}, response=False) == [
        "Teleport.req: payload: not an OCPP 1.6 action (no official schema)"
    ]
    # limits are multiples of 0.1 as decimals, not as binary floats
    period = {
        "chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 21.4}],
    }
    profile = {
        "chargingProfileId": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": period,
    }
    payload = {"connectorId": 1, "csChargingProfiles": profile}
    assert strict.validate("SetChargingProfile", payload, response=False) == []
    period["chargingSchedulePeriod"][0]["limit"] = 21.45
    assert strict.validate("SetChargingProfile", payload, response=False) == [
        "SetChargingProfile.req: csChargingProfiles/chargingSchedule/chargingSchedulePeriod/0/"
        "limit: 21.45 is not a multiple of 0.1"
    ]


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("2024-05-01T12:00:00Z", True),
        ("2024-05-01T12:00:00.123+02:00", True),
        ("2024-05-01T12:00:00", False),  # no offset
        ("2024-02-30T12:00:00Z", False),
        ("yesterday", False),
    ],
)
def test_strict_date_times_are_rfc3339(value: str, valid: bool) -> None:
    found = strict.validate("Heartbeat", {"currentTime": value}, response=True)
    assert (found == []) is valid


def test_the_frame_helper_pairs_results_with_calls() -> None:
    frames = [
        Frame(sent=True, text='[2,"a","Heartbeat",{}]'),
        Frame(sent=False, text='[3,"a",{}]'),
        Frame(sent=False, text='[2,"b","RemoteStopTransaction",{"transactionId":1}]'),
        Frame(sent=True, text='[3,"b",{"status":"Maybe"}]'),
    ]
    assert frame_violations(frames, sent=False) == [
        "Heartbeat.conf: payload: 'currentTime' is a required property"
    ]
    assert frame_violations(frames, sent=True) == [
        "RemoteStopTransaction.conf: status: 'Maybe' is not one of: Accepted, Rejected"
    ]


# --------------------------------------------------------------------------- frames and traces


async def test_on_frame_sees_every_frame_in_both_directions() -> None:
    seen: list[tuple[str, Frame]] = []
    async with (
        CentralSystem(on_frame=lambda cp, frame: seen.append((cp, frame))) as csms,
        charge_point(csms, "CP9") as (client, session),
    ):
        client.answers["ChangeConfiguration"] = {"status": "Accepted"}
        await client.ok("Heartbeat", {})
        await session.change_configuration("MeterValueSampleInterval", "10")

    kinds = [(cp, frame.sent, frame.parsed()[0]) for cp, frame in seen]
    assert kinds == [
        ("CP9", False, 2),  # BootNotification
        ("CP9", True, 3),
        ("CP9", False, 2),  # Heartbeat
        ("CP9", True, 3),
        ("CP9", True, 2),  # ChangeConfiguration
        ("CP9", False, 3),
    ]
    assert json.loads(seen[4][1].text)[2:] == [
        "ChangeConfiguration",
        {"key": "MeterValueSampleInterval", "value": "10"},
    ]


async def test_serve_prints_a_trace_line_per_frame_and_connection() -> None:
    lines: asyncio.Queue[str] = asyncio.Queue()
    running = asyncio.create_task(serve("127.0.0.1", 0, ["04A2B3C4"], trace=lines.put_nowait))

    async def line(pattern: str) -> str:
        async with asyncio.timeout(WAIT):
            while True:
                text = await lines.get()
                if re.search(pattern, text):
                    return text

    try:
        listening = await line(r"CSMS listening on ws://127\.0\.0\.1:\d+/<charge point id>")
        port = int(re.search(r":(\d+)/", listening).group(1))  # type: ignore[union-attr]
        await line("accepted id tags: 04A2B3C4")
        async with connect(f"ws://127.0.0.1:{port}/ocpp/BENCH1", subprotocols=["ocpp1.6"]) as ws:
            connected = await line("BENCH1 connected from 127.0.0.1:")
            await ws.send(json.dumps([2, "u1", "Authorize", {"idTag": "04A2B3C4"}]))
            await ws.recv()
            request = await line(r"CSMS ← BENCH1")
            answer = await line(r"CSMS → BENCH1")
        closed = await line("BENCH1 disconnected")
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)

    stamp = r"^\d{2}:\d{2}:\d{2}\.\d{3}  "
    assert re.match(stamp + "BENCH1 connected", connected)
    assert re.match(stamp + r"CSMS ← BENCH1  Authorize\s+\{\"idTag\":\"04A2B3C4\"\}$", request)
    assert re.match(
        stamp + r"CSMS → BENCH1  Authorize\.conf\s+\{\"idTagInfo\":\{\"status\":\"Accepted\"\}\}$",
        answer,
    )
    assert re.match(stamp + r"BENCH1 disconnected \(1000", closed)
    assert running.cancelled()


async def test_start_translates_a_busy_port(csms: CentralSystem) -> None:
    with pytest.raises(CsmsError, match=f"cannot listen on 127.0.0.1:{csms.port}"):
        await CentralSystem(port=csms.port).start()
