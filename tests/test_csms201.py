"""The built-in CSMS serving OCPP 2.0.1 charge points, driven by the `ocpp` library's own 2.0.1
charge point over a real websocket (127.0.0.1, port 0).

Every frame of a normal session is checked against the official 2.0.1 schemas in both
directions (``additionalProperties`` false: :mod:`hilsim.csms.strict201`), the charge point's
by the CSMS as it arrives and the CSMS's by the fixture afterwards.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from ocpp.routing import after, on
from ocpp.v201 import ChargePoint, call, call_result
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from hilsim.csms import CentralSystem, ChargePointCallError, strict201
from hilsim.csms.commands import utc_now
from hilsim.csms.console import BadCall, charge_points, checked, parse_payload
from hilsim.csms.session import ChargePointSession
from hilsim.csms.session201 import ChargePointSession201
from hilsim.ocpp.wire import Frame
from tests.conftest import CP_ID, make_settings, start_service, stop_service

WAIT = 5
TAG = "04A2B3C4"
STATION = {"model": "bench-201", "vendorName": "hilsim"}


def violations201(frames: list[Frame]) -> list[str]:
    """Every frame of these (CALLs and the CALLRESULTs matched by unique id) the official
    2.0.1 schemas reject."""
    actions: dict[str, str] = {}
    found: list[str] = []
    for frame in frames:
        msg = frame.parsed()
        assert msg is not None, frame.text
        if msg[0] == 2:
            actions[msg[1]] = msg[2]
            found += strict201.validate(msg[2], msg[3], response=False)
        elif msg[0] == 3 and msg[1] in actions:
            found += strict201.validate(actions.pop(msg[1]), msg[2], response=True)
    return found


class Station(ChargePoint):
    """The `ocpp` library's 2.0.1 charge point, answering what the tests ask of it."""

    def __init__(self, charge_point_id: str, connection: Any) -> None:
        super().__init__(charge_point_id, connection)
        self.variables = {("OCPPCommCtrlr", "HeartbeatInterval"): "60"}

    @on("GetVariables")
    def on_get_variables(self, get_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        results = []
        for item in get_variable_data:
            key = (item["component"]["name"], item["variable"]["name"])
            result: dict[str, Any] = {
                "attributeStatus": "Accepted" if key in self.variables else "UnknownVariable",
                "component": {"name": key[0]},
                "variable": {"name": key[1]},
            }
            if key in self.variables:
                result["attributeValue"] = self.variables[key]
            results.append(result)
        return call_result.GetVariables(get_variable_result=results)

    @on("GetBaseReport")
    def on_get_base_report(self, **_: Any) -> Any:
        return call_result.GetBaseReport(status="Accepted")

    @after("GetBaseReport")
    async def after_get_base_report(self, request_id: int, **_: Any) -> None:
        for seq_no, (component, variable) in enumerate(
            [("OCPPCommCtrlr", "HeartbeatInterval"), ("AuthCtrlr", "Enabled")]
        ):
            await self.call(
                call.NotifyReport(
                    request_id=request_id,
                    generated_at=utc_now(),
                    seq_no=seq_no,
                    tbc=seq_no == 0,
                    report_data=[
                        {
                            "component": {"name": component},
                            "variable": {"name": variable},
                            "variableAttribute": [{"type": "Actual", "value": "60"}],
                        }
                    ],
                )
            )

    @on("RequestStartTransaction")
    def on_request_start(self, **_: Any) -> Any:
        return call_result.RequestStartTransaction(status="Accepted")


@asynccontextmanager
async def station(
    csms: CentralSystem,
    charge_point_id: str = "CP201",
    *,
    subprotocols: tuple[str, ...] = ("ocpp2.0.1",),
    boot: bool = True,
) -> AsyncIterator[tuple[Station, Any]]:
    """A library charge point connected to the CSMS (booted), and the CSMS's session of it."""
    offered = [Subprotocol(name) for name in subprotocols]
    async with connect(f"{csms.url}/ocpp/{charge_point_id}", subprotocols=offered) as ws:
        cp = Station(charge_point_id, ws)
        reader = asyncio.create_task(cp.start())
        try:
            session = await csms.wait_for_charge_point(charge_point_id, timeout=WAIT)
            if boot and session.ocpp_version == "2.0.1":
                await cp.call(
                    call.BootNotification(charging_station=STATION, reason="PowerUp"),
                    suppress=False,
                )
            yield cp, session
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


class Raw:
    """A 2.0.1 charge point made of raw frames, for what the library would refuse to send."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, frame: list[Any] | str) -> list[Any]:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))
        async with asyncio.timeout(WAIT):
            reply: list[Any] = json.loads(await self.ws.recv())
        return reply

    async def call(self, action: str, payload: Any) -> list[Any]:
        return await self.send([2, str(uuid.uuid4()), action, payload])


@pytest.fixture
async def csms() -> AsyncIterator[CentralSystem]:
    frames: dict[str, list[Frame]] = {}

    def keep(charge_point_id: str, frame: Frame) -> None:
        frames.setdefault(charge_point_id, []).append(frame)

    async with CentralSystem(on_frame=keep) as central:
        yield central
    # The stations of normal sessions ("CP201"; hilsim's own, "CP-TEST") and the CSMS
    # exchanged only valid frames.
    for charge_point_id in ("CP201", CP_ID):
        assert violations201(frames.get(charge_point_id, [])) == []


def transaction_event(
    kind: str, seq_no: int, transaction_id: str, trigger: str, **extra: Any
) -> dict[str, Any]:
    return {
        "eventType": kind,
        "timestamp": utc_now(),
        "triggerReason": trigger,
        "seqNo": seq_no,
        "transactionInfo": {"transactionId": transaction_id, **extra.pop("info", {})},
        **extra,
    }


def energy(wh: float) -> list[dict[str, Any]]:
    return [{"timestamp": utc_now(), "sampledValue": [{"value": wh}]}]


# --------------------------------------------------------------------------- negotiation


@pytest.mark.parametrize(
    ("offered", "version", "kind"),
    [
        (("ocpp2.0.1",), "2.0.1", ChargePointSession201),
        (("ocpp1.6",), "1.6", ChargePointSession),
        # the charge point lists its preference; the first one served wins
        (("ocpp2.0.1", "ocpp1.6"), "2.0.1", ChargePointSession201),
        (("ocpp1.6", "ocpp2.0.1"), "1.6", ChargePointSession),
        (("ocpp2.1", "ocpp2.0.1"), "2.0.1", ChargePointSession201),
    ],
)
async def test_the_first_offered_subprotocol_served_is_chosen(
    csms: CentralSystem, offered: tuple[str, ...], version: str, kind: type
) -> None:
    async with station(csms, "CP-NEG", subprotocols=offered, boot=False) as (cp, session):
        assert cp._connection.subprotocol == f"ocpp{version}"
        assert isinstance(session, kind) and session.ocpp_version == version
        assert f"OCPP {version}" in repr(session)


async def test_a_csms_serving_1_6_only_refuses_2_0_1_and_says_what_it_serves() -> None:
    async with CentralSystem(ocpp_versions=("1.6",)) as central:
        with pytest.raises(InvalidStatus):
            async with station(central, subprotocols=("ocpp2.0.1",)):
                pass
        async with station(central, "CP-BOTH", subprotocols=("ocpp2.0.1", "ocpp1.6")) as (
            _,
            session,
        ):
            assert session.ocpp_version == "1.6"
    with pytest.raises(ValueError, match="ocpp_versions"):
        CentralSystem(ocpp_versions=("2.1",))


async def test_a_refusal_names_both_subprotocols(
    csms: CentralSystem, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(InvalidStatus):
        async with connect(f"{csms.url}/CPX", subprotocols=[Subprotocol("ocpp2.1")]):
            pass
    assert "subprotocol ocpp1.6 or ocpp2.0.1 not offered (offered: ocpp2.1)" in caplog.text


# --------------------------------------------------------------------------- provisioning


async def test_boot_heartbeat_and_status_per_evse(csms: CentralSystem) -> None:
    csms.heartbeat_interval = 77
    async with station(csms, boot=False) as (cp, session):
        booted = await cp.call(
            call.BootNotification(charging_station=STATION, reason="PowerUp"), suppress=False
        )
        assert (booted.status, booted.interval) == ("Accepted", 77)
        assert session.boot["chargingStation"] == STATION
        beat = await cp.call(call.Heartbeat(), suppress=False)
        assert beat.current_time.endswith("Z")
        for evse, status in ((1, "Available"), (2, "Occupied"), (1, "Unavailable")):
            await cp.call(
                call.StatusNotification(
                    timestamp=utc_now(), connector_status=status, evse_id=evse, connector_id=1
                ),
                suppress=False,
            )
        await session.wait_for("StatusNotification", lambda p: p["evseId"] == 2)
        assert {e: c[1]["connectorStatus"] for e, c in session.evses.items()} == {
            1: "Unavailable",
            2: "Occupied",
        }
        assert session.violations == []


async def test_pending_and_rejected_registration(csms: CentralSystem) -> None:
    csms.boot_status = "Pending"
    async with station(csms, boot=False) as (cp, session):
        booted = await cp.call(
            call.BootNotification(charging_station=STATION, reason="PowerUp"), suppress=False
        )
        assert booted.status == "Pending"
        # While Pending the CSMS may ask for the device model: the report is no violation...
        assert await session.get_base_report(7) == "Accepted"
        await session.wait_for_report(7)
        assert session.violations == []
        # ...but a Heartbeat nobody triggered is.
        await cp.call(call.Heartbeat(), suppress=False)
        assert session.violations == [
            "HeartbeatRequest sent while the registration status is Pending (OCPP 2.0.1 "
            "B02/B03: nothing but BootNotification until Accepted, unless asked)"
        ]
        csms.boot_status = "Rejected"
        booted = await cp.call(
            call.BootNotification(charging_station=STATION, reason="PowerUp"), suppress=False
        )
        assert booted.status == "Rejected"
        assert csms.registration_status("CP201") == "Rejected"
        session.violations.clear()  # the fixture checks the frames only


# --------------------------------------------------------------------------- authorization


async def test_authorize_answers_id_token_info_by_the_1_6_rules(csms: CentralSystem) -> None:
    csms.id_tag_details["DEADBEEF"] = {"parentIdTag": "FLEET", "expiryDate": "2030-01-01T00:00:00Z"}
    csms.id_token_details["DEADBEEF"] = {"language1": "de"}
    async with station(csms) as (cp, _):

        async def authorize(token: str, kind: str = "ISO14443") -> dict[str, Any]:
            answer = await cp.call(
                call.Authorize(id_token={"idToken": token, "type": kind}), suppress=False
            )
            info: dict[str, Any] = answer.id_token_info
            return info

        assert (await authorize(TAG))["status"] == "Accepted"
        assert (await authorize(TAG.lower()))["status"] == "Accepted"  # case-insensitive
        assert (await authorize("UNKNOWN1"))["status"] == "Invalid"
        assert (await authorize("", "NoAuthorization"))["status"] == "Accepted"
        assert await authorize("DEADBEEF") == {
            "status": "Accepted",
            "cache_expiry_date_time": "2030-01-01T00:00:00Z",
            "group_id_token": {"id_token": "FLEET", "type": "Central"},
            "language1": "de",
        }
        csms.id_tag_details["CAFE0001"] = {"status": "Blocked"}
        assert (await authorize("CAFE0001"))["status"] == "Blocked"


# --------------------------------------------------------------------------- transactions


async def test_a_transaction_with_an_offline_event_and_a_missing_seq_no(
    csms: CentralSystem,
) -> None:
    tx = str(uuid.uuid4())
    token = {"idToken": TAG, "type": "ISO14443"}
    async with station(csms) as (cp, session):
        events = [
            transaction_event(
                "Started", 0, tx, "Authorized", id_token=token, evse={"id": 1, "connectorId": 1},
                info={"chargingState": "EVConnected"}, meter_value=energy(1000),
            ),
            transaction_event(
                "Updated", 1, tx, "ChargingStateChanged", info={"chargingState": "Charging"}
            ),
            # seqNo 2 never arrives; 3 happened while the link was down
            transaction_event(
                "Updated", 3, tx, "MeterValuePeriodic", offline=True, meter_value=energy(1500)
            ),
            transaction_event(
                "Ended", 4, tx, "StopAuthorized", id_token=token, meter_value=energy(2250),
                info={"stoppedReason": "Local", "chargingState": "Idle"},
            ),
        ]  # fmt: skip
        answers = []
        for event in events:
            snake = {k: v for k, v in event.items()}
            answers.append(
                await cp.call(
                    call.TransactionEvent(
                        event_type=snake.pop("eventType"),
                        timestamp=snake.pop("timestamp"),
                        trigger_reason=snake.pop("triggerReason"),
                        seq_no=snake.pop("seqNo"),
                        transaction_info=snake.pop("transactionInfo"),
                        **snake,
                    ),
                    suppress=False,
                )
            )
            if event["eventType"] == "Started":
                listed = charge_points(csms)[0]["transactions"]
                assert [t["transactionId"] for t in listed] == [tx]
        # idTokenInfo when the event carries an idToken, none otherwise
        assert [a.id_token_info and a.id_token_info["status"] for a in answers] == [
            "Accepted", None, None, "Accepted",
        ]  # fmt: skip
        ended = await session.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended")
        assert ended["seqNo"] == 4
    record = csms.ledger201[tx]
    assert (record.charge_point_id, record.evse_id, record.connector_id) == ("CP201", 1, 1)
    assert record.seq_nos == [0, 1, 3, 4]
    assert record.gaps == [2]
    assert record.offline_seq_nos == [3]
    assert record.trigger_reasons[0] == "Authorized"
    assert (record.started, record.ended, record.active) == (True, True, False)
    assert (record.stopped_reason, record.charging_state) == ("Local", "Idle")
    assert record.id_token == token and record.id_token_status == "Accepted"
    assert [value for _, value in record.samples()] == [1000, 1500, 2250]
    assert record.energy_wh == 1250
    assert record.problems == ["seqNo 3 (Updated) follows 1: 2 missing"]


async def test_the_ledger_notes_repeats_and_events_of_unknown_transactions(
    csms: CentralSystem,
) -> None:
    tx = str(uuid.uuid4())
    async with station(csms) as (cp, _):
        raw_events = [
            transaction_event("Updated", 5, tx, "MeterValuePeriodic"),
            transaction_event("Updated", 5, tx, "MeterValuePeriodic"),  # the answer was lost
            transaction_event("Ended", 6, tx, "EVCommunicationLost"),
        ]
        for event in raw_events:
            snake = dict(event)
            await cp.call(
                call.TransactionEvent(
                    event_type=snake["eventType"],
                    timestamp=snake["timestamp"],
                    trigger_reason=snake["triggerReason"],
                    seq_no=snake["seqNo"],
                    transaction_info=snake["transactionInfo"],
                ),
                suppress=False,
            )
    record = csms.ledger201[tx]
    assert record.repeated == [5] and record.gaps == [0, 1, 2, 3, 4]
    assert record.stopped_reason == "Local"  # the default when left out
    assert record.problems == [
        "seqNo 5 (Updated) is the first received: 0, 1, 2, 3, 4 missing",
        "Updated (seqNo 5) for a transaction never Started here",
        "seqNo 5 received again (Updated)",
    ]


# --------------------------------------------------------------------------- reports, the rest


async def test_a_base_report_is_collected_by_request_id(csms: CentralSystem) -> None:
    async with station(csms) as (_, session):
        assert await session.get_base_report(42, "ConfigurationInventory") == "Accepted"
        report = await session.wait_for_report(42)
    assert report.complete and report.seq_nos == [0, 1]
    assert list(report.variables()) == [
        ("OCPPCommCtrlr", "HeartbeatInterval"),
        ("AuthCtrlr", "Enabled"),
    ]


async def test_every_other_station_request_is_taken_in(csms: CentralSystem) -> None:
    async with station(csms) as (cp, session):
        sent = [
            call.MeterValues(evse_id=1, meter_value=energy(10)),
            call.NotifyEvent(
                generated_at=utc_now(),
                seq_no=0,
                event_data=[
                    {
                        "eventId": 1,
                        "timestamp": utc_now(),
                        "trigger": "Delta",
                        "actualValue": "Occupied",
                        "eventNotificationType": "HardWiredNotification",
                        "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
                        "variable": {"name": "AvailabilityState"},
                    }
                ],
            ),
            call.SecurityEventNotification(type="StartupOfTheDevice", timestamp=utc_now()),
            call.FirmwareStatusNotification(status="Installed"),
            call.LogStatusNotification(status="Uploaded", request_id=3),
            call.NotifyChargingLimit(charging_limit={"chargingLimitSource": "EMS"}, evse_id=1),
            call.ReportChargingProfiles(
                request_id=9,
                charging_limit_source="CSO",
                evse_id=1,
                charging_profile=[
                    {
                        "id": 1,
                        "stackLevel": 0,
                        "chargingProfilePurpose": "TxDefaultProfile",
                        "chargingProfileKind": "Absolute",
                        "chargingSchedule": [
                            {
                                "id": 1,
                                "chargingRateUnit": "W",
                                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 3680.0}],
                            }
                        ],
                    }
                ],
            ),
        ]
        for request in sent:
            await cp.call(request, suppress=False)
        hilsim = await cp.call(call.DataTransfer(vendor_id="hilsim"), suppress=False)
        other = await cp.call(call.DataTransfer(vendor_id="acme"), suppress=False)
        assert (hilsim.status, other.status) == ("Accepted", "UnknownVendorId")
        profiles = await session.wait_for_charging_profiles(9)
    assert session.meter_values[0][0] == 1
    assert session.events[0]["actualValue"] == "Occupied"
    assert session.security_events[0]["type"] == "StartupOfTheDevice"
    assert (session.firmware_status, session.log_status) == ("Installed", "Uploaded")
    assert profiles.parts[0]["chargingProfile"][0]["id"] == 1
    assert [m.action for m in session.received][-2:] == ["DataTransfer", "DataTransfer"]
    assert session.violations == []


# --------------------------------------------------------------------------- CSMS -> station


async def test_calls_to_the_station_are_checked_and_answered(csms: CentralSystem) -> None:
    async with station(csms) as (_, session):
        assert await session.get_variable("OCPPCommCtrlr", "HeartbeatInterval") == "60"
        assert await session.get_variable("OCPPCommCtrlr", "Nope") is None
        answer = await session.call("RequestStartTransaction", {
            "idToken": {"idToken": TAG, "type": "ISO14443"}, "remoteStartId": 1, "evseId": 1,
        })  # fmt: skip
        assert answer == {"status": "Accepted"}
        assert (await session.request_start(TAG, evse_id=1))["status"] == "Accepted"
        with pytest.raises(ValueError, match="ResetRequest: type: 'Hard' is not one of"):
            await session.call_action("Reset", {"type": "Hard"})
        with pytest.raises(ChargePointCallError) as caught:  # the library has no handler
            await session.reset("OnIdle")
        assert caught.value.error_code in ("NotImplemented", "NotSupported")


# --------------------------------------------------------------------------- strictness


@asynccontextmanager
async def raw_station(csms: CentralSystem, name: str) -> AsyncIterator[tuple[Raw, Any]]:
    offered = [Subprotocol("ocpp2.0.1")]
    async with connect(f"{csms.url}/{name}", subprotocols=offered) as ws:
        session = await csms.wait_for_charge_point(name, timeout=WAIT)
        raw = Raw(ws)
        reply = await raw.call(
            "BootNotification", {"chargingStation": STATION, "reason": "PowerUp"}
        )
        assert reply[0] == 3
        yield raw, session


async def test_frames_off_the_schema_are_answered_with_ocpp_j_2_0_1_codes(
    csms: CentralSystem,
) -> None:
    async with raw_station(csms, "CP-BAD") as (raw, session):
        extra = await raw.call("Heartbeat", {"beat": 1})
        missing = await raw.call("StatusNotification", {"timestamp": utc_now(), "evseId": 1})
        wrong_type = await raw.call("Authorize", {"idToken": {"idToken": 1, "type": "ISO14443"}})
        bad_enum = await raw.call("Authorize", {"idToken": {"idToken": TAG, "type": "MagicCard"}})
        naive_time = await raw.call(
            "StatusNotification",
            {"timestamp": "2025-01-01T00:00:00", "connectorStatus": "Available",
             "evseId": 1, "connectorId": 1},
        )  # fmt: skip
        unknown = await raw.call("FlyToTheMoon", {})
        csms_only = await raw.call("Reset", {"type": "Immediate"})
        not_served = await raw.call("SignCertificate", {"csr": "x"})
        bad_type = await raw.send([7, "id-7", "Heartbeat", {}])
        short = await raw.send([2, "id-short", "Heartbeat"])
    codes = [
        reply[2]
        for reply in (extra, missing, wrong_type, bad_enum, naive_time, unknown, csms_only,
                      not_served, bad_type, short)
    ]  # fmt: skip
    assert codes == [
        "FormatViolation",
        "OccurrenceConstraintViolation",
        "TypeConstraintViolation",
        "PropertyConstraintViolation",
        "TypeConstraintViolation",
        "NotImplemented",
        "NotSupported",
        "NotSupported",
        "MessageTypeNotSupported",
        "RpcFrameworkError",
    ]
    assert "HeartbeatRequest: payload: Additional properties are not allowed" in extra[3]
    assert extra[4]["violations"] == [extra[3]]
    assert session.violations[:2] == [
        "HeartbeatRequest: payload: Additional properties are not allowed ('beat' was unexpected)",
        "StatusNotificationRequest: payload: 'connectorStatus' is a required property",
    ]
    assert "'FlyToTheMoon' is not an OCPP 2.0.1 action" in session.violations
    assert "ResetRequest is sent by a CSMS, not a charging station" in session.violations
    assert not any("SignCertificate" in v for v in session.violations)  # a station's request
    # each CALL, answered or not, is in `received`
    assert [m.action for m in session.received].count("Authorize") == 2


async def test_an_answer_of_the_station_off_the_schema_is_a_violation(
    csms: CentralSystem,
) -> None:
    async with raw_station(csms, "CP-BAD2") as (raw, session):
        pending = asyncio.create_task(session.clear_cache())
        request = json.loads(await raw.ws.recv())
        assert request[2:] == ["ClearCache", {}]
        await raw.ws.send(json.dumps([3, request[1], {"status": "Maybe"}]))
        assert await pending == "Maybe"
    assert session.violations == [
        "ClearCacheResponse: status: 'Maybe' is not one of: Accepted, Rejected"
    ]


async def test_crafted_answers_go_out_as_given_and_are_not_judged(csms: CentralSystem) -> None:
    csms.answer_next["Heartbeat"] = [{"currentTime": "yesterday"}]
    async with raw_station(csms, "CP-CRAFT") as (raw, session):
        reply = await raw.call("Heartbeat", {})
    assert reply[2] == {"currentTime": "yesterday"}
    assert session.violations == []


# --------------------------------------------------------------------------- console


async def test_console_words_are_parsed_by_the_charge_points_version(csms: CentralSystem) -> None:
    # A string field stays text in 2.0.1 too, through "$ref" types: idToken.idToken=1234
    payload = parse_payload(
        "RequestStartTransaction",
        ["remoteStartId=1", "idToken.idToken=1234", "idToken.type=ISO14443"],
        "2.0.1",
    )
    assert payload == {"remoteStartId": 1, "idToken": {"idToken": "1234", "type": "ISO14443"}}
    checked("RequestStartTransaction", payload, "2.0.1")
    with pytest.raises(BadCall, match=r"RemoteStartTransaction.*2\.0\.1 action \(CP201 speaks"):
        checked("RemoteStartTransaction", {"idTag": TAG}, "2.0.1", "CP201")
    with pytest.raises(BadCall, match=r"ResetRequest: type: 'Soft' is not one of"):
        checked("Reset", {"type": "Soft"}, "2.0.1")
    async with station(csms) as (cp, _):
        await cp.call(
            call.StatusNotification(
                timestamp=utc_now(), connector_status="Available", evse_id=1, connector_id=1
            ),
            suppress=False,
        )
        (listed,) = charge_points(csms)
    assert listed == {
        "id": "CP201",
        "ocppVersion": "2.0.1",
        "registration": "Accepted",
        "vendor": "hilsim",
        "model": "bench-201",
        "evses": {"1": {"1": "Available"}},
        "transactions": [],
    }


async def test_a_transaction_continues_across_a_reconnect(csms: CentralSystem) -> None:
    tx = str(uuid.uuid4())

    async def event(cp: Station, kind: str, seq_no: int, **extra: Any) -> None:
        await cp.call(
            call.TransactionEvent(
                event_type=kind,
                timestamp=utc_now(),
                trigger_reason="Authorized" if kind == "Started" else "EVCommunicationLost",
                seq_no=seq_no,
                transaction_info={"transactionId": tx},
                **extra,
            ),
            suppress=False,
        )

    async with station(csms) as (cp, _):
        await event(cp, "Started", 0, evse={"id": 2, "connectorId": 1})
    async with station(csms) as (cp, session):
        # the outbox delivers the event that happened while the link was down, then the end
        await event(cp, "Updated", 1, offline=True)
        await event(cp, "Ended", 2)
        await session.wait_for("TransactionEvent", lambda p: p["seqNo"] == 2)
    record = csms.ledger201[tx]
    assert (record.seq_nos, record.gaps, record.problems) == ([0, 1, 2], [], [])
    assert record.offline_seq_nos == [1] and record.evse_id == 2 and not record.active


async def test_failure_injection_works_for_2_0_1_too(csms: CentralSystem) -> None:
    csms.refuse_next["Heartbeat"] = 1
    async with station(csms) as (cp, session):
        with pytest.raises(Exception, match="refused on purpose"):
            await cp.call(call.Heartbeat(), suppress=False)
        assert (await cp.call(call.Heartbeat(), suppress=False)).current_time
    assert [m.action for m in session.received] == ["BootNotification", "Heartbeat", "Heartbeat"]


async def test_hilsims_own_2_0_1_charge_point_boots_against_it(
    csms: CentralSystem, short_dir: Path
) -> None:
    """The charge point side (hilsim.ocpp201) and this CSMS agree on the wire: boot, status of
    each EVSE, a triggered Heartbeat, without a violation on either side (frames: the fixture)."""
    settings = make_settings(short_dir, csms.url, extra_charge_point='ocpp_version = "2.0.1"')
    service, task = await start_service(settings)
    try:
        session = await csms.wait_for_charge_point(CP_ID, timeout=WAIT)
        assert isinstance(session, ChargePointSession201)
        for evse in (1, 2):
            await session.wait_for(
                "StatusNotification",
                lambda p, evse=evse: p["evseId"] == evse and p["connectorStatus"] == "Available",
            )
        assert await session.trigger_message("Heartbeat") == "Accepted"
        await session.wait_for("Heartbeat")
        assert session.boot is not None
        assert session.boot["chargingStation"]["vendorName"] == "hilsim"
        assert session.violations == []
    finally:
        await stop_service(service, task)
