"""OCPP 2.0.1 meter values: every measurand hilsim can measure, from a real SDM630 (pymodbus's RTU
server on a pseudo-terminal pair) through a real 2.0.1 service to the scripted 2.0.1 CSMS, in
every TransactionEvent and MeterValues frame, each judged by the strict 2.0.1 schemas; and the
translation of what 1.6 can say and 2.0.1 cannot (`hilsim.ocpp201.tx_wire`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from scripted_csms201 import strict_violations
from test_meter_service import meter_settings, settled
from test_ocpp201_transactions import Csms201, ctl, running

from hilsim.config import Settings, parse_settings
from hilsim.keys.table import MEASURANDS
from hilsim.meter.simulator import MeterSimulator, VirtualCable
from hilsim.ocpp201.tx_wire import EndedSampling, meter_value_201, meter_values_201

from conftest import TAG, start_service, stop_service

EVERY = ",".join(MEASURANDS)
REGISTER = "Energy.Active.Import.Register"


@pytest.fixture
async def csms() -> AsyncIterator[Csms201]:
    async with Csms201() as central:
        yield central
        assert central.violations() == []


def settings_201(directory: Path, url: str, port: str) -> Settings:
    """test_meter_service's bench (an SDM630 on connector 1), speaking 2.0.1."""
    path = directory / "hilsim.toml"
    meter_settings(directory, url, port)
    text = path.read_text().replace("[charge_point]\n", '[charge_point]\nocpp_version = "2.0.1"\n')
    path.write_text(text)
    return parse_settings(text, str(path))


def variable(component: str, name: str, value: str) -> dict[str, Any]:
    return {"component": {"name": component}, "variable": {"name": name}, "attributeValue": value}


def measurands(payload: dict[str, Any], context: str | None = None) -> set[str]:
    return {
        v.get("measurand", REGISTER)
        for mv in payload.get("meterValue", [])
        for v in mv["sampledValue"]
        if context is None or v.get("context") == context
    }


def sampled(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [v for p in payloads for mv in p.get("meterValue", []) for v in mv["sampledValue"]]


async def test_every_measurand_in_every_frame_passes_the_strict_judge(
    csms: Csms201, short_dir: Path, cable: VirtualCable, sim: MeterSimulator
) -> None:
    """All of hilsim's measurands in TxStarted/TxUpdated/TxEnded and the aligned lists: Started
    carries TxStartedMeasurands (Transaction.Begin), Updated the periodic and clock-aligned
    samples, Ended the TxEndedMeasurands (Transaction.End); MeterValues outside a transaction
    and triggered ones carry the same values. Frequency, unit-less in 1.6, says Hz."""
    settings = settings_201(short_dir, csms.url, cable.charger_port)
    service, task = await start_service(settings)
    try:
        await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 2)
        answer = await csms.result("SetVariables", {"setVariableData": [
            variable("SampledDataCtrlr", "TxStartedMeasurands", EVERY),
            variable("SampledDataCtrlr", "TxUpdatedMeasurands", EVERY),
            variable("SampledDataCtrlr", "TxEndedMeasurands", EVERY),
            variable("SampledDataCtrlr", "TxUpdatedInterval", "1"),
            variable("AlignedDataCtrlr", "Measurands", EVERY),
            variable("AlignedDataCtrlr", "TxEndedMeasurands", EVERY),
            variable("AlignedDataCtrlr", "Interval", "1"),
            variable("SampledDataCtrlr", "TxEndedInterval", "1"),
            variable("AlignedDataCtrlr", "TxEndedInterval", "1"),
        ]})  # fmt: skip
        assert {r["attributeStatus"] for r in answer["setVariableResult"]} == {"Accepted"}
        sim.load(11_040.0)
        await settled(sim)  # Voltage and Frequency exist once the meter has answered

        mark = csms.mark()
        assert await csms.result(
            "TriggerMessage", {"requestedMessage": "MeterValues", "evse": {"id": 1}}
        ) == {"status": "Accepted"}  # fmt: skip
        (idle,) = await csms.wait_for("MeterValues", lambda p: p["evseId"] == 1, since=mark)
        # Outside a transaction there is no EV to have a SoC.
        assert measurands(idle) == set(MEASURANDS) - {"SoC"}

        await ctl(settings, "plug", 1)
        await ctl(settings, "tag", 1, id_tag=TAG)
        (started,) = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Started")
        assert measurands(started, "Transaction.Begin") == set(MEASURANDS)
        first = started["meterValue"][0]["sampledValue"][0]
        assert (first["measurand"], "phase" in first) == (REGISTER, False)  # meterStart leads
        every = lambda p: measurands(p) == set(MEASURANDS)  # noqa: E731
        await csms.wait_for(
            "TransactionEvent", lambda p: p["triggerReason"] == "MeterValuePeriodic" and every(p)
        )  # fmt: skip
        await csms.wait_for(
            "TransactionEvent", lambda p: p["triggerReason"] == "MeterValueClock" and every(p)
        )  # fmt: skip
        mark = csms.mark()
        assert await csms.result(
            "TriggerMessage", {"requestedMessage": "MeterValues", "evse": {"id": 1}}
        ) == {"status": "Accepted"}  # fmt: skip
        (triggered,) = await csms.wait_for("MeterValues", lambda p: p["evseId"] == 1, since=mark)
        assert measurands(triggered, "Trigger") == set(MEASURANDS)

        await ctl(settings, "tag", 1, id_tag=TAG)  # the same card again: stop
        (ended,) = await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Ended")
        # The machine's transaction is over when Transaction.End is read: no EV, no SoC (as in
        # 1.6's StopTransaction transactionData).
        assert measurands(ended, "Transaction.End") == set(MEASURANDS) - {"SoC"}
        assert {"Transaction.Begin", "Sample.Periodic", "Sample.Clock"} <= {
            v["context"] for v in sampled([ended])
        }  # what TxEndedMeasurands kept of the transaction  # fmt: skip
    finally:
        await stop_service(service, task)
    events, values = csms.calls("TransactionEvent"), csms.calls("MeterValues")
    assert len(events) >= 4 and len(values) >= 2
    frequencies = [v for v in sampled(events + values) if v.get("measurand") == "Frequency"]
    assert frequencies and all(v["unitOfMeasure"] == {"unit": "Hz"} for v in frequencies)
    assert all(v["value"] == pytest.approx(50.0) for v in frequencies)
    assert csms.violations() == []


# -- what 1.6 can say and 2.0.1 cannot ------------------------------------------------------------


def value_16(measurand: str | None, value: str = "21.5", unit: str | None = None) -> dict[str, Any]:
    sv: dict[str, Any] = {"value": value, "context": "Sample.Periodic", "location": "Body"}
    if measurand is not None:
        sv["measurand"] = measurand
    if unit is not None:
        sv["unit"] = unit
    return sv


def test_1_6_only_measurands_and_spellings_are_translated_or_left_out() -> None:
    stamp = "2026-01-01T00:00:00Z"
    value = {"timestamp": stamp, "sampledValue": [
        value_16("Temperature", unit="Celcius"),
        value_16("RPM", "1200"),
        value_16("Power.Factor", "0.98"),
        value_16("Voltage", "nan", "V"),
        value_16("Frequency", "49.98"),
        value_16(None, "1234", "Wh"),
        {**value_16("Current.Import", "6.5", "A"), "format": "Raw", "phase": "L1"},
    ]}  # fmt: skip
    out = meter_value_201(value)
    assert out["sampledValue"] == [
        {"value": 0.98, "context": "Sample.Periodic", "measurand": "Power.Factor",
         "location": "Body"},
        {"value": 49.98, "context": "Sample.Periodic", "measurand": "Frequency",
         "location": "Body", "unitOfMeasure": {"unit": "Hz"}},
        {"value": 1234.0, "context": "Sample.Periodic", "location": "Body",
         "unitOfMeasure": {"unit": "Wh"}},
        {"value": 6.5, "context": "Sample.Periodic", "measurand": "Current.Import",
         "phase": "L1", "location": "Body", "unitOfMeasure": {"unit": "A"}},
    ]  # fmt: skip
    assert strict_violations("MeterValues", {"evseId": 1, "meterValue": [out]},
                             response=False) == []  # fmt: skip
    # A 2.0.1 measurand in 1.6's misspelt unit keeps its value, in 2.0.1's spelling.
    body = meter_value_201({"timestamp": stamp, "sampledValue": [
        value_16("Power.Factor", "0.9", "Celcius")]})  # fmt: skip
    assert body["sampledValue"][0]["unitOfMeasure"] == {"unit": "Celsius"}
    # Nothing 2.0.1 can say: no MeterValue at all (each needs one sampledValue).
    only_16 = {"timestamp": stamp, "sampledValue": [value_16("Temperature"), value_16("RPM")]}
    assert meter_values_201([only_16, value]) == [out]
    assert meter_values_201([only_16]) == []


async def test_send_during_idle_keeps_clock_aligned_values_out_of_transactions(
    csms: Csms201, short_dir: Path
) -> None:
    """AlignedDataCtrlr.SendDuringIdle (J01.FR.20): clock-aligned MeterValues while idle, none
    (MeterValues or Updated MeterValueClock) while a transaction runs; turned off, they come."""
    async for _service, settings in running(csms, short_dir):
        answer = await csms.result("SetVariables", {"setVariableData": [
            variable("AlignedDataCtrlr", "SendDuringIdle", "true"),
            variable("AlignedDataCtrlr", "Interval", "1"),
            variable("SampledDataCtrlr", "TxUpdatedInterval", "1"),
        ]})  # fmt: skip
        assert {r["attributeStatus"] for r in answer["setVariableResult"]} == {"Accepted"}
        clock = lambda p: measurands(p, "Sample.Clock") != set()  # noqa: E731
        await csms.wait_for("MeterValues", clock)  # idle: sent
        await ctl(settings, "plug", 1)
        await ctl(settings, "tag", 1, id_tag=TAG)
        await csms.wait_for("TransactionEvent", lambda p: p["eventType"] == "Started")
        mark = csms.mark()
        # Three periodic samples a second apart: at least two clock ticks went by meanwhile.
        await csms.wait_for(
            "TransactionEvent", lambda p: p["triggerReason"] == "MeterValuePeriodic",
            since=mark, count=3,
        )  # fmt: skip
        assert [p for p in csms.calls("MeterValues", mark) if clock(p)] == []
        assert [p for p in csms.calls("TransactionEvent", mark) if clock(p)] == []
        answer = await csms.result("SetVariables", {"setVariableData": [
            variable("AlignedDataCtrlr", "SendDuringIdle", "false")]})  # fmt: skip
        assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"
        await csms.wait_for(
            "TransactionEvent", lambda p: p["triggerReason"] == "MeterValueClock", since=mark
        )


def test_an_ended_keeps_one_sample_per_tx_ended_interval() -> None:
    intervals: dict[str, int | None] = {"SampledDataCtrlr": 2, "AlignedDataCtrlr": 0}
    sampling = EndedSampling(intervals.get)

    def kept(local_id: int, second: int, context: str = "Sample.Periodic") -> bool:
        value = {"timestamp": "", "sampledValue": [value_16(REGISTER, unit="Wh") | {
            "context": context}]}  # fmt: skip
        return sampling.keep(1, local_id, value, f"2026-01-01T00:00:{second:02d}.000Z")

    # Samples a second apart, one kept every 2 s: the first, then each 2 s on.
    assert [kept(7, s) for s in range(6)] == [True, False, True, False, True, False]
    assert kept(7, 6) is True and kept(7, 7) is False
    assert kept(8, 8) is True  # a new transaction: its first sample
    assert not any(kept(8, s, "Sample.Clock") for s in range(9, 12))  # AlignedDataCtrlr: 0
    intervals["AlignedDataCtrlr"] = None  # no device model to say: every sample, as in 1.6
    assert all(kept(8, s, "Sample.Clock") for s in range(12, 15))


async def session(csms: Csms201, settings: Settings, tx_ended_interval: str) -> dict[str, Any]:
    """One transaction of three periodic samples a second apart; its Ended."""
    answer = await csms.result("SetVariables", {"setVariableData": [
        variable("SampledDataCtrlr", "TxEndedMeasurands", REGISTER),
        variable("SampledDataCtrlr", "TxUpdatedInterval", "1"),
        variable("SampledDataCtrlr", "TxEndedInterval", tx_ended_interval),
    ]})  # fmt: skip
    assert {r["attributeStatus"] for r in answer["setVariableResult"]} == {"Accepted"}
    mark = csms.mark()
    await ctl(settings, "plug", 1)
    await ctl(settings, "tag", 1, id_tag=TAG)
    await csms.wait_for(
        "TransactionEvent", lambda p: p["triggerReason"] == "MeterValuePeriodic",
        since=mark, count=3,
    )  # fmt: skip
    await ctl(settings, "tag", 1, id_tag=TAG)
    (ended,) = await csms.wait_for(
        "TransactionEvent", lambda p: p["eventType"] == "Ended", since=mark
    )
    await ctl(settings, "unplug", 1)
    await csms.wait_for("StatusNotification", lambda p: p["evseId"] == 1
                        and p["connectorStatus"] == "Available", since=mark)  # fmt: skip
    return ended


async def test_tx_ended_interval_decides_what_the_ended_says_between_begin_and_end(
    csms: Csms201, short_dir: Path
) -> None:
    """SampledDataCtrlr.TxEndedInterval 0 (the default): Transaction.Begin and .End only; 1 s:
    every periodic sample between them too."""
    async for _service, settings in running(csms, short_dir):
        contexts = [v["context"] for v in sampled([await session(csms, settings, "0")])]
        assert contexts == ["Transaction.Begin", "Transaction.End"]
        contexts = [v["context"] for v in sampled([await session(csms, settings, "1")])]
        assert contexts[0] == "Transaction.Begin" and contexts[-1] == "Transaction.End"
        assert contexts.count("Sample.Periodic") >= 3
