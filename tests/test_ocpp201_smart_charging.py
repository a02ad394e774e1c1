"""OCPP 2.0.1 smart charging end to end: a real hilsim with ``ocpp_version = "2.0.1"``
(`ChargePointClient201` and its `SmartChargingHandlers201`, on the one schedule engine) against
a real 2.0.1 CSMS over websockets (subprotocol ocpp2.0.1).

Three CSMSs: tests/scripted_csms201.py's, which answers the charge point's CALLs and checks
every frame both ways strictly; the `ocpp` library's ``ocpp.v201.ChargePoint`` (an independent
implementation many central systems are built on); and the built-in ``hilsim csms``. The frames
of the last two are recorded and checked the same way.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import websockets
from ocpp.routing import on as csms_on
from ocpp.v201 import ChargePoint as LibraryCsms
from ocpp.v201 import call, call_result
from ocpp.v201.enums import Action
from scripted_csms201 import ScriptedCsms201, strict_violations

from hilsim.control import request
from hilsim.csms import CentralSystem
from hilsim.evse import events
from hilsim.ocpp.wire import Frame
from hilsim.service import Service

from conftest import CP_ID, FAST_BACKOFF, TAG, make_settings, start_service, stop_service


def tx_default(profile_id: int, watts: float, *, stack: int = 1) -> dict[str, Any]:
    return {
        "id": profile_id,
        "stackLevel": stack,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": [
            {
                "id": 100 + profile_id,
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": watts}],
            }
        ],
        "customData": {"vendorId": "hilsim.test"},
    }


# -- end to end: a 2.0.1 hilsim (ChargePointClient201) and a 2.0.1 CSMS over the wire ----------
#
# The CSMS is tests/scripted_csms201.py's (a real websockets server answering the charge point's
# CALLs, checking every frame both ways strictly). The meter values are the MeterValues a
# TriggerMessage asks for, and the TransactionEvents' meterValue, which carries the same values.


class Running201:
    def __init__(self, service: Service, task: asyncio.Task[None], csms: ScriptedCsms201,
                 settings: Any) -> None:  # fmt: skip
        self.service, self.task, self.csms, self.settings = service, task, csms, settings

    async def ctl(self, cmd: str, connector: int, **extra: Any) -> dict[str, Any]:
        return await request(self.settings.control.socket, {"cmd": cmd, "connector": connector,
                                                            **extra})  # fmt: skip

    async def charging(self, connector: int) -> None:
        """Plug in and present a tag; returns once the transaction started."""
        charger = self.service.charger
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def listener(cid: int, event: Any, outcome: Any) -> None:
            started_here = cid == connector and isinstance(event, events.TransactionStarted)
            if started_here and not started.done():
                started.set_result(None)

        charger.event_listeners.append(listener)
        try:
            assert (await self.ctl("plug", connector))["ok"]
            assert (await self.ctl("tag", connector, id_tag=TAG))["ok"]
            await asyncio.wait_for(started, 10)
        finally:
            charger.event_listeners.remove(listener)

    async def triggered_meter_values(self, evse_id: int) -> dict[str, float]:
        """TriggerMessage MeterValues of one EVSE: its sampled values by measurand."""
        mark = self.csms.mark()
        answer = await self.csms.result(
            "TriggerMessage", {"requestedMessage": "MeterValues", "evse": {"id": evse_id}}
        )
        assert answer == {"status": "Accepted"}
        [sent] = await self.csms.wait_for("MeterValues", since=mark)
        assert sent["evseId"] == evse_id
        return {
            v.get("measurand", "Energy.Active.Import.Register"): v["value"]
            for mv in sent["meterValue"]
            for v in mv["sampledValue"]
        }


async def start_201(csms: ScriptedCsms201, directory: Path) -> Running201:
    settings = make_settings(directory, csms.url, extra_charge_point='ocpp_version = "2.0.1"')
    service = Service(settings, backoff=FAST_BACKOFF, response_timeout=1)
    task = asyncio.create_task(service.run())
    await asyncio.wait_for(service.ready.wait(), 5)
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 2, since=csms.mark())
    return Running201(service, task, csms, settings)


@pytest.fixture
async def csms201() -> AsyncIterator[ScriptedCsms201]:
    async with ScriptedCsms201() as central:
        yield central
        assert len(central.frames) > 10
        assert central.violations() == []


@pytest.fixture
async def cp201(csms201: ScriptedCsms201, short_dir: Path) -> AsyncIterator[Running201]:
    running = await start_201(csms201, short_dir)
    yield running
    await stop_service(running.service, running.task)


async def test_e2e_limit_in_composite_schedule_and_meter_values_then_cleared(
    cp201: Running201,
) -> None:
    csms, charger = cp201.csms, cp201.service.charger
    # What SampledDataCtrlr.TxUpdatedMeasurands will set once the device model is in: the
    # measurands of the triggered MeterValues.
    measurands = "Energy.Active.Import.Register,Power.Active.Import,Power.Offered"
    assert await charger.configuration.change_configuration(
        "MeterValuesSampledData", measurands
    ) == "Accepted"  # fmt: skip
    profile = tx_default(7, 4000.0) | {"customData": {"vendorId": "hilsim.test"}}
    answer = await csms.result("SetChargingProfile", {"evseId": 0, "chargingProfile": profile})
    assert answer == {"status": "Accepted"}
    composite = await csms.result("GetCompositeSchedule", {"duration": 600, "evseId": 1})
    assert composite["status"] == "Accepted"
    assert composite["schedule"]["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 4000.0}]

    await cp201.charging(1)
    values = await cp201.triggered_meter_values(1)
    assert (values["Power.Offered"], values["Power.Active.Import"]) == (4000.0, 4000.0)

    mark = csms.mark()
    answer = await csms.result("GetChargingProfiles", {"requestId": 42, "chargingProfile": {}})
    assert answer == {"status": "Accepted"}
    [report] = await csms.wait_for("ReportChargingProfiles", since=mark)
    assert report == {"requestId": 42, "chargingLimitSource": "CSO", "evseId": 0,
                      "chargingProfile": [profile], "tbc": False}  # fmt: skip
    kinds = [(sent, m[0]) for sent, m in csms.frames[mark:]]
    assert kinds.index((False, 3)) < kinds.index((False, 2))  # the answer, then the report

    answer = await csms.result("ClearChargingProfile", {"chargingProfileId": 7})
    assert answer == {"status": "Accepted"}
    values = await cp201.triggered_meter_values(1)
    assert (values["Power.Offered"], values["Power.Active.Import"]) == (11000.0, 11000.0)
    composite = await csms.result("GetCompositeSchedule", {"duration": 60, "evseId": 1,
                                                           "chargingRateUnit": "A"})  # fmt: skip
    assert composite["schedule"]["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 47.8}]
    answer = await csms.result("GetChargingProfiles", {"requestId": 43, "chargingProfile": {}})
    assert answer == {"status": "NoProfiles"}


async def test_e2e_a_significant_change_of_the_limit_is_a_charging_rate_changed(
    cp201: Running201,
) -> None:
    """K01 / SmartChargingCtrlr.LimitChangeSignificance (0.1 by default): the CSMS hears of a
    limit that changes a running transaction's rate by more than that, not of smaller steps."""
    csms, charger = cp201.csms, cp201.service.charger
    measurands = "Energy.Active.Import.Register,Power.Offered"
    assert await charger.configuration.change_configuration(
        "MeterValuesSampledData", measurands
    ) == "Accepted"  # fmt: skip
    await cp201.charging(1)
    [started] = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Started")
    tx_id = started["transactionInfo"]["transactionId"]

    def rate_changed(p: dict[str, Any]) -> bool:
        return p["triggerReason"] == "ChargingRateChanged"

    mark = csms.mark()
    profile = tx_default(1, 4000.0)
    answer = await csms.result("SetChargingProfile", {"evseId": 1, "chargingProfile": profile})
    assert answer == {"status": "Accepted"}
    [changed] = await csms.wait_for("TransactionEvent", rate_changed, since=mark)
    assert changed["eventType"] == "Updated"
    assert changed["transactionInfo"]["transactionId"] == tx_id
    # 4000 -> 4200 W is 5 %: nothing; then 4200 -> 3000 W is 25 % of what the CSMS knows.
    for profile in (tx_default(1, 4200.0), tx_default(1, 3000.0)):
        answer = await csms.result("SetChargingProfile", {"evseId": 1, "chargingProfile": profile})
        assert answer == {"status": "Accepted"}
    # A triggered TransactionEvent goes through the same outbox, after anything queued before.
    trigger = {"requestedMessage": "TransactionEvent", "evse": {"id": 1}}
    assert await csms.result("TriggerMessage", trigger) == {"status": "Accepted"}
    await csms.wait_for("TransactionEvent", lambda p: p["triggerReason"] == "Trigger", since=mark)
    assert len([p for p in csms.calls("TransactionEvent", mark) if rate_changed(p)]) == 2
    values = await cp201.triggered_meter_values(1)
    assert values["Power.Offered"] == 3000.0


async def test_e2e_a_station_maximum_survives_a_restart_as_sent(
    csms201: ScriptedCsms201, short_dir: Path
) -> None:
    cap = {
        "id": 3,
        "stackLevel": 0,
        "chargingProfilePurpose": "ChargingStationMaxProfile",
        "chargingProfileKind": "Recurring",
        "recurrencyKind": "Daily",
        "validFrom": "2026-01-01T00:00:00Z",
        "chargingSchedule": [{"id": 30, "startSchedule": "2026-01-01T22:00:00+01:00",
                              "duration": 28800, "chargingRateUnit": "A",
                              "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16,
                                                          "numberPhases": 1}]}],
    }  # fmt: skip
    running = await start_201(csms201, short_dir)
    try:
        answer = await csms201.result("SetChargingProfile", {"evseId": 0, "chargingProfile": cap})
        assert answer == {"status": "Accepted"}
    finally:
        await stop_service(running.service, running.task)
    running = await start_201(csms201, short_dir)
    try:
        mark = csms201.mark()
        request_ = {
            "requestId": 1,
            "evseId": 0,
            "chargingProfile": {"chargingProfilePurpose": "ChargingStationMaxProfile"},
        }
        assert await csms201.result("GetChargingProfiles", request_) == {"status": "Accepted"}
        [report] = await csms201.wait_for("ReportChargingProfiles", since=mark)
        assert report["chargingProfile"] == [cap]  # its times and numbers as the CSMS wrote them
    finally:
        await stop_service(running.service, running.task)


async def test_e2e_a_tx_profile_names_the_running_transaction(cp201: Running201) -> None:
    """The 2.0.1 transactionId the charge point chose (TransactionEvent Started) names the
    transaction a TxProfile limits; the limit shows in the TransactionEvents' meter values."""
    csms = cp201.csms
    measurands = "Energy.Active.Import.Register,Power.Active.Import,Power.Offered"
    answer = await csms.result("SetVariables", {"setVariableData": [
        {"component": {"name": "SampledDataCtrlr"}, "variable": {"name": name},
         "attributeValue": value}
        for name, value in (("TxUpdatedMeasurands", measurands), ("TxUpdatedInterval", "1"))
    ]})  # fmt: skip
    assert {r["attributeStatus"] for r in answer["setVariableResult"]} == {"Accepted"}
    mark = csms.mark()
    await cp201.charging(1)
    [started] = await csms.wait_for(
        "TransactionEvent", lambda p: p["eventType"] == "Started", since=mark
    )
    tx_id = started["transactionInfo"]["transactionId"]
    profile = tx_default(5, 2000.0, stack=2) | {"chargingProfilePurpose": "TxProfile",
                                                "transactionId": tx_id}  # fmt: skip
    answer = await csms.result("SetChargingProfile", {"evseId": 1, "chargingProfile": profile})
    assert answer == {"status": "Accepted"}
    mark = csms.mark()

    def limited(payload: dict[str, Any]) -> bool:
        values = {v.get("measurand"): v["value"] for mv in payload.get("meterValue", [])
                  for v in mv["sampledValue"] if "phase" not in v}  # fmt: skip
        return (
            payload["triggerReason"] == "MeterValuePeriodic"
            and payload["transactionInfo"]["transactionId"] == tx_id
            and (values.get("Power.Offered"), values.get("Power.Active.Import"))
            == (2000.0, 2000.0)
        )

    await csms.wait_for("TransactionEvent", limited, since=mark)
    values = await cp201.triggered_meter_values(1)
    assert (values["Power.Offered"], values["Power.Active.Import"]) == (2000.0, 2000.0)
    mark = csms.mark()
    criteria = {"chargingProfilePurpose": "TxProfile"}
    answer = await csms.result("GetChargingProfiles", {"requestId": 7, "chargingProfile": criteria})
    assert answer == {"status": "Accepted"}
    [report] = await csms.wait_for("ReportChargingProfiles", since=mark)
    assert (report["evseId"], report["chargingProfile"]) == (1, [profile])
    wrong = profile | {"id": 6, "stackLevel": 3, "transactionId": "not-this-one"}
    answer = await csms.result("SetChargingProfile", {"evseId": 1, "chargingProfile": wrong})
    assert (answer["status"], answer["statusInfo"]["reasonCode"]) == ("Rejected", "TxNotFound")


async def test_e2e_what_2_0_1_forbids_is_refused_with_a_reason(cp201: Running201) -> None:
    csms, charger = cp201.csms, cp201.service.charger

    async def set_profile(evse_id: int, profile: dict[str, Any]) -> dict[str, Any]:
        payload = {"evseId": evse_id, "chargingProfile": profile}
        return await csms.result("SetChargingProfile", payload)

    def refused(answer: dict[str, Any]) -> tuple[str, str]:
        return answer["status"], answer["statusInfo"]["reasonCode"]

    external = tx_default(1, 1000) | {
        "chargingProfilePurpose": "ChargingStationExternalConstraints"
    }
    assert refused(await set_profile(0, external)) == ("Rejected", "InvalidValue")
    no_tx = tx_default(2, 1000) | {"chargingProfilePurpose": "TxProfile"}
    assert refused(await set_profile(1, no_tx)) == ("Rejected", "MissingParam")
    assert refused(await set_profile(9, tx_default(3, 1000))) == ("Rejected", "UnknownEvse")
    assert await set_profile(1, tx_default(4, 2000)) == {"status": "Accepted"}
    assert refused(await set_profile(1, tx_default(5, 3000))) == ("Rejected", "DuplicateProfile")
    assert await set_profile(1, tx_default(4, 3000)) == {"status": "Accepted"}  # same id replaces
    assert [p.id for p in charger.smart_charging.profiles.profiles] == [4]

    assert await csms.result("ClearChargingProfile", {"chargingProfileId": 99}) == {
        "status": "Unknown"
    }
    criteria: dict[str, Any] = {"chargingProfilePurpose": "ChargingStationExternalConstraints"}
    answer = await csms.result("ClearChargingProfile", {"chargingProfileCriteria": criteria})
    assert answer == {"status": "Unknown"}
    criteria = {"evseId": 1, "stackLevel": 1}
    answer = await csms.result("ClearChargingProfile", {"chargingProfileCriteria": criteria})
    assert answer == {"status": "Accepted"}
    assert charger.smart_charging.profiles.profiles == []
    answer = await csms.result("GetCompositeSchedule", {"duration": 60, "evseId": 9})
    assert refused(answer) == ("Rejected", "UnknownEvse")


# -- the `ocpp` library's 2.0.1 CSMS -------------------------------------------------------------


class Recorded:
    """A websockets connection whose frames are kept, in order."""

    def __init__(self, ws: Any, frames: list[str]) -> None:
        self.ws, self.frames = ws, frames

    async def send(self, text: str) -> None:
        self.frames.append(text)
        await self.ws.send(text)

    async def recv(self) -> str:
        text = str(await self.ws.recv())
        self.frames.append(text)
        return text


def frame_violations(frames: list[str]) -> list[str]:
    """Every violation of the 2.0.1 schemas in recorded frames: CALLs, and CALLRESULTs by the
    action of the CALL they answer; a CALLERROR is one too (none is expected here)."""
    actions: dict[str, str] = {}
    found: list[str] = []
    for text in frames:
        msg = json.loads(text)
        if msg[0] == 2:
            actions[msg[1]] = msg[2]
            found += strict_violations(msg[2], msg[3], response=False)
        elif msg[0] == 3:
            found += strict_violations(actions.pop(msg[1]), msg[2], response=True)
        else:
            found.append(f"CALLERROR: {text:.300}")
    return found


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Csms(LibraryCsms):
    """What a 2.0.1 CSMS built on the `ocpp` library answers a charge point; keeps the reports."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reports: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.booted = asyncio.Event()

    @csms_on(Action.boot_notification)
    def on_boot(self, **_: Any) -> call_result.BootNotification:
        self.booted.set()
        return call_result.BootNotification(current_time=_now(), interval=300, status="Accepted")

    @csms_on(Action.heartbeat)
    def on_heartbeat(self, **_: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=_now())

    @csms_on(Action.status_notification)
    def on_status(self, **_: Any) -> call_result.StatusNotification:
        return call_result.StatusNotification()

    @csms_on(Action.security_event_notification)
    def on_security_event(self, **_: Any) -> call_result.SecurityEventNotification:
        return call_result.SecurityEventNotification()

    @csms_on(Action.notify_event)
    def on_notify_event(self, **_: Any) -> call_result.NotifyEvent:
        return call_result.NotifyEvent()

    @csms_on(Action.report_charging_profiles)
    def on_report(self, **payload: Any) -> call_result.ReportChargingProfiles:
        self.reports.put_nowait(payload)
        return call_result.ReportChargingProfiles()


async def test_e2e_against_the_ocpp_librarys_csms(short_dir: Path) -> None:
    frames: list[str] = []
    connected: asyncio.Future[Csms] = asyncio.get_running_loop().create_future()

    async def accept(ws: Any) -> None:
        assert ws.subprotocol == "ocpp2.0.1"
        csms = Csms(CP_ID, Recorded(ws, frames), response_timeout=5)
        connected.set_result(csms)
        await csms.start()

    async with websockets.serve(accept, "127.0.0.1", 0, subprotocols=["ocpp2.0.1"]) as server:
        port = server.sockets[0].getsockname()[1]
        settings = make_settings(short_dir, f"ws://127.0.0.1:{port}",
                                 extra_charge_point='ocpp_version = "2.0.1"')  # fmt: skip
        service = Service(settings, backoff=FAST_BACKOFF, response_timeout=5)
        task = asyncio.create_task(service.run())
        try:
            csms = await asyncio.wait_for(connected, 5)
            await asyncio.wait_for(csms.booted.wait(), 5)
            profile = tx_default(7, 4000.0)
            answer = await csms.call(call.SetChargingProfile(evse_id=0, charging_profile=profile))
            assert answer.status == "Accepted"
            composite = await csms.call(call.GetCompositeSchedule(duration=600, evse_id=2))
            assert composite.status == "Accepted"
            assert composite.schedule["charging_schedule_period"] == [
                {"start_period": 0, "limit": 4000.0}
            ]
            criterion = {"chargingLimitSource": ["CSO"]}
            answer = await csms.call(
                call.GetChargingProfiles(request_id=42, charging_profile=criterion)
            )
            assert answer.status == "Accepted"
            reported = await asyncio.wait_for(csms.reports.get(), 5)
            assert (reported["request_id"], reported["evse_id"], reported["tbc"]) == (42, 0, False)
            [sent_back] = [json.loads(t)[3] for t in frames if '"ReportChargingProfiles"' in t]
            assert sent_back["chargingProfile"] == [profile]  # exactly as the CSMS sent it
            answer = await csms.call(call.ClearChargingProfile(charging_profile_id=7))
            assert answer.status == "Accepted"
            answer = await csms.call(call.GetChargingProfiles(request_id=43, charging_profile={}))
            assert answer.status == "NoProfiles"
        finally:
            await stop_service(service, task)
    assert len(frames) > 10
    assert frame_violations(frames) == []


# -- the built-in CSMS (`hilsim csms`), which speaks 2.0.1 too ---------------------------------


async def test_e2e_against_the_built_in_csms(short_dir: Path) -> None:
    frames: list[Frame] = []
    async with CentralSystem(on_frame=lambda _cp, frame: frames.append(frame)) as central:
        settings = make_settings(short_dir, central.url,
                                 extra_charge_point='ocpp_version = "2.0.1"')  # fmt: skip
        service, task = await start_service(settings)
        try:
            session = await central.wait_for_charge_point(CP_ID, timeout=5)
            await session.wait_for("StatusNotification", lambda p: p["evseId"] == 2)
            cap = tx_default(2, 7000.0) | {"chargingProfilePurpose": "ChargingStationMaxProfile",
                                           "chargingProfileKind": "Absolute"}  # fmt: skip
            cap["chargingSchedule"][0]["startSchedule"] = "2026-01-01T00:00:00Z"
            assert await session.set_charging_profile(0, cap) == "Accepted"
            composite = await session.get_composite_schedule(0, 300)
            assert composite["schedule"]["chargingSchedulePeriod"] == [
                {"startPeriod": 0, "limit": 7000.0}
            ]  # the two EVSEs' 11 kW + 7.4 kW, capped by the station's maximum
            criteria = {"chargingProfilePurpose": "ChargingStationMaxProfile"}
            assert await session.get_charging_profiles(5, criteria) == "Accepted"
            report = await session.wait_for_charging_profiles(5)
            assert [part["chargingProfile"] for part in report.parts] == [[cap]]
            assert await session.clear_charging_profile(criteria={"evseId": 0}) == "Accepted"
            assert await session.get_charging_profiles(6, {}) == "NoProfiles"
            assert session.violations == []
        finally:
            await stop_service(service, task)
    assert len(frames) > 10
    assert frame_violations([frame.text for frame in frames]) == []
