"""OCPP 2.0.1 smart charging over the wire: a real 2.0.1 CSMS (the `ocpp` library's
``ocpp.v201.ChargePoint`` on a websockets server, subprotocol ocpp2.0.1) drives the handler mixin
`SmartChargingHandlers201`, which works on a running hilsim's real charger and schedule engine.

The mixin is hosted by `StandIn`, the least a 2.0.1 client does (route CALLs by ``@on`` with
snake_case keys, send CALLRESULTs, run a `Reply`'s after-step, send CALLs), since this test is
about smart charging, not the client. The charger's meter values reach the hosting bench's CSMS,
which shows the limits reflected in them. Every 2.0.1 frame, both ways, is checked against the
official schemas, strictly.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websockets
from ocpp.routing import on as csms_on
from ocpp.v201 import ChargePoint as CsmsSide
from ocpp.v201 import call, call_result
from ocpp.v201.enums import Action
from scripted_csms201 import ScriptedCsms201, strict_violations

from hilsim.control import request
from hilsim.evse import events
from hilsim.ocpp.routing import Reply
from hilsim.ocpp.validation import snake_case
from hilsim.ocpp201.smart_charging_handlers import SmartChargingHandlers201
from hilsim.service import Service

from conftest import FAST_BACKOFF, TAG, Bench, make_settings, stop_service


def frame_violations(frames: list[tuple[bool, str]]) -> list[str]:
    """Every violation of the 2.0.1 schemas in recorded frames: CALLs, and CALLRESULTs by the
    action of the CALL they answer; a CALLERROR is one too (none is expected here)."""
    actions: dict[str, str] = {}
    found: list[str] = []
    for _, text in frames:
        msg = json.loads(text)
        if msg[0] == 2:
            actions[msg[1]] = msg[2]
            found += strict_violations(msg[2], msg[3], response=False)
        elif msg[0] == 3:
            found += strict_violations(actions.pop(msg[1]), msg[2], response=True)
        else:
            found.append(f"CALLERROR: {text:.300}")
    return found


class Recorded:
    """A websockets connection whose frames are kept, in order, with their direction."""

    def __init__(self, ws: Any, frames: list[tuple[bool, str]]) -> None:
        self.ws = ws
        self.frames = frames

    async def send(self, text: str) -> None:
        self.frames.append((True, text))
        await self.ws.send(text)

    async def recv(self) -> str:
        text = await self.ws.recv()
        self.frames.append((False, text))
        return str(text)


class Csms201(CsmsSide):
    """The CSMS: sends what the test asks, collects ReportChargingProfiles."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reports: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    @csms_on(Action.report_charging_profiles)
    def on_report(self, **payload: Any) -> call_result.ReportChargingProfiles:
        self.reports.put_nowait(payload)
        return call_result.ReportChargingProfiles()


@dataclass
class Ids:
    """TransactionIds: 2.0.1 transactionId <-> local id."""

    by_tx: dict[str, int] = field(default_factory=dict)

    def local_id(self, tx_id: str) -> int | None:
        return self.by_tx.get(tx_id)

    def tx_id(self, local_id: int) -> str | None:
        return next((t for t, local in self.by_tx.items() if local == local_id), None)


class StandIn(SmartChargingHandlers201):
    """The smallest 2.0.1 charge point client that can host a handler mixin."""

    def __init__(self, connection: Recorded, charger: Any) -> None:
        self.connection = connection
        self.charger = charger
        self.transaction_ids = Ids()
        self.pending: dict[str, asyncio.Future[Any]] = {}
        self.ids = itertools.count(1)
        self.after: set[asyncio.Task[Any]] = set()
        self.routes: dict[str, tuple[Callable[..., Any], bool]] = {}
        for name in dir(type(self)):
            member = getattr(type(self), name)
            action = getattr(member, "__ocpp_on__", None)
            if action is not None:
                self.routes[action] = (getattr(self, name), getattr(member, "__ocpp_raw__", False))

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        unique_id = f"cp-{next(self.ids)}"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[unique_id] = future
        await self.connection.send(json.dumps([2, unique_id, action, payload]))
        return dict(await asyncio.wait_for(future, 5))

    async def serve(self) -> None:
        while True:
            msg = json.loads(await self.connection.recv())
            if msg[0] != 2:
                self.pending.pop(msg[1]).set_result(msg[2])
                continue
            handler, raw = self.routes[msg[2]]
            result = handler(msg[3]) if raw else handler(**snake_case(msg[3]))
            if inspect.isawaitable(result):
                result = await result
            then = None
            if isinstance(result, Reply):
                result, then = result
            await self.connection.send(json.dumps([3, msg[1], result]))
            if then is not None and inspect.isawaitable(done := then()):
                task = asyncio.ensure_future(done)
                self.after.add(task)
                task.add_done_callback(self.after.discard)


@dataclass
class Wire:
    csms: Csms201
    cp: StandIn
    frames: list[tuple[bool, str]]


@pytest.fixture
async def wire(bench: Bench) -> AsyncIterator[Wire]:
    frames: list[tuple[bool, str]] = []
    connected: asyncio.Future[Csms201] = asyncio.get_running_loop().create_future()

    async def accept(ws: Any) -> None:
        assert ws.subprotocol == "ocpp2.0.1"
        csms = Csms201("CP201", Recorded(ws, frames), response_timeout=5)
        connected.set_result(csms)
        await csms.start()

    async with websockets.serve(accept, "127.0.0.1", 0, subprotocols=["ocpp2.0.1"]) as server:
        port = server.sockets[0].getsockname()[1]
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/CP201", subprotocols=["ocpp2.0.1"]
        ) as ws:
            cp = StandIn(Recorded(ws, []), bench.service.charger)
            serving = asyncio.create_task(cp.serve())
            csms = await asyncio.wait_for(connected, 5)
            yield Wire(csms, cp, frames)
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await serving
    assert len(frames) >= 8  # the CALLs and CALLRESULTs of the test, both ways
    assert frame_violations(frames) == []  # strictly, as tests/scripted_csms201.py checks


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


def offered_and_drawn(payload: dict[str, Any]) -> tuple[float | None, float | None]:
    values = {
        v.get("measurand"): float(v["value"])
        for mv in payload["meterValue"]
        for v in mv["sampledValue"]
    }
    return values.get("Power.Offered"), values.get("Power.Active.Import")


async def meter_values_show(bench: Bench, watts: float) -> None:
    await bench.session.wait_for(
        "MeterValues",
        lambda p: p["connectorId"] == 1 and offered_and_drawn(p) == (watts, watts),
        timeout=5,
    )


async def test_a_2_0_1_limit_is_followed_reported_and_cleared(bench: Bench, wire: Wire) -> None:
    session = bench.session
    await session.change_configuration("MeterValueSampleInterval", "1")
    measurands = "Power.Active.Import,Power.Offered"
    assert await session.change_configuration("MeterValuesSampledData", measurands) == "Accepted"
    csms = wire.csms
    profile = tx_default(7, 4000.0)

    answer = await csms.call(call.SetChargingProfile(evse_id=0, charging_profile=profile))
    assert answer.status == "Accepted"
    composite = await csms.call(call.GetCompositeSchedule(duration=600, evse_id=1))
    assert composite.status == "Accepted"
    assert composite.schedule["evse_id"] == 1
    assert composite.schedule["charging_schedule_period"] == [{"start_period": 0, "limit": 4000.0}]

    await bench.start_local(1)
    await meter_values_show(bench, 4000.0)  # offered and drawn: the 2.0.1 limit

    answer = await csms.call(
        call.GetChargingProfiles(request_id=42, charging_profile={"chargingLimitSource": ["CSO"]})
    )
    assert answer.status == "Accepted"
    reported = await asyncio.wait_for(csms.reports.get(), 5)
    assert (reported["request_id"], reported["evse_id"], reported["tbc"]) == (42, 0, False)
    sent_back = [
        json.loads(t)[3] for s, t in wire.frames if not s and '"ReportChargingProfiles"' in t
    ]
    assert sent_back[0]["chargingProfile"] == [profile]  # exactly as the CSMS sent it

    answer = await csms.call(call.ClearChargingProfile(charging_profile_id=7))
    assert answer.status == "Accepted"
    await meter_values_show(bench, 11000.0)  # the connector's own maximum again
    composite = await csms.call(
        call.GetCompositeSchedule(duration=60, evse_id=1, charging_rate_unit="A")
    )
    assert composite.schedule["charging_schedule_period"] == [{"start_period": 0, "limit": 47.8}]
    answer = await csms.call(call.GetChargingProfiles(request_id=43, charging_profile={}))
    assert answer.status == "NoProfiles"


async def test_what_2_0_1_forbids_is_refused_with_a_reason(bench: Bench, wire: Wire) -> None:
    csms = wire.csms
    external = tx_default(1, 1000) | {
        "chargingProfilePurpose": "ChargingStationExternalConstraints"
    }
    answer = await csms.call(call.SetChargingProfile(evse_id=0, charging_profile=external))
    assert (answer.status, answer.status_info["reason_code"]) == ("Rejected", "InvalidValue")
    no_tx = tx_default(2, 1000) | {"chargingProfilePurpose": "TxProfile"}
    answer = await csms.call(call.SetChargingProfile(evse_id=1, charging_profile=no_tx))
    assert (answer.status, answer.status_info["reason_code"]) == ("Rejected", "MissingParam")
    answer = await csms.call(
        call.SetChargingProfile(evse_id=9, charging_profile=tx_default(3, 1000))
    )
    assert (answer.status, answer.status_info["reason_code"]) == ("Rejected", "UnknownEvse")

    assert (
        await csms.call(call.SetChargingProfile(evse_id=1, charging_profile=tx_default(4, 2000)))
    ).status == "Accepted"
    clash = await csms.call(
        call.SetChargingProfile(evse_id=1, charging_profile=tx_default(5, 3000))
    )
    assert (clash.status, clash.status_info["reason_code"]) == ("Rejected", "DuplicateProfile")
    same_id = await csms.call(
        call.SetChargingProfile(evse_id=1, charging_profile=tx_default(4, 3000))
    )
    assert same_id.status == "Accepted"
    assert [p.id for p in bench.service.charger.smart_charging.profiles.profiles] == [4]

    answer = await csms.call(call.ClearChargingProfile(charging_profile_id=99))
    assert answer.status == "Unknown"
    answer = await csms.call(
        call.ClearChargingProfile(
            charging_profile_criteria={
                "chargingProfilePurpose": "ChargingStationExternalConstraints"
            }
        )
    )
    assert answer.status == "Unknown"
    answer = await csms.call(
        call.ClearChargingProfile(charging_profile_criteria={"evseId": 1, "stackLevel": 1})
    )
    assert answer.status == "Accepted"
    answer = await csms.call(call.GetCompositeSchedule(duration=60, evse_id=9))
    assert (answer.status, answer.status_info["reason_code"]) == ("Rejected", "UnknownEvse")


# -- end to end: a 2.0.1 hilsim (ChargePointClient201) and a 2.0.1 CSMS over the wire ----------
#
# The CSMS is tests/scripted_csms201.py's (a real websockets server answering the charge point's
# CALLs, checking every frame both ways strictly). The meter values are the non-transaction
# MeterValues a TriggerMessage asks for: TransactionEvent is not on main yet (when it is, its
# meterValue carries the same values). Until then a local start is an "offline" start once the
# StartTransaction the 1.6 outbox records goes unanswered, hence the short response timeout.


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


def reports(csms: ScriptedCsms201, since: int) -> list[dict[str, Any]]:
    return csms.calls("ReportChargingProfiles", since)


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
    """Needs the 2.0.1 transactionId the charge point chose (TransactionEvent Started)."""
    csms, charger = cp201.csms, cp201.service.charger
    measurands = "Energy.Active.Import.Register,Power.Active.Import,Power.Offered"
    assert await charger.configuration.change_configuration(
        "MeterValuesSampledData", measurands
    ) == "Accepted"  # fmt: skip
    await cp201.charging(1)
    started = csms.calls("TransactionEvent")
    if not started:
        pytest.skip("no TransactionEvent on this branch yet: no 2.0.1 transactionId to name")
    tx_id = started[0]["transactionInfo"]["transactionId"]
    profile = tx_default(5, 2000.0, stack=2) | {"chargingProfilePurpose": "TxProfile",
                                                "transactionId": tx_id}  # fmt: skip
    answer = await csms.result("SetChargingProfile", {"evseId": 1, "chargingProfile": profile})
    assert answer == {"status": "Accepted"}
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
