"""The OCPP 2.0.1 device model over the wire: a real service with ``ocpp_version = "2.0.1"``
against a scripted 2.0.1 CSMS on a real websockets server (tests/scripted_csms201.py).

GetVariables and SetVariables, SetVariables surviving a restart of the service, GetBaseReport
and GetReport followed by their NotifyReport frames, DeviceDataCtrlr's limits as CALLERRORs, and
NotifyEvent for a change the operator made; every frame either side sends strictly schema-valid.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from scripted_csms201 import CALLERROR, CALLRESULT, ScriptedCsms201

from hilsim.config import Settings
from hilsim.control import request
from hilsim.service import Service

from conftest import CP_ID, make_settings, start_service, stop_service

VERSION = 'ocpp_version = "2.0.1"'


class Running:
    def __init__(self, settings: Settings, csms: HeaderCsms) -> None:
        self.settings, self.csms = settings, csms
        self.service: Service | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        mark = self.csms.mark()
        self.service, self.task = await start_service(self.settings)
        # Booted and told the CSMS its connectors: ready for the CSMS's CALLs.
        await self.csms.wait_for("StatusNotification", lambda p: p["evseId"] == 2, since=mark)

    async def stop(self) -> None:
        assert self.service is not None and self.task is not None
        await stop_service(self.service, self.task)
        self.service = self.task = None

    async def ctl(self, cmd: str, **extra: Any) -> dict[str, Any]:
        return await request(self.settings.control.socket, {"cmd": cmd, **extra})


class HeaderCsms(ScriptedCsms201):
    """The scripted CSMS, also keeping each connection's request headers (Basic auth)."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[dict[str, str]] = []

    async def _serve(self, ws: Any) -> None:
        self.headers.append(dict(ws.request.headers) if ws.request else {})
        await super()._serve(ws)


@pytest.fixture
async def csms() -> AsyncIterator[HeaderCsms]:  # type: ignore[override]
    async with HeaderCsms() as central:
        yield central
        assert central.violations() == []


@pytest.fixture
async def cp(csms: HeaderCsms, short_dir: Path) -> AsyncIterator[Running]:
    running = Running(make_settings(short_dir, csms.url, extra_charge_point=VERSION), csms)
    await running.start()
    try:
        yield running
    finally:
        if running.service is not None:
            await running.stop()


def _item(component: str, variable: str, **extra: Any) -> dict[str, Any]:
    return {"component": {"name": component}, "variable": {"name": variable}, **extra}


async def _get(csms: ScriptedCsms201, *items: dict[str, Any]) -> list[dict[str, Any]]:
    answer = await csms.result("GetVariables", {"getVariableData": list(items)})
    return answer["getVariableResult"]  # type: ignore[no-any-return]


async def test_get_variables_over_the_wire(cp: Running) -> None:
    results = await _get(
        cp.csms,
        _item("OCPPCommCtrlr", "HeartbeatInterval"),
        _item("TxCtrlr", "TxStartPoint"),
        {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "Power"},
         "attributeType": "MaxSet"},
        {"component": {"name": "Connector", "evse": {"id": 2, "connectorId": 1}},
         "variable": {"name": "AvailabilityState"}},
        _item("SecurityCtrlr", "BasicAuthPassword"),
        _item("FluxCapacitorCtrlr", "Enabled"),
        _item("OCPPCommCtrlr", "Warp"),
    )  # fmt: skip
    assert [(r["attributeStatus"], r.get("attributeValue")) for r in results] == [
        ("Accepted", "300"),  # the BootNotification answer's interval
        ("Accepted", "PowerPathClosed"),
        ("Accepted", "11000"),
        ("Accepted", "Available"),
        ("Rejected", None),
        ("UnknownComponent", None),
        ("UnknownVariable", None),
    ]
    assert results[2]["component"] == {"name": "EVSE", "evse": {"id": 1}}


async def test_set_variables_persist_across_a_restart(cp: Running) -> None:
    csms = cp.csms
    answer = await csms.result("SetVariables", {"setVariableData": [
        _item("OCPPCommCtrlr", "OfflineThreshold", attributeValue="90"),
        _item("TxCtrlr", "TxStopPoint", attributeValue="EVConnected"),
        _item("SampledDataCtrlr", "TxUpdatedInterval", attributeValue="20"),
        _item("ChargingStation", "Model", attributeValue="other"),
        _item("TxCtrlr", "TxStartPoint", attributeValue="Teleported"),
    ]})  # fmt: skip
    statuses = [r["attributeStatus"] for r in answer["setVariableResult"]]
    assert statuses == ["Accepted", "Accepted", "Accepted", "Rejected", "Rejected"]
    info = answer["setVariableResult"][4]["attributeStatusInfo"]
    assert info["reasonCode"] == "InvalidValue"
    assert cp.service is not None and cp.service.keys is not None
    assert cp.service.keys.get("MeterValueSampleInterval") == 20  # the 1.6 key itself

    await cp.stop()
    await cp.start()
    results = await _get(
        csms,
        _item("OCPPCommCtrlr", "OfflineThreshold"),
        _item("TxCtrlr", "TxStopPoint"),
        _item("SampledDataCtrlr", "TxUpdatedInterval"),
        _item("TxCtrlr", "TxStartPoint"),
    )
    assert [r["attributeValue"] for r in results] == ["90", "EVConnected", "20", "PowerPathClosed"]


async def test_get_base_report_then_notify_report_frames(cp: Running) -> None:
    csms = cp.csms
    mark = csms.mark()
    answer = await csms.result("GetBaseReport", {"requestId": 42, "reportBase": "FullInventory"})
    assert answer == {"status": "Accepted"}
    # The answer is on the wire before the first NotifyReport.
    [first] = await csms.wait_for("NotifyReport", since=mark)
    answered_at = next(i for i, (sent, msg) in enumerate(csms.frames[mark:])
                       if not sent and msg[0] == CALLRESULT)  # fmt: skip
    report_at = next(i for i, (sent, msg) in enumerate(csms.frames[mark:])
                     if not sent and msg[0] == 2 and msg[2] == "NotifyReport")  # fmt: skip
    assert answered_at < report_at
    assert cp.service is not None and cp.service.charger is not None
    model = cp.service.charger.device_model
    assert model is not None
    frames = [first]
    while frames[-1].get("tbc", False):
        frames = await csms.wait_for("NotifyReport", since=mark, count=len(frames) + 1)
    assert [f["seqNo"] for f in frames] == list(range(len(frames)))
    assert {f["requestId"] for f in frames} == {42}
    data = [d for f in frames for d in f["reportData"]]
    assert len(data) == len(model.catalogue) and len(frames) > 1
    assert all(len(f["reportData"]) <= 50 for f in frames)
    by_name = {(d["component"]["name"], d["variable"]["name"]): d for d in data}
    secret = by_name[("SecurityCtrlr", "BasicAuthPassword")]["variableAttribute"][0]
    assert secret["mutability"] == "WriteOnly" and "value" not in secret

    answer = await csms.result("GetBaseReport", {"requestId": 43, "reportBase": "SummaryInventory"})
    assert answer == {"status": "Accepted"}
    [summary] = await csms.wait_for("NotifyReport", lambda p: p["requestId"] == 43, since=mark)
    assert {d["variable"]["name"] for d in summary["reportData"]} == {
        "AvailabilityState", "Available",
    }  # fmt: skip


async def test_get_report_by_component(cp: Running) -> None:
    csms = cp.csms
    mark = csms.mark()
    answer = await csms.result("GetReport", {
        "requestId": 7, "componentVariable": [{"component": {"name": "AuthCtrlr"}}],
    })  # fmt: skip
    assert answer == {"status": "Accepted"}
    [report] = await csms.wait_for("NotifyReport", since=mark)
    assert {d["component"]["name"] for d in report["reportData"]} == {"AuthCtrlr"}
    answer = await csms.result("GetReport", {
        "requestId": 8, "componentVariable": [{"component": {"name": "Nothing"}}],
    })  # fmt: skip
    assert answer == {"status": "EmptyResultSet"}


async def test_more_items_than_the_charge_point_takes_is_a_callerror(cp: Running) -> None:
    items = [_item("OCPPCommCtrlr", "HeartbeatInterval")] * 51
    answer = await cp.csms.call("GetVariables", {"getVariableData": items})
    assert answer[0] == CALLERROR and answer[2] == "OccurrenceConstraintViolation", answer
    # ... and it carries on.
    [result] = await _get(cp.csms, _item("OCPPCommCtrlr", "HeartbeatInterval"))
    assert result["attributeStatus"] == "Accepted"


async def test_an_operator_change_is_a_notify_event(cp: Running) -> None:
    csms = cp.csms
    mark = csms.mark()
    assert (await cp.ctl("config-set", key="HeartbeatInterval", value="240"))["ok"]
    [event] = await csms.wait_for("NotifyEvent", since=mark)
    [data] = event["eventData"]
    assert data["component"] == {"name": "OCPPCommCtrlr"}
    assert (data["variable"], data["actualValue"]) == ({"name": "HeartbeatInterval"}, "240")
    # A SetVariables is no news to the CSMS that made it.
    mark = csms.mark()
    await csms.result("SetVariables", {"setVariableData": [
        _item("OCPPCommCtrlr", "HeartbeatInterval", attributeValue="250"),
    ]})  # fmt: skip
    await _get(csms, _item("OCPPCommCtrlr", "HeartbeatInterval"))  # a round trip later ...
    assert csms.calls("NotifyEvent", since=mark) == []


def test_a_1_6_charge_point_never_imports_the_device_model() -> None:
    code = (
        "import sys, hilsim.cli, hilsim.service, hilsim.wiring, hilsim.charger\n"
        "assert not [m for m in sys.modules if m.startswith('hilsim.device_model')]\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


async def test_basic_auth_password_and_security_profile_connect_again(cp: Running) -> None:
    csms = cp.csms
    mark = csms.mark()
    password = "bench-password-0123"
    answer = await csms.result("SetVariables", {"setVariableData": [
        _item("SecurityCtrlr", "BasicAuthPassword", attributeValue=password),
        _item("SecurityCtrlr", "SecurityProfile", attributeValue="1"),
    ]})  # fmt: skip
    assert [r["attributeStatus"] for r in answer["setVariableResult"]] == ["Accepted", "Accepted"]
    # Once the answer is on the wire, the charge point connects again with Basic auth.
    await csms.wait_for("BootNotification", since=mark)
    credentials = base64.b64encode(f"{CP_ID}:{password}".encode()).decode()
    assert csms.headers[-1].get("authorization") == f"Basic {credentials}"
    assert cp.service is not None and cp.service.keys is not None
    assert cp.service.keys.get("AuthorizationKey") == password.encode().hex()
    [result] = await _get(csms, _item("SecurityCtrlr", "SecurityProfile"))
    assert result["attributeValue"] == "1"
    # Never down again.
    answer = await csms.result("SetVariables", {"setVariableData": [
        _item("SecurityCtrlr", "SecurityProfile", attributeValue="0"),
    ]})  # fmt: skip
    assert answer["setVariableResult"][0]["attributeStatus"] == "Rejected"


async def test_against_the_built_in_csms(short_dir: Path) -> None:
    """`hilsim csms` and hilsim's own 2.0.1 charge point agree on the device model's wire:
    its strict checks find nothing either side sends."""
    from hilsim.csms import CentralSystem
    from hilsim.csms.commands201 import component_variable

    async with CentralSystem("127.0.0.1", 0) as central:
        settings = make_settings(short_dir, central.url, extra_charge_point=VERSION)
        service, task = await start_service(settings)
        try:
            session = await central.wait_for_charge_point(CP_ID, timeout=5)
            await session.wait_for("StatusNotification", lambda p: p["evseId"] == 2)
            assert await session.set_variable("TxCtrlr", "TxStopPoint", "Authorized") == (
                "Accepted"
            )
            assert await session.get_variable("TxCtrlr", "TxStopPoint") == "Authorized"
            item = component_variable("EVSE", "Power", evse_id=1, attribute="MaxSet")
            [power] = await session.get_variables(item)
            assert power["attributeValue"] == "11000"
            assert await session.get_base_report(3, "ConfigurationInventory") == "Accepted"
            report = await session.wait_for_report(3)
            assert report.seq_nos == list(range(len(report.parts)))
            assert ("TxCtrlr", "TxStopPoint") in report.variables()
            assert session.violations == []
        finally:
            await stop_service(service, task)
