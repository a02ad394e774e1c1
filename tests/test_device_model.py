"""The OCPP 2.0.1 device model as a service, on real SQLite: values, validation and every status,
persistence across a reopen, variables that are 1.6 keys, reports and their schema validity."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hilsim.configuration import Configuration
from hilsim.device_model import (
    Component,
    DeviceModel,
    VariableChange,
    build_catalogue,
    chunks,
    event_data,
    get_variables,
    set_variables,
    station_info,
)
from hilsim.keys import ConfigurationKeys
from hilsim.store import Store, VariableAddress
from hilsim.stored_keys import load_configuration
from hilsim.tasks import TaskSet
from tests.schemas201_dm import assert_valid

STATION = station_info("CP-DM", "hilsim", "bench", [(1, 3, 11000.0), (2, 1, 7400.0)])
CATALOGUE = build_catalogue(STATION)
CS = Component("ChargingStation")


@dataclass
class Bench:
    path: Path
    store: Store
    keys: ConfigurationKeys
    configuration: Configuration
    model: DeviceModel
    states: dict[tuple[int | None, int | None], str]


async def _open(path: Path, states: dict[tuple[int | None, int | None], str]) -> Bench:
    store = await Store.open(path)
    keys = await load_configuration(store)
    configuration = Configuration(keys, store, TaskSet("test"))

    def availability(component: Component) -> str | None:
        return states.get((component.evse, component.connector))

    model = await DeviceModel.open(
        CATALOGUE,
        configuration,
        store.variables,
        live={
            "availability_state": availability,
            "date_time": lambda _: "2026-12-04T10:00:00Z",
        },
    )
    return Bench(path, store, keys, configuration, model, states)


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    opened = await _open(tmp_path / "hilsim.db", {})
    yield opened
    opened.model.close()
    await opened.store.close()


async def _reopen(bench: Bench) -> Bench:
    bench.model.close()
    await bench.store.close()
    return await _open(bench.path, bench.states)


def comm() -> Component:
    return Component("OCPPCommCtrlr")


# -- reading -------------------------------------------------------------------------------------


async def test_a_variable_that_is_a_1_6_key_reads_the_key(bench: Bench) -> None:
    bench.keys.change("HeartbeatInterval", "77")
    outcome = bench.model.get(comm(), "HeartbeatInterval")
    assert (outcome.status, outcome.value) == ("Accepted", "77")
    # Names are case-insensitive; the instance is part of the address.
    assert bench.model.get(Component("ocppcommctrlr"), "heartbeatinterval").value == "77"
    bench.keys.change("TransactionMessageAttempts", "5")
    assert bench.model.get(comm(), "MessageAttempts", "TransactionEvent").value == "5"
    assert bench.model.get(comm(), "MessageAttempts").status == "UnknownVariable"


async def test_rate_unit_and_booleans_in_2_0_1_form(bench: Bench) -> None:
    rate = bench.model.get(Component("SmartChargingCtrlr"), "RateUnit")
    assert rate.value == "A,W"
    assert bench.model.get(Component("AuthCtrlr"), "Enabled").value == "true"
    data = bench.model.report_data(bench.model.variable("SmartChargingCtrlr", "RateUnit"))
    assert data["variableCharacteristics"]["valuesList"] == "A,W"


async def test_live_values_come_from_the_given_sources(bench: Bench) -> None:
    bench.states[(1, 1)] = "Occupied"
    plug = Component("Connector", evse=1, connector=1)
    assert bench.model.get(plug, "AvailabilityState").value == "Occupied"
    # No value from the source: the default.
    assert bench.model.get(Component("EVSE", evse=2), "AvailabilityState").value == "Available"
    assert bench.model.get(Component("ClockCtrlr"), "DateTime").value == "2026-12-04T10:00:00Z"
    power = bench.model.get(Component("EVSE", evse=1), "Power", attribute="MaxSet")
    assert (power.status, power.value) == ("Accepted", "11000")


async def test_get_statuses(bench: Bench) -> None:
    model = bench.model
    assert model.get(Component("NoSuchCtrlr"), "Enabled").status == "UnknownComponent"
    assert model.get(Component("EVSE", evse=9), "Power").status == "UnknownComponent"
    assert model.get(comm(), "NoSuchVariable").status == "UnknownVariable"
    assert model.get(comm(), "HeartbeatInterval", attribute="Target").status == (
        "NotSupportedAttributeType"
    )
    secret = model.get(Component("SecurityCtrlr"), "BasicAuthPassword")
    assert secret.status == "Rejected" and secret.value is None


# -- writing -------------------------------------------------------------------------------------


async def test_set_a_1_6_key_goes_through_the_configuration(bench: Bench) -> None:
    outcome = await bench.model.set(Component("SampledDataCtrlr"), "TxUpdatedInterval", "15")
    assert outcome.status == "Accepted"
    assert bench.keys.get("MeterValueSampleInterval") == 15
    measurands = "Energy.Active.Import.Register,Power.Active.Import"
    assert (await bench.model.set(Component("AlignedDataCtrlr"), "Measurands", measurands)
            ).status == "Accepted"  # fmt: skip
    reopened = await _reopen(bench)
    assert reopened.keys.get("MeterValueSampleInterval") == 15
    assert reopened.keys.get("MeterValuesAlignedData") == measurands
    assert "MeterValueSampleInterval" in await reopened.store.changed_keys()
    assert await reopened.store.variables.load_variables() == {}  # never stored twice
    reopened.model.close()
    await reopened.store.close()


async def test_set_variables_survives_a_reopen(bench: Bench) -> None:
    tx = Component("TxCtrlr")
    assert bench.model.get(tx, "TxStartPoint").value == "PowerPathClosed"
    assert bench.model.get(tx, "TxStopPoint").value == "EVConnected,Authorized"
    assert (await bench.model.set(tx, "TxStartPoint", "EVConnected, Authorized")).status == (
        "Accepted"
    )
    assert (await bench.model.set(comm(), "OfflineThreshold", "120")).status == "Accepted"
    reopened = await _reopen(bench)
    assert reopened.model.text("TxCtrlr", "TxStartPoint") == "EVConnected,Authorized"
    assert reopened.model.text("OCPPCommCtrlr", "OfflineThreshold") == "120"
    stored = await reopened.store.variables.load_variables()
    assert stored[VariableAddress("TxCtrlr", variable="TxStartPoint")] == "EVConnected,Authorized"
    reopened.model.close()
    await reopened.store.close()


async def test_a_bad_stored_value_falls_back_to_the_default(bench: Bench) -> None:
    await bench.store.variables.save_variable(
        VariableAddress("TxCtrlr", variable="TxStartPoint"), "Teleported"
    )
    reopened = await _reopen(bench)
    assert reopened.model.text("TxCtrlr", "TxStartPoint") == "PowerPathClosed"
    reopened.model.close()
    await reopened.store.close()


@pytest.mark.parametrize(
    ("component", "variable", "value", "reason"),
    [
        (Component("OCPPCommCtrlr"), "HeartbeatInterval", "soon", "InvalidValue"),
        (Component("OCPPCommCtrlr"), "HeartbeatInterval", "0", "ValueTooLow"),
        (Component("OCPPCommCtrlr"), "OfflineThreshold", "99999999", "ValueTooHigh"),
        (Component("AuthCtrlr"), "Enabled", "yes", "InvalidValue"),
        (Component("TxCtrlr"), "TxStartPoint", "ParkingBayOccupancy", "InvalidValue"),
        (Component("TxCtrlr"), "TxStopPoint", "", "InvalidValue"),
        (Component("TxCtrlr"), "TxStopPoint", "EVConnected,EVConnected", "InvalidValue"),
        (Component("SampledDataCtrlr"), "TxUpdatedMeasurands", "Temperature", "InvalidValue"),
        (Component("SmartChargingCtrlr"), "LimitChangeSignificance", "2", "ValueTooHigh"),
        (Component("ChargingStation"), "Model", "other", "ReadOnly"),
        (Component("SmartChargingCtrlr"), "ProfileStackLevel", "3", "ReadOnly"),
        (Component("ClockCtrlr"), "DateTime", "2026-12-04T10:00:00Z", "ReadOnly"),
    ],
)
async def test_set_rejects_with_a_reason(
    bench: Bench, component: Component, variable: str, value: str, reason: str
) -> None:
    before = bench.model.get(component, variable).value
    outcome = await bench.model.set(component, variable, value)
    assert (outcome.status, outcome.reason) == ("Rejected", reason)
    assert bench.model.get(component, variable).value == before


async def test_set_statuses_for_unknown_addresses(bench: Bench) -> None:
    model = bench.model
    assert (await model.set(Component("Nope"), "Enabled", "true")).status == "UnknownComponent"
    assert (await model.set(comm(), "Nope", "1")).status == "UnknownVariable"
    assert (await model.set(comm(), "HeartbeatInterval", "5", attribute="MinSet")).status == (
        "NotSupportedAttributeType"
    )
    evse = Component("EVSE", evse=1)
    assert (await model.set(evse, "Power", "5000", attribute="MaxSet")).status == "Rejected"


async def test_security_profile_keeps_the_1_6_guards(bench: Bench) -> None:
    guard_seen: list[object] = []

    def only_up(value: object) -> str | None:
        guard_seen.append(value)
        return "going down is not allowed" if int(str(value)) < 1 else None

    bench.keys.guard("SecurityProfile", only_up)
    sec = Component("SecurityCtrlr")
    assert (await bench.model.set(sec, "SecurityProfile", "1")).status == "Accepted"
    refused = await bench.model.set(sec, "SecurityProfile", "0")
    assert refused.status == "Rejected" and "going down" in refused.info
    assert bench.keys.get("SecurityProfile") == 1
    assert guard_seen == [1, 0]


async def test_basic_auth_password_is_the_authorization_key(bench: Bench) -> None:
    kept: list[object] = []

    async def keep(value: object) -> None:
        kept.append(value)

    bench.keys.keep_with("AuthorizationKey", keep)
    sec = Component("SecurityCtrlr")
    password = "correct-horse-battery"
    assert (await bench.model.set(sec, "BasicAuthPassword", password)).status == "Accepted"
    assert kept == [password.encode().hex()]
    assert bench.keys.get("AuthorizationKey") == password.encode().hex()
    short = await bench.model.set(sec, "BasicAuthPassword", "short")
    assert short.status == "Rejected" and "short" not in short.info
    # Never read back, never reported with a value.
    assert bench.model.get(sec, "BasicAuthPassword").value is None
    data = bench.model.report_data(bench.model.variable("SecurityCtrlr", "BasicAuthPassword"))
    assert "value" not in data["variableAttribute"][0]
    assert data["variableAttribute"][0]["mutability"] == "WriteOnly"


# -- changes -------------------------------------------------------------------------------------


async def test_changes_tell_whether_the_csms_made_them(bench: Bench) -> None:
    heard: list[VariableChange] = []
    bench.model.subscribe(heard.append)
    await bench.model.set(comm(), "HeartbeatInterval", "45")
    await bench.configuration.configure("HeartbeatInterval", "50")  # `hilsim config set`
    await bench.model.set(Component("TxCtrlr"), "TxStopPoint", "EVConnected")
    await bench.model.set(comm(), "OfflineThreshold", "30", by_csms=False)
    bench.states[(1, 1)] = "Faulted"
    bench.model.live_changed(Component("Connector", evse=1, connector=1), "AvailabilityState")
    seen = [(c.variable.name, c.value, c.by_csms) for c in heard]
    assert seen == [
        ("HeartbeatInterval", "45", True),
        ("HeartbeatInterval", "50", False),
        ("TxStopPoint", "EVConnected", True),
        ("OfflineThreshold", "30", False),
        ("AvailabilityState", "Faulted", False),
    ]
    event = event_data(heard[1].variable, "50", 1, "2026-12-04T10:00:00Z")
    assert_valid("NotifyEventRequest", {
        "generatedAt": "2026-12-04T10:00:00Z", "seqNo": 0, "eventData": [event],
    })  # fmt: skip


# -- reports -------------------------------------------------------------------------------------


def _notify_reports(data: list[dict[str, Any]], per_message: int) -> list[dict[str, Any]]:
    pieces = chunks(data, per_message)
    return [
        {"requestId": 7, "generatedAt": "2026-12-04T10:00:00Z", "seqNo": n,
         "tbc": n < len(pieces) - 1, "reportData": piece}
        for n, piece in enumerate(pieces)
    ]  # fmt: skip


async def test_full_inventory_is_schema_valid_and_chunked(bench: Bench) -> None:
    full = bench.model.report("FullInventory")
    assert full is not None and len(full) == len(CATALOGUE)
    frames = _notify_reports(full, 20)
    assert [len(f["reportData"]) for f in frames][:-1] == [20] * (len(frames) - 1)
    assert sum(len(f["reportData"]) for f in frames) == len(full)
    assert [f["tbc"] for f in frames] == [True] * (len(frames) - 1) + [False]
    for frame in frames:
        assert_valid("NotifyReportRequest", frame)
    names = {(d["component"]["name"], d["variable"]["name"]) for d in full}
    for needed in [("OCPPCommCtrlr", "HeartbeatInterval"), ("TxCtrlr", "TxStartPoint"),
                   ("SecurityCtrlr", "BasicAuthPassword"), ("SmartChargingCtrlr", "RateUnit"),
                   ("LocalAuthListCtrlr", "Entries"), ("ClockCtrlr", "DateTime")]:  # fmt: skip
        assert needed in names
    power = next(d for d in full if d["variable"]["name"] == "Power")
    assert [a["type"] for a in power["variableAttribute"]] == ["Actual", "MaxSet"]


async def test_configuration_and_summary_inventories(bench: Bench) -> None:
    configuration = bench.model.report("ConfigurationInventory")
    summary = bench.model.report("SummaryInventory")
    assert configuration and summary
    assert all(
        d["variableAttribute"][0]["mutability"] in ("ReadWrite", "WriteOnly") for d in configuration
    )
    assert {d["variable"]["name"] for d in summary} == {"AvailabilityState", "Available"}
    for report in (configuration, summary):
        for frame in _notify_reports(report, 50):
            assert_valid("NotifyReportRequest", frame)
    assert bench.model.report("EverythingPlease") is None


async def test_wire_forms_of_get_and_set_variables(bench: Bench) -> None:
    get_request = {"getVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
        {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "Power"},
         "attributeType": "MaxSet"},
        {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}},
        {"component": {"name": "Nope"}, "variable": {"name": "X"}},
    ]}  # fmt: skip
    assert_valid("GetVariablesRequest", get_request)
    results = get_variables(bench.model, get_request["getVariableData"])
    assert_valid("GetVariablesResponse", {"getVariableResult": results})
    assert [r["attributeStatus"] for r in results] == [
        "Accepted", "Accepted", "Rejected", "UnknownComponent",
    ]  # fmt: skip
    assert results[1]["attributeValue"] == "11000" and results[1]["attributeType"] == "MaxSet"

    set_request = {"setVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"},
         "attributeValue": "90"},
        {"component": {"name": "TxCtrlr"}, "variable": {"name": "TxStartPoint"},
         "attributeValue": "Sideways"},
        {"component": {"name": "OCPPCommCtrlr"},
         "variable": {"name": "MessageAttempts", "instance": "TransactionEvent"},
         "attributeValue": "4"},
    ]}  # fmt: skip
    assert_valid("SetVariablesRequest", set_request)
    answers = await set_variables(bench.model, set_request["setVariableData"])
    assert_valid("SetVariablesResponse", {"setVariableResult": answers})
    assert [a["attributeStatus"] for a in answers] == ["Accepted", "Rejected", "Accepted"]
    assert answers[1]["attributeStatusInfo"]["reasonCode"] == "InvalidValue"
    assert bench.keys.get("HeartbeatInterval") == 90
    assert bench.keys.get("TransactionMessageAttempts") == 4


def test_the_readme_names_variables_that_exist() -> None:
    text = (Path(__file__).parent.parent / "README.md").read_text()
    section = text.split("### The variables that matter on a bench", 1)[1].split("\n## ", 1)[0]
    known = {(v.component.name, v.name) for v in CATALOGUE}
    named = 0
    for row in section.splitlines():
        if not row.startswith("| ") or row.startswith("| Variable") or row.startswith("|---"):
            continue
        first = row.split("|")[1].split("(")[0]
        component, _, names = first.strip().partition(".")
        for part in names.replace("/", ",").split(","):
            name = part.strip()
            if "." in name:  # another component's: "AuthCacheCtrlr.Enabled"
                component, _, name = name.partition(".")
            assert (component, name) in known, (component, name)
            named += 1
    assert named >= 10
