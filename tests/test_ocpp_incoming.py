"""One test (at least) per row of the spec's incoming-message table, and the bad-frame cases."""

from __future__ import annotations

import json

import pytest

from hilsim.keys import SPECS

from conftest import TAG, Bench, make_settings, start_service, stop_service


async def test_authorize_from_csms_is_always_accepted(bench: Bench) -> None:
    reply = await bench.session.call_raw(json.dumps([2, "a1", "Authorize", {"idTag": "ANY"}]))
    assert reply == [3, "a1", {"idTagInfo": {"status": "Accepted"}}]


async def test_get_configuration_without_keys_returns_every_key(bench: Bench) -> None:
    config = await bench.session.get_configuration()
    keys = {entry["key"]: entry for entry in config["configurationKey"]}
    assert set(keys) == {spec.name for spec in SPECS}
    assert keys["MeterValueSampleInterval"]["value"] == "30"
    assert keys["HeartbeatInterval"]["readonly"] is False
    assert keys["OCPPAuthorizationEnabled"]["value"] == "true"
    assert keys["voltage_V"]["value"] == "230.0"
    assert not config.get("unknownKey")


async def test_get_configuration_reports_unknown_keys(bench: Bench) -> None:
    config = await bench.session.get_configuration(
        ["ConnectionTimeOut", "NoSuchKey", "MeterValuesSampleInterval"]
    )
    assert [e["key"] for e in config["configurationKey"]] == [
        "ConnectionTimeOut",
        "MeterValueSampleInterval",
    ]
    assert config["unknownKey"] == ["NoSuchKey"]


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("HeartbeatInterval", "60", "Accepted"),
        ("HeartbeatInterval", "sixty", "Rejected"),
        ("HeartbeatInterval", "0", "Rejected"),
        ("ConnectionTimeOut", "90", "Accepted"),
        ("ConnectionTimeOut", "1.5", "Rejected"),
        ("ConnectionTimeOut", "999999", "Rejected"),
        ("MeterValueSampleInterval", "10", "Accepted"),
        ("MeterValuesSampleInterval", "15", "Accepted"),
        ("MeterValueSampleInterval", "-1", "Rejected"),
        ("MeterValueSampleInterval", "true", "Rejected"),
        ("ClockAlignedDataInterval", "900", "Accepted"),
        ("ClockAlignedDataInterval", "x", "Rejected"),
        ("ClockAlignedDataInterval", "-5", "Rejected"),
        ("AuthorizeRemoteTxRequests", "true", "Accepted"),
        ("AuthorizeRemoteTxRequests", "1", "Rejected"),
        ("LocalAuthListEnabled", "false", "Accepted"),
        ("LocalAuthListEnabled", "yes", "Rejected"),
        ("OCPPAuthorizationEnabled", "FALSE", "Accepted"),
        ("OCPPAuthorizationEnabled", "2", "Rejected"),
        ("voltage_V", "120.5", "Accepted"),
        ("voltage_V", "volts", "Rejected"),
        ("voltage_V", "0", "Rejected"),
        ("NoSuchKey", "1", "NotSupported"),
    ],
)
async def test_change_configuration(bench: Bench, key: str, value: str, expected: str) -> None:
    assert await bench.session.change_configuration(key, value) == expected
    if expected == "Accepted":
        config = await bench.session.get_configuration([key])
        stored = config["configurationKey"][0]["value"]
        assert stored.lower() == value.lower() or float(stored) == float(value)


async def test_changed_keys_survive_a_restart(csms, short_dir) -> None:
    settings = make_settings(short_dir, csms.url)
    service, task = await start_service(settings)
    session = await csms.wait_for_charge_point(timeout=5)
    assert await session.change_configuration("MeterValueSampleInterval", "7") == "Accepted"
    assert await session.change_configuration("OCPPAuthorizationEnabled", "false") == "Accepted"
    await stop_service(service, task)

    service, task = await start_service(settings)
    try:
        session = await csms.wait_for_charge_point(timeout=5)
        await session.wait_for("BootNotification")
        config = await session.get_configuration(
            ["MeterValueSampleInterval", "OCPPAuthorizationEnabled", "HeartbeatInterval"]
        )
        values = {e["key"]: e["value"] for e in config["configurationKey"]}
        assert values == {
            "MeterValueSampleInterval": "7",
            "OCPPAuthorizationEnabled": "false",
            "HeartbeatInterval": "120",
        }
    finally:
        await stop_service(service, task)


async def test_voltage_change_applies_to_current(bench: Bench) -> None:
    assert await bench.session.change_configuration("voltage_V", "110") == "Accepted"
    await bench.session.change_configuration("MeterValueSampleInterval", "1")
    await bench.start_local(1)
    sample = await bench.session.wait_for("MeterValues")
    values = {v["measurand"]: float(v["value"]) for v in sample["meterValue"][0]["sampledValue"]}
    assert values["Current.Import"] == pytest.approx(values["Power.Active.Import"] / 110, abs=0.1)


@pytest.mark.parametrize(("limit", "unit", "power"), [(5000, "W", 5000.0), (16, "A", 3680.0)])
async def test_set_charging_profile_limits_power(
    bench: Bench, limit: float, unit: str, power: float
) -> None:
    await bench.session.change_configuration("MeterValueSampleInterval", "1")
    tx = await bench.start_local(1)
    status = await bench.session.set_charging_profile(
        1, limit, unit, purpose="TxProfile", transaction_id=tx
    )
    assert status == "Accepted"
    sample = await bench.session.wait_for(
        "MeterValues",
        lambda p: any(
            v["measurand"] == "Power.Active.Import" and float(v["value"]) == power
            for v in p["meterValue"][0]["sampledValue"]
        ),
    )
    values = {v["measurand"]: float(v["value"]) for v in sample["meterValue"][0]["sampledValue"]}
    assert values["Current.Import"] == pytest.approx(power / 230.0, abs=0.1)
    status_map = bench.service.charger.snapshot()["connectors"][0]
    assert status_map["limit_W"] == power


async def test_set_charging_profile_rejections(bench: Bench) -> None:
    assert await bench.session.set_charging_profile(9, 1000) == "Rejected"  # no connector 9
    # A TxProfile needs a running transaction.
    assert await bench.session.set_charging_profile(1, 1000, purpose="TxProfile") == "Rejected"
    # A default profile on connector 0 applies to every connector.
    assert await bench.session.set_charging_profile(0, 2000) == "Accepted"
    assert [c["limit_W"] for c in bench.service.charger.snapshot()["connectors"]] == [2000, 2000]


async def test_zero_limit_suspends_and_resumes(bench: Bench) -> None:
    tx = await bench.start_local(1)
    await bench.session.set_charging_profile(1, 0, purpose="TxProfile", transaction_id=tx)
    await bench.status(1, "SuspendedEVSE")
    await bench.session.set_charging_profile(1, 3000, purpose="TxProfile", transaction_id=tx)
    await bench.status(1, "Charging")


async def test_remote_start_on_the_given_connector(bench: Bench) -> None:
    await bench.ctl("plug", 2)
    assert await bench.session.remote_start(TAG, connector_id=2) == "Accepted"
    start = await bench.session.wait_for("StartTransaction")
    assert start["connectorId"] == 2
    await bench.status(2, "Charging")
    # The CALLRESULT left before the StartTransaction it caused.
    frames = [m.action for m in bench.session.received]
    assert frames.index("StartTransaction") > frames.index("StatusNotification")


async def test_remote_start_without_connector_takes_the_first_available(bench: Bench) -> None:
    assert await bench.session.remote_start(TAG) == "Accepted"
    await bench.status(1, "Preparing")  # waiting for the EV on connector 1
    await bench.ctl("plug", 1)
    start = await bench.session.wait_for("StartTransaction")
    assert start["connectorId"] == 1


async def test_remote_start_prefers_the_connector_with_an_ev(bench: Bench) -> None:
    await bench.ctl("plug", 2)
    assert await bench.session.remote_start(TAG) == "Accepted"
    start = await bench.session.wait_for("StartTransaction")
    assert start["connectorId"] == 2


async def test_remote_start_rejections(bench: Bench) -> None:
    assert await bench.session.remote_start(TAG, connector_id=7) == "Rejected"
    await bench.ctl("fault", 1)
    assert await bench.session.remote_start(TAG, connector_id=1) == "Rejected"
    await bench.start_local(2)
    # connector 1 faulted, connector 2 busy: nothing can take it
    assert await bench.session.remote_start(TAG) == "Rejected"


async def test_remote_stop(bench: Bench) -> None:
    tx = await bench.start_local(1)
    assert await bench.session.remote_stop(tx + 100) == "Rejected"
    assert await bench.session.remote_stop(tx) == "Accepted"
    stop = await bench.session.wait_for("StopTransaction")
    assert stop["transactionId"] == tx and stop["reason"] == "Remote"
    await bench.status(1, "Finishing")


async def test_remote_start_with_authorize_remote_tx_requests(bench: Bench) -> None:
    await bench.session.change_configuration("AuthorizeRemoteTxRequests", "true")
    await bench.ctl("plug", 1)
    assert await bench.session.remote_start("DEADBEEF", connector_id=1) == "Accepted"
    auth = await bench.session.wait_for("Authorize")
    assert auth["idTag"] == "DEADBEEF"
    await bench.session.wait_for("StartTransaction")


# -- bad frames: the right CALLERROR, and the session carries on ------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ([2, "u1", "FlyToTheMoon", {}], "NotImplemented"),
        ([2, "u1b", "CertificateSigned", {"certificateChain": "x"}], "NotSupported"),
        ([2, "u2", "GetVariables", {"getVariableData": []}], "NotImplemented"),  # OCPP 2.0.1
        ([2, "u3", "ChangeConfiguration", {"key": "HeartbeatInterval"}], "ProtocolError"),
        ([2, "u4", "ChangeConfiguration", {"key": 5, "value": "1"}], "TypeConstraintViolation"),
        ([2, "u5", "RemoteStopTransaction", {"transactionId": 1, "x": 1}], "FormationViolation"),
        ([2, "u6", "GetConfiguration", []], "FormationViolation"),
    ],
)
async def test_bad_calls_get_the_right_callerror(bench: Bench, frame: list, code: str) -> None:
    reply = await bench.session.call_raw(json.dumps(frame))
    assert reply[0] == 4 and reply[1] == frame[1]
    assert reply[2] == code
    # ... and the charge point carries on.
    assert (await bench.session.get_configuration(["HeartbeatInterval"]))["configurationKey"]


async def test_garbage_frames_are_ignored_and_the_session_carries_on(bench: Bench) -> None:
    for garbage in ["not json", "{}", "[9]", "[3, \"nobody-asked\", {}]", "[2]"]:
        await bench.session.send_raw(garbage)
    assert await bench.session.change_configuration("HeartbeatInterval", "50") == "Accepted"
