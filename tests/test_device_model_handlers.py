"""The OCPP 2.0.1 device-model handler mixin on a stand-in client (real SQLite, real device model):
what each handler answers, the DeviceDataCtrlr limits as CALLERRORs, the NotifyReport frames a
base report sets off and NotifyEvent for changes; every payload strictly schema-valid."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hilsim.configuration import Configuration
from hilsim.device_model import Component, DeviceModel, build_catalogue, station_info
from hilsim.ocpp.routing import CallErrorReply, Reply
from hilsim.ocpp.validation import snake_case
from hilsim.ocpp201.client import Memory201
from hilsim.ocpp201.device_model_handlers import (
    DeviceModelHandlers,
    forward_changes,
)
from hilsim.ocpp201.device_model_setup import build_device_model
from hilsim.store import Store
from hilsim.stored_keys import load_configuration
from hilsim.tasks import TaskSet
from tests.conftest import CP_ID, make_settings
from tests.schemas201_dm import assert_valid

NOW = "2026-12-04T10:00:00.000Z"


class FixedWall:
    def iso(self) -> str:
        return NOW


@dataclass
class Host:
    device_model: DeviceModel
    wall: FixedWall = field(default_factory=FixedWall)


class StandIn(DeviceModelHandlers):
    """The part of ChargePointClient201 the mixin uses: ``charger`` and ``call``."""

    def __init__(self, host: Host) -> None:
        self.charger = host
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.memory = Memory201()
        self.after_configuration_change = None

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        assert_valid(f"{action}Request", payload)
        self.sent.append((action, payload))
        return {}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[StandIn]:
    store = await Store.open(tmp_path / "hilsim.db")
    keys = await load_configuration(store)
    catalogue = build_catalogue(station_info("CP-DM", "hilsim", "bench", [(1, 1, 7400.0)]))
    model = await DeviceModel.open(
        catalogue, Configuration(keys, store, TaskSet("t")), store.variables
    )
    yield StandIn(Host(model))
    model.close()
    await store.close()


async def _handle(
    client: StandIn, handler: Callable[..., Any], action: str, payload: dict[str, Any]
) -> Any:
    """As the router does: the request validated, its fields in snake_case, the answer too."""
    assert_valid(f"{action}Request", payload)
    raw = getattr(handler, "__ocpp_raw__", False)
    result = handler(payload) if raw else handler(**snake_case(payload))
    if isinstance(result, Awaitable):
        result = await result
    answer = result.payload if isinstance(result, Reply) else result
    assert_valid(f"{action}Response", answer)
    return answer if action in ("GetVariables", "SetVariables") else result


def _get(name: str, component: str = "OCPPCommCtrlr", **extra: Any) -> dict[str, Any]:
    return {"component": {"name": component}, "variable": {"name": name}, **extra}


async def test_get_and_set_variables(client: StandIn) -> None:
    answer = await _handle(client, client.on_set_variables, "SetVariables", {"setVariableData": [
        {**_get("HeartbeatInterval"), "attributeValue": "33"},
        {"component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
         "variable": {"name": "ConnectorType"}, "attributeValue": "sType3"},
    ]})  # fmt: skip
    assert [r["attributeStatus"] for r in answer["setVariableResult"]] == ["Accepted", "Rejected"]
    assert answer["setVariableResult"][1]["component"]["evse"] == {"id": 1, "connectorId": 1}
    answer = await _handle(client, client.on_get_variables, "GetVariables", {
        "getVariableData": [_get("HeartbeatInterval", attributeType="Actual")],
    })  # fmt: skip
    assert answer["getVariableResult"][0]["attributeValue"] == "33"
    assert answer["getVariableResult"][0]["attributeType"] == "Actual"


async def test_more_items_than_items_per_message_is_a_callerror(client: StandIn) -> None:
    many = [_get("HeartbeatInterval")] * 51
    with pytest.raises(CallErrorReply) as caught:
        await _handle(client, client.on_get_variables, "GetVariables", {"getVariableData": many})
    assert caught.value.code == "OccurrenceConstraintViolation"
    items = [{**_get("HeartbeatInterval"), "attributeValue": "9"}] * 51
    with pytest.raises(CallErrorReply) as caught:
        await _handle(client, client.on_set_variables, "SetVariables", {"setVariableData": items})
    assert caught.value.code == "OccurrenceConstraintViolation"
    assert client.charger.device_model.text("OCPPCommCtrlr", "HeartbeatInterval") != "9"


async def test_a_longer_message_than_bytes_per_message_is_a_callerror(client: StandIn) -> None:
    # customData may carry any vendor's fields (the official schema leaves it open): the one
    # way a request within ItemsPerMessage grows past BytesPerMessage.
    bulky = {"vendorId": "x", "blob": "y" * 70000}
    payload = {"getVariableData": [{**_get("HeartbeatInterval"), "customData": bulky}]}
    with pytest.raises(CallErrorReply) as caught:
        client.on_get_variables(payload)
    assert caught.value.code == "FormatViolation"


async def test_get_base_report_answers_then_sends_the_report(client: StandIn) -> None:
    reply = await _handle(client, client.on_get_base_report, "GetBaseReport",
                          {"requestId": 4, "reportBase": "FullInventory"})  # fmt: skip
    assert isinstance(reply, Reply) and reply.payload == {"status": "Accepted"}
    assert client.sent == []  # nothing before the answer is on the wire
    assert reply.then is not None
    await reply.then()  # type: ignore[misc]
    frames = [payload for action, payload in client.sent if action == "NotifyReport"]
    total = len(client.charger.device_model.catalogue)
    assert [f["seqNo"] for f in frames] == list(range(len(frames)))
    assert [len(f["reportData"]) for f in frames][:-1] == [50] * (len(frames) - 1)
    assert sum(len(f["reportData"]) for f in frames) == total
    assert [f.get("tbc", False) for f in frames] == [True] * (len(frames) - 1) + [False]
    assert {f["requestId"] for f in frames} == {4}


async def test_get_base_report_not_supported(client: StandIn) -> None:
    # The schema holds reportBase to the three bases; an unknown one is refused all the same.
    assert client.on_get_base_report(5, "Anything") == {"status": "NotSupported"}


async def test_get_report_by_component_and_criteria(client: StandIn) -> None:
    reply = await _handle(client, client.on_get_report, "GetReport", {
        "requestId": 6,
        "componentVariable": [{"component": {"name": "TxCtrlr"}},
                              {"component": {"name": "EVSE"}, "variable": {"name": "Power"}}],
    })  # fmt: skip
    assert isinstance(reply, Reply) and reply.then is not None
    await reply.then()  # type: ignore[misc]
    names = [(d["component"]["name"], d["variable"]["name"])
             for _, f in client.sent for d in f["reportData"]]  # fmt: skip
    assert ("TxCtrlr", "TxStartPoint") in names and ("EVSE", "Power") in names
    assert {component for component, _ in names} == {"TxCtrlr", "EVSE"}
    client.sent.clear()
    reply = await _handle(client, client.on_get_report, "GetReport",
                          {"requestId": 7, "componentCriteria": ["Enabled"]})  # fmt: skip
    assert isinstance(reply, Reply) and reply.then is not None
    await reply.then()  # type: ignore[misc]
    components = {d["component"]["name"] for _, f in client.sent for d in f["reportData"]}
    assert "AuthCtrlr" in components and "ChargingStation" not in components
    empty = await _handle(client, client.on_get_report, "GetReport", {
        "requestId": 8, "componentVariable": [{"component": {"name": "Nothing"}}],
    })  # fmt: skip
    assert empty == {"status": "EmptyResultSet"}


async def test_changes_not_made_by_set_variables_become_notify_event(client: StandIn) -> None:
    model = client.charger.device_model
    jobs: list[Callable[[Any], Awaitable[Any]]] = []
    stop = forward_changes(model, lambda job, name: jobs.append(job), lambda: NOW, lambda: True)
    await _handle(client, client.on_set_variables, "SetVariables", {
        "setVariableData": [{**_get("HeartbeatInterval"), "attributeValue": "61"}],
    })  # fmt: skip
    assert jobs == []  # the CSMS knows what it set
    await model.configuration.configure("HeartbeatInterval", "62")  # hilsim config set
    assert len(jobs) == 1
    await jobs[0](client)
    action, payload = client.sent[-1]
    assert action == "NotifyEvent"
    event = payload["eventData"][0]
    assert (event["actualValue"], event["trigger"]) == ("62", "Delta")
    assert event["variable"] == {"name": "HeartbeatInterval"}
    stop()
    await model.configuration.configure("HeartbeatInterval", "63")
    assert len(jobs) == 1
    # Offline: dropped, not queued.
    forward_changes(model, lambda job, name: jobs.append(job), lambda: NOW, lambda: False)
    await model.configuration.configure("HeartbeatInterval", "64")
    assert len(jobs) == 1


@dataclass
class FakeConnector:
    status: str = "Available"
    power_W: float = 0.0

    @property
    def ocpp_status(self) -> tuple[str, str]:
        return self.status, "NoError"

    def offered_power_W(self) -> float:
        return self.power_W


@dataclass
class FakeCharger:
    connectors: dict[int, FakeConnector]
    wall: FixedWall = field(default_factory=FixedWall)


async def test_the_built_model_reads_the_charger_live(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "ws://127.0.0.1:9/ocpp", connectors=2)
    store = await Store.open(tmp_path / "hilsim.db")
    keys = await load_configuration(store)
    charger = FakeCharger({1: FakeConnector(), 2: FakeConnector()})
    model = build_device_model(
        settings, Configuration(keys, store, TaskSet("t")), store.variables,
        await store.variables.load_variables(), charger,
        local_list=["a", "b"], profiles=lambda: 3,
    )  # fmt: skip
    heard: list[tuple[str, int | None, str | None]] = []
    model.subscribe(lambda c: heard.append((c.variable.component.name,
                                            c.variable.component.evse, c.value)))  # fmt: skip
    plug = Component("Connector", evse=1, connector=1)
    assert model.get(plug, "AvailabilityState").value == "Available"
    for status in ("Preparing", "Charging"):  # both Occupied: one change
        charger.connectors[1].status = status
        charger.connectors[1].power_W = 3680.0
        model.live_changed(plug, "AvailabilityState")
    assert heard == [("Connector", 1, "Occupied")]
    assert model.get(Component("EVSE", evse=1), "Power").value == "3680"
    assert model.get(Component("EVSE", evse=1), "Power", attribute="MaxSet").value == "11000"
    assert model.text("LocalAuthListCtrlr", "Entries") == "2"
    assert model.text("SmartChargingCtrlr", "Entries", "ChargingProfiles") == "3"
    assert model.text("ClockCtrlr", "DateTime") == NOW
    assert model.text("SecurityCtrlr", "Identity") == CP_ID
    for rt in charger.connectors.values():
        rt.status = "Unavailable"
    assert model.text("ChargingStation", "AvailabilityState") == "Unavailable"
    model.close()
    await store.close()


def test_no_mixin_of_the_client_hides_another_ones_name() -> None:
    """The handler mixins are bases of one class: a name two of them define (a method, a
    property) silently resolves to the first, and the other mixin's handlers break."""
    from hilsim.ocpp201.client import ChargePointClient201

    mixins = [base for base in ChargePointClient201.__bases__ if base.__name__.endswith(
        ("Handlers", "Handlers201"))]  # fmt: skip
    assert DeviceModelHandlers in mixins
    owners: dict[str, list[str]] = {}
    for mixin in mixins:
        for name in vars(mixin):
            if not (name.startswith("__") and name.endswith("__")):
                owners.setdefault(name, []).append(mixin.__name__)
    # Hooks a mixin defines for another one to override (placed before it): allowed once each.
    hooks = {"trigger_other": "ProvisioningHandlers", "transaction_ids": "SmartChargingHandlers201"}
    order = [base.__name__ for base in ChargePointClient201.__mro__]
    for name, owner in hooks.items():
        who = owners.pop(name, [])
        assert len(who) <= 2 and (len(who) < 2 or who[1] == owner), (name, who)
        assert all(order.index(w) <= order.index(owner) for w in who if w in order), (name, who)
    assert {name: who for name, who in owners.items() if len(who) > 1} == {}
