"""One test (at least) per row of the spec's outgoing-message table, against the built-in CSMS."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from hilsim.csms import CentralSystem
from hilsim.evse import events

from conftest import CP_ID, TAG, Bench


async def test_boot_notification_carries_identity_and_serials(bench_factory) -> None:
    extra = 'serial_number = "SN-1"\ncharge_box_serial_number = "CB-1"\nmeter_serial_number = "M-1"'
    bench: Bench = await bench_factory(extra_charge_point=extra)
    boot = await bench.session.wait_for("BootNotification")
    assert boot == {
        "chargePointVendor": "hilsim",
        "chargePointModel": "bench",
        "firmwareVersion": "9.9.9",
        "chargePointSerialNumber": "SN-1",
        "chargeBoxSerialNumber": "CB-1",
        "meterSerialNumber": "M-1",
    }


async def test_boot_is_retried_at_the_csms_interval_until_accepted(bench_factory, csms) -> None:
    csms.boot_status = "Pending"
    csms.heartbeat_interval = 1
    # The factory waits for the session, which exists from the first (pending) boot on.
    bench: Bench = await bench_factory()
    await bench.session.wait_for("BootNotification")
    csms.boot_status = "Accepted"
    await bench.session.wait_for("BootNotification", timeout=5)
    # Nothing but BootNotification may be sent before Accepted; statuses follow it.
    first_status = await bench.status(1, "Available")
    actions = [m.action for m in bench.session.received]
    assert actions[:2] == ["BootNotification", "BootNotification"]
    assert first_status["connectorId"] == 1


async def test_status_notification_on_every_state_change(bench: Bench) -> None:
    await bench.start_local(1)
    await bench.ctl("fault", 1, error_code="GroundFailure")
    faulted = await bench.status(1, "Faulted")
    assert faulted["errorCode"] == "GroundFailure"
    await bench.ctl("clear", 1)
    await bench.status(1, "Finishing")
    await bench.ctl("unplug", 1)
    await bench.status(1, "Available")


async def test_authorize_precedes_start_when_authorization_enabled(bench: Bench) -> None:
    await bench.start_local(1)
    actions = [m.action for m in bench.session.received]
    assert actions.index("Authorize") < actions.index("StartTransaction")
    auth = await bench.session.wait_for("Authorize")
    assert auth == {"idTag": TAG}


async def test_authorize_skipped_when_authorization_disabled(bench: Bench) -> None:
    status = await bench.session.change_configuration("OCPPAuthorizationEnabled", "false")
    assert status == "Accepted"
    await bench.start_local(1)
    assert "Authorize" not in [m.action for m in bench.session.received]


async def test_rejected_tag_starts_nothing(bench: Bench) -> None:
    await bench.ctl("plug", 1)
    await bench.status(1, "Preparing")
    refused = bench.next_event(events.AuthorizeResult, 1)
    await bench.ctl("tag", 1, id_tag="UNKNOWN1")
    await bench.session.wait_for("Authorize", lambda p: p["idTag"] == "UNKNOWN1")
    outcome = await asyncio.wait_for(refused, 5)
    assert outcome.state.authorization is None  # the CSMS said Invalid: nothing waits
    # The connector stays Preparing and a known tag can still start.
    await bench.ctl("tag", 1, id_tag=TAG)
    start = await bench.session.wait_for("StartTransaction")
    assert start["idTag"] == TAG
    assert all(m.payload.get("idTag") != "UNKNOWN1" for m in bench.session.received
               if m.action == "StartTransaction")


async def test_start_transaction_fields(bench: Bench) -> None:
    await bench.start_local(2)
    start = bench.starts[2]
    assert start["connectorId"] == 2
    assert start["idTag"] == TAG
    assert isinstance(start["meterStart"], int) and start["meterStart"] >= 0
    datetime.fromisoformat(start["timestamp"].replace("Z", "+00:00"))


async def test_stop_transaction_fields(bench: Bench) -> None:
    await bench.session.change_configuration("MeterValueSampleInterval", "1")
    tx = await bench.start_local(1)
    await bench.session.wait_for("MeterValues")
    await bench.ctl("tag", 1, id_tag=TAG)  # the same tag again stops, as on a real charger
    stop = await bench.session.wait_for("StopTransaction")
    start = bench.starts[1]
    assert stop["transactionId"] == tx
    assert stop["reason"] == "Local"
    assert stop["idTag"] == TAG
    assert stop["meterStop"] > start["meterStart"]
    datetime.fromisoformat(stop["timestamp"].replace("Z", "+00:00"))
    await bench.status(1, "Finishing")


async def test_meter_values_four_measurands_at_the_sample_interval(bench: Bench) -> None:
    await bench.session.change_configuration("MeterValueSampleInterval", "1")
    tx = await bench.start_local(1)
    samples = [await bench.session.wait_for("MeterValues") for _ in range(3)]
    energies, socs = [], []
    for payload in samples:
        assert payload["connectorId"] == 1 and payload["transactionId"] == tx
        values = {v["measurand"]: v for v in payload["meterValue"][0]["sampledValue"]}
        assert set(values) == {
            "Energy.Active.Import.Register",
            "Power.Active.Import",
            "Current.Import",
            "SoC",
        }
        assert values["Energy.Active.Import.Register"]["unit"] == "Wh"
        assert values["SoC"]["unit"] == "Percent" and values["SoC"]["location"] == "EV"
        power = float(values["Power.Active.Import"]["value"])
        current = float(values["Current.Import"]["value"])
        assert power == pytest.approx(11000.0)
        assert current == pytest.approx(power / 230.0, abs=0.1)
        energies.append(float(values["Energy.Active.Import.Register"]["value"]))
        socs.append(float(values["SoC"]["value"]))
    assert energies == sorted(energies) and energies[-1] > energies[0]
    assert socs == sorted(socs) and 0 < socs[0] <= socs[-1] <= 100
    # 11 kW for ~1 s adds ~3 Wh: plausible, not a made-up jump.
    assert 0 < energies[-1] - energies[0] < 20
    assert socs[-1] - socs[0] < 1


async def test_heartbeat_follows_interval_changes_without_restart(bench: Bench) -> None:
    assert await bench.session.change_configuration("HeartbeatInterval", "1") == "Accepted"
    await bench.session.wait_for("Heartbeat", timeout=5)
    await bench.session.wait_for("Heartbeat", timeout=5)


async def test_meter_values_interval_change_applies_during_a_transaction(bench: Bench) -> None:
    await bench.start_local(1)  # default interval 30 s: no sample soon
    assert await bench.session.change_configuration("MeterValuesSampleInterval", "1") == "Accepted"
    await bench.session.wait_for("MeterValues", timeout=5)


async def test_boot_interval_becomes_heartbeat_interval(csms: CentralSystem, bench_factory) -> None:
    csms.heartbeat_interval = 1
    bench: Bench = await bench_factory()
    await bench.session.wait_for("Heartbeat", timeout=5)
    config = await bench.session.get_configuration(["HeartbeatInterval"])
    assert config["configurationKey"][0]["value"] == "1"
    assert CP_ID in bench.csms.sessions
